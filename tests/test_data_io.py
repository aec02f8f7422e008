from __future__ import annotations

import numpy as np
import pytest

from neurocodec import datasets, io
from neurocodec.errors import InputError, UsageError


def test_mnist_split_is_the_documented_one():
    (xtr, ytr), (xte, yte) = datasets.mnist_5k_split()
    assert xtr.shape == (4000, 28, 28) and xte.shape == (1000, 28, 28)
    assert xtr.dtype == np.uint8
    assert np.bincount(yte).tolist() == [100] * 10
    X, y = datasets.load("mnist_5k")
    perm = np.random.default_rng(0).permutation(5000)
    first_zero = perm[y[perm] == 0][0]
    assert np.array_equal(xte[0], X[first_zero])
    # disjoint: no test image index reused in train
    rows = {r.tobytes() for r in xte}
    assert sum(r.tobytes() in rows for r in xtr) <= 5  # identical digits can occur, indices cannot


def test_dataset_paths_and_photos():
    assert datasets.path("carphone").name == "carphone_pristine.mp4"
    assert datasets.path("bunny").stat().st_size > 100_000
    assert {"astronaut", "coffee", "chelsea"} <= set(datasets.photo_names())
    img = datasets.load("coffee")
    assert img.dtype == np.uint8 and img.ndim == 3
    with pytest.raises(InputError, match="unknown dataset"):
        datasets.path("nope")


def test_video_sample_shape():
    clip = datasets.load("carphone", max_frames=3)
    assert clip.shape == (3, 144, 176, 3)


def test_image_round_trip_and_atomic(tmp_path, photo_small):
    out = tmp_path / "a.png"
    io.write_any(out, photo_small)
    assert np.array_equal(io.read_any(out), photo_small)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp files left behind
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_video_lossless_mp4_and_y4m(tmp_path, carphone_small):
    io.write_any(tmp_path / "v.mp4", carphone_small, lossless=True)
    assert np.array_equal(io.read_any(tmp_path / "v.mp4"), carphone_small)
    io.write_any(tmp_path / "p.mp4", carphone_small)  # default: yuv420p H.264, what players play
    import av

    with av.open(str(tmp_path / "p.mp4")) as box:
        assert box.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert io.read_any(tmp_path / "p.mp4").shape == carphone_small.shape
    io.write_any(tmp_path / "v420.y4m", carphone_small, pix_fmt="420")
    assert b"C420" in (tmp_path / "v420.y4m").read_bytes()[:80]
    io.write_any(tmp_path / "v444.y4m", carphone_small, pix_fmt="444")
    assert (tmp_path / "v420.y4m").stat().st_size < (tmp_path / "v444.y4m").stat().st_size  # half the chroma
    with pytest.raises(UsageError):
        io.check_output_format(tmp_path / "v.avi")
    with pytest.raises(UsageError):
        io.check_output_format(tmp_path / "v.png", pix_fmt="420")
    io.write_any(tmp_path / "v.y4m", carphone_small)
    back = io.read_any(tmp_path / "v.y4m")
    assert back.shape == carphone_small.shape
    assert np.abs(back.astype(int) - carphone_small).max() <= 3  # RGB<->YUV 4:4:4 rounding only


def test_frames_folder_and_npy(tmp_path, carphone_small):
    io.write_any(tmp_path / "frames", carphone_small)
    assert np.array_equal(io.read_any(tmp_path / "frames"), carphone_small)
    io.write_any(tmp_path / "x.npy", carphone_small)
    assert np.array_equal(io.read_any(tmp_path / "x.npy"), carphone_small)


def test_npz_for_named_results(tmp_path):
    io.write_any(tmp_path / "r.npz", {"a": np.arange(3), "b": np.ones(2)})
    with np.load(tmp_path / "r.npz") as z:
        assert z["a"].tolist() == [0, 1, 2]
    with pytest.raises(UsageError, match="npz"):
        io.write_any(tmp_path / "r.npy", {"a": np.arange(3)})


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.png"
    with pytest.raises(Exception):
        io.write_any(target, np.zeros((4, 4, 7), np.uint8))  # 7 channels: refused
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        io.read_any(tmp_path / "bad.png")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError):
        io.read_any(tmp_path / "bad.mp4")
    with pytest.raises(InputError, match="no such file"):
        io.read_any(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown input type"):
        io.read_any(tmp_path / "x.txt")
    with pytest.raises(InputError):
        io.check_video(np.zeros((2, 4, 4), np.uint8))
