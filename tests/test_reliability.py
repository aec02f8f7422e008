"""The user's data is never at risk: an encode killed with SIGKILL at any moment leaves the input
intact and no partial output, and two processes writing the same output leave one complete file.

What a SIGKILL can leave: outputs are written through ``neurocodec.io.atomic_path``, which writes a
hidden temporary ``.<name>.ncxtmp-<host>-<pid>-<12 hex><suffix>`` beside the output and renames it
onto the output in one step. A SIGKILL cannot be caught, so one that lands while that temporary
exists leaves it behind (hidden, never the output's name, never taken for the output: the output is
either absent or complete), and nothing else may be left. The next atomic write of the same output
removes it, because the pid in its name is dead; a live writer's temporary is never removed.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import neurocodec
from neurocodec import io

CLI = [sys.executable, "-m", "neurocodec.cli"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
TEMP = re.compile(r"\.out\.ncx\.ncxtmp-[0-9a-f]{8}-[0-9]+-[0-9a-f]{12}\.ncx")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A random 1500x1500 RGB image: incompressible, so a png encode takes about a second."""
    folder = tmp_path_factory.mktemp("big")
    image = np.random.default_rng(16).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    path = folder / "in.png"
    io.write_image(path, image)
    return path, image


def encode(src: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "encode", str(src), "-o", str(out), "--codec", "png", "-q"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def check_after_kill(folder: Path, src: Path, src_hash: str, image: np.ndarray) -> list[str]:
    """The input is intact; the output is absent or complete; anything else left is a hidden
    temporary of atomic_path. Returns the leftover temporaries."""
    assert sha(src) == src_hash, "the input was changed"
    out = folder / "out.ncx"
    if out.exists():  # the encode finished before the kill: then the file must be whole
        np.testing.assert_array_equal(neurocodec.decode(out.read_bytes()), image)
    others = sorted(p.name for p in folder.iterdir() if p.name not in (src.name, "out.ncx"))
    stray = [n for n in others if not TEMP.fullmatch(n)]
    assert not stray, f"a killed encode left files that are not atomic_path temporaries: {stray}"
    return others


def test_sigkill_at_random_moments(big, tmp_path):
    src, image = big
    src_hash = sha(src)
    start = time.perf_counter()
    proc = encode(src, tmp_path / "ref.ncx")
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    total = time.perf_counter() - start
    (tmp_path / "ref.ncx").unlink()
    outcomes = []
    for i, delay in enumerate(np.random.default_rng(16).uniform(0.05, total, 6)):
        folder = tmp_path / f"kill{i}"
        folder.mkdir()
        local = folder / src.name
        local.write_bytes(src.read_bytes())
        proc = encode(local, folder / "out.ncx")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        left = check_after_kill(folder, local, src_hash, image)
        outcomes.append(((folder / "out.ncx").exists(), left))
    assert any(not done for done, _ in outcomes), "every encode finished before its kill: nothing was tested"


def test_sigkill_while_the_output_is_being_written(big, tmp_path):
    """Kill exactly in the window where atomic_path's temporary exists (polled): the output must
    be absent, the input intact, and the only leftover that hidden temporary."""
    src, image = big
    local = tmp_path / src.name
    local.write_bytes(src.read_bytes())
    src_hash = sha(local)
    proc = encode(local, tmp_path / "out.ncx")
    deadline = time.monotonic() + 120
    seen = None
    while proc.poll() is None and time.monotonic() < deadline:
        seen = next((p for p in tmp_path.iterdir() if TEMP.fullmatch(p.name)), None)
        if seen is not None:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    proc.wait(timeout=60)
    if seen is None:
        pytest.skip("the write window was too short to be hit on this machine")
    assert not (tmp_path / "out.ncx").exists() or proc.returncode == 0
    left = check_after_kill(tmp_path, local, src_hash, image)
    assert left in ([], [seen.name])
    # a leftover temporary does not stand in the way of the next encode to the same output, which
    # removes it (its writer's pid is dead)
    proc = encode(local, tmp_path / "out.ncx")
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    np.testing.assert_array_equal(neurocodec.decode((tmp_path / "out.ncx").read_bytes()), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([local.name, "out.ncx"]), "a stale temporary stayed"


_HOLDER = r"""
import sys, time
from neurocodec import io
with io.atomic_path(sys.argv[1], is_dir=sys.argv[2] == "dir") as tmp:
    if sys.argv[2] != "dir":
        tmp.write_bytes(b"half")
    print(tmp.name, flush=True)
    time.sleep(120)
"""


def hold_temporary(target: Path, kind: str = "file") -> tuple[subprocess.Popen, str]:
    """A child process inside ``atomic_path(target)``: it has made its temporary and waits there."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target), kind], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    name = proc.stdout.readline().strip()
    assert name, proc.stderr.read()
    return proc, name


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_stale_temporaries_of_killed_writers_are_removed_live_ones_kept(tmp_path, kind):
    target = tmp_path / ("out.ncx" if kind == "file" else "frames")
    dead, dead_name = hold_temporary(target, kind)
    live, live_name = hold_temporary(target, kind)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=60)
        assert (tmp_path / dead_name).exists(), "SIGKILL was expected to leave the temporary behind"
        assert f"-{dead.pid}-" in dead_name and f"-{live.pid}-" in live_name  # the writer's pid is in the name
        unrelated = tmp_path / f".{target.name}.ncxtmp-notmine"  # looks close, is not one of ours: kept
        unrelated.write_bytes(b"x")
        if kind == "file":
            io.write_bytes_atomic(target, b"complete")
            assert target.read_bytes() == b"complete"
        else:
            io.write_any(target, np.zeros((2, 4, 4, 3), np.uint8))
            assert sorted(p.name for p in target.iterdir()) == ["00000.png", "00001.png"]
        names = sorted(p.name for p in tmp_path.iterdir())
        assert dead_name not in names, "the killed writer's temporary was not removed"
        assert live_name in names, "a live writer's temporary was removed"
        assert sorted(names) == sorted([target.name, live_name, unrelated.name])
        assert io.remove_stale_temporaries(target) == []  # the live one stays however often it is asked
    finally:
        live.kill()
        live.wait(timeout=60)
    # once its writer is dead too, the next cleanup takes it
    assert io.remove_stale_temporaries(target) == [tmp_path / live_name]


def test_two_processes_writing_one_output_leave_one_complete_file(big, tmp_path):
    src, image = big
    other_image = np.ascontiguousarray(image[::-1])
    other = tmp_path / "other.png"
    io.write_image(other, other_image)
    out = tmp_path / "out.ncx"
    procs = [encode(src, out), encode(other, out)]
    codes = [p.wait(timeout=180) for p in procs]
    assert codes == [0, 0], [p.stderr.read().decode() for p in procs]
    got = neurocodec.decode(out.read_bytes())
    assert np.array_equal(got, image) or np.array_equal(got, other_image), "the output is a mix of both"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.png", "out.ncx"], "temporaries were left"


# --------------------------------------------------------------- every value validated (kvb)
def test_kvb_values_are_validated_before_any_work(tmp_path):
    from neurocodec.codecs.kvb.codec import KVBCodec
    from neurocodec.errors import UsageError

    digits = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(UsageError, match=r"mask=maybe .*expected true or false"):
        neurocodec.encode(digits, codec="kvb", mask="maybe")
    with pytest.raises(UsageError, match=r"no parameter 'quality'; accepted: model, mask"):
        neurocodec.encode(digits, codec="kvb", quality=3)
    blob = neurocodec.encode(digits, codec="kvb")
    with pytest.raises(UsageError, match=r"model=5 .*expected text"):
        KVBCodec().decode(blob, model=5)
    with pytest.raises(UsageError, match=r"max_values=-1"):
        neurocodec.decode(blob, max_values=-1)
    assert neurocodec.decode(blob, model="mnist").indices.shape == (2, 64)
    src = tmp_path / "d.npy"
    np.save(src, digits)
    out = tmp_path / "o.ncx"
    proc = subprocess.run([*CLI, "encode", str(src), "-o", str(out), "--codec", "kvb", "--param", "mask=maybe"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2 and "mask=maybe" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()
    shown = subprocess.run([*CLI, "codecs", "kvb"], capture_output=True, text=True, env=ENV, timeout=120)
    assert shown.returncode == 0 and "mask" in shown.stdout and "max_values" in shown.stdout, shown.stdout


# ------------------------------------------------------------- model files: size cap, header paths
def test_model_files_are_read_under_a_size_cap(tmp_path, monkeypatch):
    from neurocodec import weights
    from neurocodec.errors import InputError

    path = tmp_path / "m.ncx"
    weights.save(path, "test", 1, {"a": 1}, {"w": np.arange(1000, dtype=np.float32)})
    size = path.stat().st_size
    assert weights.load(path, max_bytes=size).arrays["w"].shape == (1000,)
    with pytest.raises(InputError, match=rf"is {size} bytes, above the model-file limit of {size - 1} bytes"):
        weights.load(path, max_bytes=size - 1)
    monkeypatch.setenv("NEUROCODEC_MAX_MODEL_BYTES", str(size - 1))
    with pytest.raises(InputError, match="NEUROCODEC_MAX_MODEL_BYTES"):
        weights.load(path)
    monkeypatch.setenv("NEUROCODEC_MAX_MODEL_BYTES", "0")  # 0: no limit
    assert weights.load(path).digest == weights.file_digest(path)
    monkeypatch.delenv("NEUROCODEC_MAX_MODEL_BYTES")
    # a small file whose array table claims gigabytes (an lzma bomb or a lie) is refused from the table
    small = weights.to_bytes("test", 1, {}, {"w": np.zeros(1 << 16, np.uint8)}, compression="lzma")
    box = neurocodec.container.unpack(small)
    for shape in ([1 << 40], [1 << 40, 1 << 40], [1 << 62, 4]):
        lie = neurocodec.container.pack(neurocodec.container.Container(
            box.codec, box.codec_version, {**box.header, "arrays": {"w": ["|u1", shape]}}, box.sections))
        with pytest.raises(InputError, match="arrays unpacked"):
            weights.from_bytes(lie)
    # a FIFO (or any non-regular file) is never opened: no hang
    fifo = tmp_path / "f.ncx"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a file"):
        weights.load(fifo)


def test_a_header_cannot_make_kvb_open_any_path(tmp_path, monkeypatch):
    """The model path a kvb header names is opened only if it is a regular ``.ncx`` file outside
    /proc, /sys and /dev, under the size cap, and used only if its digest matches."""
    import shutil

    from neurocodec.codecs.kvb.shipped import shipped_path
    from neurocodec.errors import InputError

    monkeypatch.chdir(tmp_path)
    blob = neurocodec.encode(np.zeros((2, 28, 28), np.uint8), codec="kvb")
    box = neurocodec.container.unpack(blob)
    copy = tmp_path / "copy.ncx"
    shutil.copy(shipped_path("mnist"), copy)

    def decode_naming(model: str):
        header = {**box.header, "model": model}
        return neurocodec.decode(neurocodec.container.pack(neurocodec.container.Container(
            "kvb", box.codec_version, header, box.sections)))

    assert decode_naming(str(copy)).indices.shape == (2, 64)  # allowed: a regular .ncx file, digest matches
    assert decode_naming("copy.ncx").indices.shape == (2, 64)  # relative to the current folder
    (tmp_path / "proc.ncx").symlink_to("/proc/self/environ")
    os.mkfifo(tmp_path / "fifo.ncx")
    (tmp_path / "notes.txt").write_text("secret")
    refused = {"/etc/passwd": "not a .ncx model file", str(tmp_path / "notes.txt"): "not a .ncx model file",
               "/proc/self/environ": "system folder", str(tmp_path / "proc.ncx"): "system folder",
               "/dev/zero": "system folder", str(tmp_path / "fifo.ncx"): "not a regular file",
               str(tmp_path / "missing.ncx"): "not there", "copy.ncx\0.txt": "not a usable path"}
    for model, why in refused.items():
        with pytest.raises(InputError, match=f"{why}.*pass the model file with model=PATH"):
            decode_naming(model)
    monkeypatch.setenv("NEUROCODEC_MAX_MODEL_BYTES", "1000")  # the cap applies to header-named files too
    with pytest.raises(InputError, match="above the model-file limit"):
        decode_naming(str(copy))
