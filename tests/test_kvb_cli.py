"""``neurocodec kvb fit/learn/predict`` and ``neurocodec encode --codec kvb`` / ``decode``."""
from __future__ import annotations

import numpy as np
import pytest

from neurocodec import weights
from neurocodec.cli import main
from neurocodec.codecs.kvb import KVBottleneck
from neurocodec.codecs.kvb.data import digits_split


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    (xtr, ytr), (xte, yte) = digits_split()
    d = tmp_path_factory.mktemp("kvbcli")
    a, b = np.isin(ytr, (0, 1, 2, 3, 4)), np.isin(ytr, (5, 6, 7, 8, 9))
    np.save(d / "a.npy", xtr[a])
    np.save(d / "a_y.npy", ytr[a])
    np.save(d / "b.npy", xtr[b])
    np.savetxt(d / "b_y.txt", ytr[b], fmt="%d")
    np.save(d / "test.npy", xte)
    np.save(d / "test_y.npy", yte)
    return d


def test_fit_learn_predict_encode_decode(files):
    d = files
    model = d / "m.ncx"
    common = ["--codebooks", "16", "--keys", "32", "--epochs", "40", "--device", "cpu"]
    assert main(["kvb", "fit", str(d / "a.npy"), "--labels", str(d / "a_y.npy"), "-o", str(model), "-q", *common]) == 0
    first = KVBottleneck.load(model)
    assert first.tasks_seen == 1 and first.classes_seen == [0, 1, 2, 3, 4]
    assert main(["kvb", "learn", str(model), str(d / "b.npy"), "--labels", str(d / "b_y.txt"),
                 "--epochs", "40", "-q", "--device", "cpu"]) == 0
    kvb = KVBottleneck.load(model)
    assert kvb.tasks_seen == 2 and kvb.classes_seen == list(range(10))
    pred = d / "pred.npy"
    assert main(["kvb", "predict", str(model), str(d / "test.npy"), "-o", str(pred), "-q", "--device", "cpu"]) == 0
    yte = np.load(d / "test_y.npy")
    assert (np.load(pred) == yte).mean() > 0.8
    assert weights.load(model).kind == "kvb" and weights.file_digest(model) == kvb.digest
    builtin = d / "pred_builtin.npy"  # a built-in name works as MODEL too
    assert main(["kvb", "predict", "digits", str(d / "test.npy"), "-o", str(builtin), "-q", "--device", "cpu"]) == 0
    assert (np.load(builtin) == yte).mean() > 0.9
    ncx = d / "test.ncx"
    assert main(["encode", str(d / "test.npy"), "--codec", "kvb", "-p", f"model={model}", "-o", str(ncx), "-q"]) == 0
    out = d / "dec.npz"
    assert main(["decode", str(ncx), "-o", str(out), "-q"]) == 0
    with np.load(out) as z:
        np.testing.assert_array_equal(z["indices"], kvb.indices(np.load(d / "test.npy")).numpy())
        np.testing.assert_array_equal(z["logits"].argmax(1), np.load(pred))


def test_image_folder_with_class_subfolders(files, tmp_path):
    from neurocodec.io import write_image

    (xtr, ytr), _ = digits_split()
    for i in range(60):
        (tmp_path / "imgs" / str(ytr[i])).mkdir(parents=True, exist_ok=True)
        write_image(tmp_path / "imgs" / str(ytr[i]) / f"{i:03d}.png", (xtr[i] * 15).astype(np.uint8))
    model = tmp_path / "f.ncx"
    assert main(["kvb", "fit", str(tmp_path / "imgs"), "-o", str(model), "--codebooks", "8", "--keys", "16",
                 "--epochs", "5", "--encoder-dim", "8", "-q", "--device", "cpu"]) == 0
    assert KVBottleneck.load(model).input_shape == (8, 8)


def test_cli_errors(files, tmp_path):
    d = files
    # labels of the wrong length, missing labels, unknown model: one-line errors with exit codes
    assert main(["kvb", "fit", str(d / "a.npy"), "--labels", str(d / "b_y.txt"), "-o", str(tmp_path / "x.ncx"), "-q"]) == 3
    assert main(["kvb", "fit", str(d / "a.npy"), "-o", str(tmp_path / "x.ncx"), "-q"]) == 2
    assert main(["kvb", "learn", str(tmp_path / "missing.ncx"), str(d / "a.npy"), "--labels", str(d / "a_y.npy"), "-q"]) == 3
    assert main(["encode", str(d / "test.npy"), "--codec", "kvb", "-p", "model=nope", "-o", str(tmp_path / "t.ncx"), "-q"]) == 2
    assert main(["kvb", "-q"]) == 2
