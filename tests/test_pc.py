"""pc codec: circuit maths against brute force, EM, structure, efficient == naive tables, round trips,
model files (shipped digests, round trips, refusals), v1 bitstreams, no training code when decoding."""
from __future__ import annotations

import dataclasses
import itertools
import json
import lzma
import math
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import neurocodec
from neurocodec import container as ncx
from neurocodec import weights
from neurocodec.codecs.pc import coding, legacy
from neurocodec.codecs.pc import model as pcmodel
from neurocodec.codecs.pc.model import HCLT, SHIPPED, PCModel, builtin_path, load_model, load_shipped
from neurocodec.codecs.pc.structure import compile_tree
from neurocodec.codecs.pc.train import fit_model
from neurocodec.codecs.pc.train_em import EMConfig, _normalise, em_flows
from neurocodec.codecs.pc.train_structure import learn_structure, max_spanning_tree, mutual_information, root_tree
from neurocodec.entropy import quantize_pmf
from neurocodec.errors import InputError, UsageError

PREC = 24


def random_circuit(d: int, m: int, seed: int, basis: int = 0) -> HCLT:
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(v)) for v in range(1, d)], dtype=np.int32)
    tree = compile_tree(parent)
    prior = rng.dirichlet(np.ones(m))
    trans = rng.dirichlet(np.ones(m), size=(d, m))
    if basis:
        return HCLT.from_probs(tree, prior, trans, None, (1, d, 1), rng.dirichlet(np.ones(basis), size=(d, m)),
                               rng.dirichlet(np.full(256, 0.3), size=basis))
    return HCLT.from_probs(tree, prior, trans, rng.dirichlet(np.full(256, 0.3), size=(d, m)), (1, d, 1))


def brute_joint(c: HCLT, x: np.ndarray) -> float:
    """p(x) summing over every hidden configuration (-1 entries marginalised)."""
    d, m = c.num_vars, c.num_states
    par = c.tree.parent
    total = 0.0
    for z in itertools.product(range(m), repeat=d):
        p = 1.0
        for v in range(d):
            p *= c.prior[z[v]] if par[v] < 0 else c.trans[v, z[par[v]], z[v]]
            if x[v] >= 0:
                p *= c.leaf[v, z[v], x[v]]
        total += p
    return total


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A 4x4 gray circuit and a 2x2x3 colour circuit, trained a little on smooth noise."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (40, 6, 6, 1)).astype(np.float64)
    smooth = np.repeat(np.repeat(base, 4, 1), 4, 2)[:, :20, :20] + rng.normal(0, 8, (40, 20, 20, 1))
    gray = smooth.clip(0, 255).astype(np.uint8)
    rgb = np.concatenate([gray, gray[:, ::-1], 255 - gray], axis=3)
    cfg = EMConfig(states=3, epochs=1, basis=4, batch_size=256, val_fraction=0.0)
    m1 = fit_model(gray, patch=4, config=cfg, max_patches=400)
    m3 = fit_model(rgb, patch=2, config=cfg, max_patches=400)
    model = PCModel({1: m1.circuits[1], 3: m3.circuits[3]}, "tiny", m1.info)
    path = tmp_path_factory.mktemp("pc") / "tiny.ncx"
    model.save(path)
    return str(path)


@pytest.mark.parametrize("basis", [0, 3])
def test_likelihood_and_marginals_match_brute_force(basis):
    c = random_circuit(5, 3, seed=basis, basis=basis)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5)).astype(np.int16)
    x[3, [1, 4]] = -1  # marginalised pixels
    x[4, :] = -1  # everything marginalised: probability 1
    ll = c.log_likelihood(x)
    for row, got in zip(x, ll):
        assert got == pytest.approx(math.log(brute_joint(c, row)), rel=1e-9, abs=1e-9)
    assert ll[4] == pytest.approx(0.0, abs=1e-12)


def test_conditionals_match_brute_force_and_naive():
    c = random_circuit(4, 3, seed=7)
    img = np.array([[3, 200, 17, 90]], dtype=np.uint8)
    eff = coding.efficient_tables(c, img, PREC)[0]
    naive = coding.naive_tables(c, img, PREC)[0]
    assert np.array_equal(eff, naive)
    for t in range(4):
        pmf = np.empty(256)
        for v in range(256):
            x = np.full(4, -1)
            x[:t] = img[0, :t]
            x[t] = v
            pmf[v] = brute_joint(c, x)
        ref = quantize_pmf(pmf / pmf.sum(), PREC)
        assert np.abs(eff[t].astype(np.int64) - ref).max() <= 1  # same pmf up to float rounding
        assert eff[t].sum() == 1 << PREC and eff[t].min() >= 1


def test_efficient_tables_equal_naive_on_bigger_tree():
    c = random_circuit(40, 4, seed=3, basis=5)
    x = np.random.default_rng(5).integers(0, 256, (3, 40)).astype(np.uint8)
    assert np.array_equal(coding.efficient_tables(c, x, PREC), coding.naive_tables(c, x, PREC))


def test_em_increases_likelihood():
    c = random_circuit(6, 2, seed=11)
    rng = np.random.default_rng(2)
    z = rng.integers(0, 2, 60)
    x = (z[:, None] * 180 + rng.integers(0, 40, (60, 6))).astype(np.int16)
    prior, trans, leaf = c.prior.copy(), c.trans.copy(), c.leaf.copy()
    t = c.tree
    lls = []
    for _ in range(6):
        pf, tf, lf = np.zeros(2), np.zeros((6, 2, 2)), np.zeros((6, 2, 256))
        ll = em_flows(x, prior, trans, leaf, t.child_ptr, t.child_idx, t.post, pf, tf, lf,
                              np.zeros((1, 1, 1)), np.zeros((0, 256)), np.zeros((1, 1, 1)), np.zeros((0, 256)))
        lls.append(ll)
        prior, trans, leaf = _normalise(pf, 1e-9), _normalise(tf, 1e-9), _normalise(lf, 1e-9)
    assert all(b >= a - 1e-7 for a, b in zip(lls, lls[1:]))
    assert lls[-1] > lls[0] + 1.0


def test_structure_chain_and_balanced_height():
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.integers(-30, 31, (3000, 31)), axis=1)
    x = (walk - walk.min(1, keepdims=True)).clip(0, 255).astype(np.uint8)
    mi = mutual_information(x, 16)
    assert np.allclose(mi, mi.T) and (mi >= -1e-12).all()
    edges = max_spanning_tree(mi)
    assert sorted(tuple(sorted(e)) for e in edges) == [(i, i + 1) for i in range(30)]  # the chain
    bal = compile_tree(root_tree(31, edges, "balanced"))
    assert bal.height <= math.floor(math.log2(31)) + 1
    assert compile_tree(root_tree(31, edges, "chow_liu")).height == 16
    assert learn_structure(x).size == 31


def test_round_trips(tiny_model):
    rng = np.random.default_rng(0)
    cases = [
        np.zeros((8, 8), np.uint8),
        np.full((8, 8), 255, np.uint8),
        rng.integers(0, 256, (9, 13), dtype=np.uint8),  # odd size, pure noise
        rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),  # rgb, odd
        np.full((3, 4, 3), 255, np.uint8),
        rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),  # rgba: planes through the gray circuit
        rng.integers(0, 256, (3, 11, 6), dtype=np.uint8),  # batch N,H,W
        rng.integers(0, 256, (2, 3, 5, 3), dtype=np.uint8),  # batch with channels
        np.zeros((1, 1), np.uint8),
    ]
    for x in cases:
        blob = neurocodec.encode(x, codec="pc", model=tiny_model)
        y = neurocodec.decode(blob, model=tiny_model)
        assert y.dtype == np.uint8 and y.shape == x.shape and np.array_equal(x, y), x.shape
    flat = neurocodec.encode(np.zeros((16, 16), np.uint8), codec="pc", model=tiny_model)
    noisy = neurocodec.encode(rng.integers(0, 256, (16, 16), dtype=np.uint8), codec="pc", model=tiny_model)
    assert len(flat) < len(noisy) <= 256 + 200  # noise falls back to raw pixels, never far above 8 bpd
    assert not ncx.unpack(flat).header.get("raw")


def test_arithmetic_path_round_trips_noise_and_extremes(tiny_model):
    """The coded path itself (no raw fallback) on noise, all-black, all-white and padded patches."""
    model = load_model(tiny_model)
    rng = np.random.default_rng(8)
    for c, shape in ((1, (3, 9, 7, 1)), (3, (2, 5, 3, 3))):
        circ = coding.choose_circuit(model, c)
        for x in (rng.integers(0, 256, shape, dtype=np.uint8), np.zeros(shape, np.uint8),
                  np.full(shape, 255, np.uint8)):
            lay = coding.make_layout(x.shape, circ)
            patches, mask = coding.to_patches(x, lay)
            assert not mask.all()  # odd sizes: some variables are padding
            words = coding.encode_patches(circ, patches, mask, PREC)
            back = coding.decode_patches(circ, words, coding.patch_mask(lay), PREC)
            assert np.array_equal(coding.from_patches(back, lay), x)


def test_model_identity_is_checked(tiny_model, tmp_path):
    x = np.zeros((4, 4), dtype=np.uint8)  # coded, not raw: decoding needs the model
    blob = neurocodec.encode(x, codec="pc", model=tiny_model)
    assert not ncx.unpack(blob).header.get("raw")
    # raw pixels need no model: such a file decodes without one
    noise = np.random.default_rng(3).integers(0, 256, (4, 4), dtype=np.uint8)
    raw = neurocodec.encode(noise, codec="pc", model=tiny_model)
    assert ncx.unpack(raw).header["raw"] and np.array_equal(neurocodec.decode(raw), noise)
    with pytest.raises(UsageError, match="model=PATH"):
        neurocodec.decode(blob)  # a user model must be given back
    mine = load_model(tiny_model)
    circ = mine.circuits[1]
    q = circ.q_prior.copy()
    q[0] = q[0] + 1 if q[0] < 255 else q[0] - 1
    other = PCModel({**mine.circuits, 1: HCLT(circ.tree, q, circ.q_trans, circ.q_leaf, circ.patch, circ.q_bw,
                                              circ.q_basis)}, "tiny")
    other.save(tmp_path / "other.ncx")
    with pytest.raises(UsageError, match="hash"):
        neurocodec.decode(blob, model=str(tmp_path / "other.ncx"))
    # the same parameters under another name/info: another file, so another digest, refused too
    PCModel(dict(mine.circuits), "renamed").save(tmp_path / "renamed.ncx")
    with pytest.raises(UsageError, match="hash"):
        neurocodec.decode(blob, model=str(tmp_path / "renamed.ncx"))


def test_bad_input_and_device(tiny_model):
    with pytest.raises(InputError):
        neurocodec.encode(np.zeros((4, 4), np.float32), codec="pc", model=tiny_model)
    for dev in ("cuda", "cuda:0", "gpu", 3):
        with pytest.raises(UsageError):
            neurocodec.encode(np.zeros((4, 4), np.uint8), codec="pc", model=tiny_model, device=dev)
    blob = neurocodec.encode(np.zeros((4, 4), np.uint8), codec="pc", model=tiny_model, device="cpu")
    with pytest.raises(UsageError, match="bit-reproducible"):
        neurocodec.decode(blob, model=tiny_model, device="cuda")
    with pytest.raises(InputError):
        neurocodec.encode(np.zeros((4, 4), np.uint8), codec="pc", model="/nonexistent/model.ncx")


def test_cli_fit_and_encode(tmp_path):
    from neurocodec.cli import main

    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "train.npy", data)
    model = tmp_path / "m.ncx"
    assert main(["pc", "fit", str(tmp_path / "train.npy"), "-o", str(model), "--states", "2", "--basis", "0",
                 "--epochs", "1", "-q"]) == 0
    assert PCModel.load(model).circuits[1].patch == (8, 8, 1)
    assert weights.load(model).kind == "pc"
    np.save(tmp_path / "img.npy", data[0])
    assert main(["encode", str(tmp_path / "img.npy"), "-c", "pc", "-p", f"model={model}",
                 "-o", str(tmp_path / "img.ncx"), "-q"]) == 0
    assert main(["decode", str(tmp_path / "img.ncx"), "-p", f"model={model}", "-o", str(tmp_path / "out.npy"),
                 "-q"]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), data[0])
    assert main(["pc", "fit", str(tmp_path / "missing"), "-o", str(model), "-q"]) == 3


def test_shipped_mnist_model():
    from neurocodec.datasets import mnist_5k_split

    _, (x_test, _) = mnist_5k_split()
    x = x_test[::100][:10]
    blob = neurocodec.encode(x, codec="pc", model="mnist")
    assert np.array_equal(neurocodec.decode(blob), x)
    assert len(blob) * 8 / x.size < 1.8  # PNG needs ~3 bpd on these


def test_shipped_natural_model():
    rng = np.random.default_rng(0)
    for x in (rng.integers(0, 256, (11, 9, 3), dtype=np.uint8), np.full((10, 17), 7, np.uint8)):
        assert np.array_equal(neurocodec.decode(neurocodec.encode(x, codec="pc", model="natural")), x)


def test_torch_evaluation_matches_numba():
    from neurocodec.codecs.pc.torch_eval import log_likelihood_torch

    c = random_circuit(30, 4, seed=9, basis=6)
    x = np.random.default_rng(1).integers(-1, 256, (7, 30)).astype(np.int16)
    assert np.allclose(log_likelihood_torch(c, x, device="cpu", chunk=3), c.log_likelihood(x), rtol=1e-10)


# ------------------------------------------------------------------------------ model files
def test_shipped_models_load_with_recorded_digests():
    assert set(SHIPPED) == {"mnist", "natural", "photo"}
    for name, digest in SHIPPED.items():
        if name in pcmodel.PHOTO_MODELS:
            continue  # a pc-photo model file: tests/test_pc_photo.py
        path = builtin_path(name)
        assert path.suffix == ".ncx" and not path.with_suffix(".ncpc").exists()
        assert weights.file_digest(path) == digest
        mf = weights.load(path, kind="pc", expect_digest=digest)
        assert mf.version == pcmodel.FORMAT_VERSION and mf.config["name"] == name
        m = load_model(name)
        assert m.digest == digest and m.short_digest == digest[:16] and m.name == name
        assert load_model(name) is m  # built once per process (weights.build)
        assert m.circuits[1].patch[:2] == ((28, 28) if name == "mnist" else (8, 8))
    # converted with the same parameters: the v1 hash is the one the old .ncpc file had
    assert legacy.v1_model_hash(load_shipped("mnist", "b82e576ea7bbd9ae")) == "54d411a552b8f7dc"  # the first mnist
    assert legacy.v1_model_hash(load_model("natural")) == "00151e5d265da643"


def test_modified_shipped_model_is_refused(tmp_path, monkeypatch):
    real = builtin_path("natural")
    shipped = load_model("natural")
    monkeypatch.setattr(pcmodel, "_WEIGHTS", tmp_path)
    # a well-formed model file with one training note changed: another digest
    info = weights.thaw(shipped.info)
    info["note"] = "edited"
    PCModel(dict(shipped.circuits), "natural", info).save(tmp_path / "natural.ncx")
    with pytest.raises(InputError, match="changed or replaced"):
        load_model("natural")
    # one byte flipped inside the file: its CRCs (or its digest) refuse it
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0x40
    (tmp_path / "natural.ncx").write_bytes(bytes(data))
    with pytest.raises(InputError):
        load_model("natural")
    (tmp_path / "natural.ncx").unlink()
    with pytest.raises(UsageError, match="missing"):
        load_model("natural")


def test_model_file_round_trip(tiny_model, tmp_path):
    m = load_model(tiny_model)
    assert m.digest == weights.file_digest(tiny_model) and m.name == "tiny"
    mf = weights.load(tiny_model, kind="pc")
    assert mf.config["circuits"]["3"]["patch"] == (2, 2, 3)
    # save -> load: identical arrays (names, dtypes, values), config and digest; saving twice: same bytes
    assert m.save(tmp_path / "again.ncx") == m.digest
    assert (tmp_path / "again.ncx").read_bytes() == open(tiny_model, "rb").read()
    back = PCModel.load(tmp_path / "again.ncx", expect_digest=m.short_digest)
    a, b = m.arrays(), back.arrays()
    assert sorted(a) == sorted(b) == sorted(mf.arrays)
    for k in a:
        assert a[k].dtype == b[k].dtype == mf.arrays[k].dtype and np.array_equal(a[k], b[k]), k
    assert back.config() == m.config()
    # a model built in memory knows the digest its file will have
    fresh = PCModel(dict(m.circuits), m.name, m.info)
    assert fresh.digest == m.digest and fresh.source_digest is None
    # the shared model is read-only
    c = m.circuits[1]
    for arr in (c.q_prior, c.q_trans, c.prior, c.trans, c.leaf, c.tree.parent, c.tree.post):
        assert not arr.flags.writeable
    with pytest.raises(TypeError):
        m.circuits[1] = c
    with pytest.raises(TypeError):
        m.info["x"] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.patch = (1, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "other"
    # building from an array leaves the caller's array writable and unshared
    q = np.array(c.q_prior)
    HCLT(c.tree, q, c.q_trans, c.q_leaf, c.patch, c.q_bw, c.q_basis)
    assert q.flags.writeable


def _write_ncpc(model: PCModel, path) -> None:
    """The old .ncpc writer (what circuit.PCModel.to_bytes did), to test the converter."""
    arrays = dict(sorted(model.arrays().items()))
    meta = {"name": model.name, "info": weights.thaw(model.info), "arrays": [],
            "circuits": {str(c): {"patch": list(ci.patch), "states": ci.num_states} for c, ci in model.circuits.items()}}
    blob = bytearray()
    for key, a in arrays.items():
        meta["arrays"].append([key, a.dtype.str, list(a.shape), len(blob)])
        blob += a.tobytes()
    head = json.dumps(meta, sort_keys=True).encode()
    path.write_bytes(legacy.NCPC_MAGIC + struct.pack("<I", len(head)) + head + lzma.compress(bytes(blob)))


@pytest.mark.parametrize("what", ["kvb", "garbage", "pickle", "empty", "ncpc", "folder", "stream", "newer"])
def test_wrong_model_file_is_an_input_error(what, tiny_model, tmp_path):
    from neurocodec.cli import main

    path = tmp_path / "model.ncx"
    if what == "kvb":
        weights.save(path, "kvb", 1, {"dim": 4}, {"w": np.zeros((4, 4), np.float32)})
    elif what == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif what == "pickle":
        path.write_bytes(pickle.dumps({"c1_prior": np.zeros(4, np.uint8)}))
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "ncpc":
        _write_ncpc(load_model(tiny_model), path)
    elif what == "folder":
        path.mkdir()
    elif what == "stream":  # a coded image is a .ncx too, but not a model file
        path.write_bytes(neurocodec.encode(np.zeros((4, 4), np.uint8), codec="pc", model=tiny_model))
    elif what == "newer":
        m = load_model(tiny_model)
        weights.save(path, "pc", pcmodel.FORMAT_VERSION + 1, m.config(), m.arrays())
    with pytest.raises(InputError) as exc:
        load_model(str(path))
    assert "\n" not in str(exc.value)
    if what == "ncpc":
        assert "pc convert" in str(exc.value)
    with pytest.raises(InputError):
        neurocodec.encode(np.zeros((4, 4), np.uint8), codec="pc", model=str(path))
    blob = neurocodec.encode(np.zeros((4, 4), np.uint8), codec="pc", model=tiny_model)
    with pytest.raises(InputError):
        neurocodec.decode(blob, model=str(path))
    (tmp_path / "img.ncx").write_bytes(blob)
    assert main(["decode", str(tmp_path / "img.ncx"), "-p", f"model={path}", "-o", str(tmp_path / "o.npy"),
                 "-q"]) == 3


def test_malformed_pc_model_config_is_an_input_error(tiny_model, tmp_path):
    m = load_model(tiny_model)
    cfg = m.config()
    no_circuits = {k: v for k, v in cfg.items() if k != "circuits"}
    for i, bad in enumerate(({**cfg, "circuits": {"1": {"patch": [3, 3, 1], "states": 3}}},  # patch != arrays
                             {**cfg, "circuits": {"1": {"patch": [4, 4, 1], "states": 7}}},  # wrong states
                             {**cfg, "circuits": {"5": {"patch": [4, 4, 1], "states": 3}}},  # no such arrays
                             {**cfg, "circuits": [1]}, no_circuits)):
        path = tmp_path / f"bad{i}.ncx"
        weights.save(path, "pc", 1, bad, m.arrays())
        with pytest.raises(InputError):
            load_model(str(path))
    arrays = m.arrays()
    arrays["c1_prior"] = arrays["c1_prior"].astype(np.float32)  # codes must be uint8
    weights.save(tmp_path / "float.ncx", "pc", 1, cfg, arrays)
    with pytest.raises(InputError):
        load_model(str(tmp_path / "float.ncx"))


def test_convert_old_ncpc(tiny_model, tmp_path):
    from neurocodec.cli import main

    m = load_model(tiny_model)
    _write_ncpc(m, tmp_path / "old.ncpc")
    assert main(["pc", "convert", str(tmp_path / "old.ncpc"), "-o", str(tmp_path / "new.ncx"), "-q"]) == 0
    new = load_model(str(tmp_path / "new.ncx"))
    assert new.digest == m.digest  # same parameters, name and info: the very same file
    assert legacy.v1_model_hash(new) == legacy.v1_model_hash(m)
    with pytest.raises(InputError):
        legacy.read_ncpc(b"not a model")
    assert main(["pc", "convert", str(tmp_path / "missing.ncpc"), "-o", str(tmp_path / "x.ncx"), "-q"]) == 3


def test_v1_bitstreams_still_decode(tiny_model):
    x = (np.arange(70).reshape(2, 5, 7) % 3).astype(np.uint8)  # coded, not raw: the model matters
    box = ncx.unpack(neurocodec.encode(x, codec="pc", model=tiny_model))
    from neurocodec.codecs.pc.codec import PCCodec

    assert not box.header.get("raw") and box.codec_version == PCCodec.version and box.header["model_hash"] == load_model(tiny_model).short_digest
    # a v1 file: same bitstream, but model_hash was the hash of the stored arrays
    v1 = ncx.Container("pc", 1, {**box.header, "model_hash": legacy.v1_model_hash(load_model(tiny_model))},
                       box.sections)
    assert np.array_equal(neurocodec.decode(ncx.pack(v1), model=tiny_model), x)
    wrong = ncx.Container("pc", 1, {**box.header, "model_hash": "0123456789abcdef"}, box.sections)
    with pytest.raises(UsageError, match="hash"):
        neurocodec.decode(ncx.pack(wrong), model=tiny_model)


def test_encode_is_deterministic_and_reports(tiny_model):
    from neurocodec.codecs.pc.codec import PCCodec

    rng = np.random.default_rng(9)
    x = (np.add.outer(np.arange(12), np.arange(10)) * 9 % 256).astype(np.uint8)
    enc = PCCodec().encode_with_report(x, model=tiny_model)
    assert enc.report["model_hash"] == load_model(tiny_model).short_digest and enc.report["raw"] is False
    neurocodec.decode(neurocodec.encode(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), codec="pc",
                                        model=tiny_model), model=tiny_model)
    assert PCCodec().encode(x, model=tiny_model) == enc.blob
    # a model object passed directly codes exactly like its file (same digest, same words)
    m = load_model(tiny_model)
    same = ncx.unpack(neurocodec.encode(x, codec="pc", model=PCModel(dict(m.circuits), m.name, m.info)))
    ref = ncx.unpack(enc.blob)
    assert same.header["model_hash"] == ref.header["model_hash"] and same.sections == ref.sections


def test_decoding_imports_no_training_code(tiny_model, tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (6, 6), dtype=np.uint8)
    (tmp_path / "a.ncx").write_bytes(neurocodec.encode(x, codec="pc", model=tiny_model))
    (tmp_path / "b.ncx").write_bytes(neurocodec.encode(x, codec="pc", model="mnist"))
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, neurocodec\n"
        f"d = sys.argv[1]\n"
        "x = np.load(d + '/x.npy')\n"
        "assert (neurocodec.decode(open(d + '/a.ncx', 'rb').read(), model=sys.argv[2]) == x).all()\n"
        "assert (neurocodec.decode(open(d + '/b.ncx', 'rb').read()) == x).all()\n"
        "bad = [m for m in sys.modules if m.startswith('neurocodec') and m.rsplit('.', 1)[-1].startswith('train')]\n"
        "assert not bad, bad\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), tiny_model], check=True, timeout=300)


# ------------------------------------------------------------------ model choice, params, header checks
def test_auto_model_choice_and_raw_report():
    """No model=: 28x28 grey (one digit or a batch) gets mnist, anything else photo; the report
    says which and why, and says when the pixels were stored raw (the header's raw flag too)."""
    from neurocodec.codecs.pc.codec import auto_model

    assert auto_model((1, 28, 28, 1))[0] == "mnist" and auto_model((5, 28, 28, 1))[0] == "mnist"
    assert auto_model((1, 28, 28, 3))[0] == "photo" and auto_model((1, 30, 28, 1))[0] == "photo"
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 12:16] = 255
    enc = neurocodec.encode_with_report(digit, codec="pc")
    assert enc.report["model"] == "mnist" and enc.report["model_choice"] == "auto" and not enc.report["raw"]
    assert np.array_equal(neurocodec.decode(enc.blob), digit)
    noise = np.random.default_rng(9).integers(0, 256, (9, 10), dtype=np.uint8)
    enc = neurocodec.encode_with_report(noise, codec="pc")
    assert enc.report["model"] == "photo" and enc.report["raw"] and "raw" in enc.report["note"]
    assert ncx.unpack(enc.blob).header["raw"] is True
    assert np.array_equal(neurocodec.decode(enc.blob), noise)


def test_declared_params_refuse_bad_values(tiny_model):
    x = np.zeros((3, 4, 5), np.uint8)
    for bad in ({"batch": "abc"}, {"batch": 2}, {"device": 3}, {"modle": "mnist"}):
        with pytest.raises(UsageError):
            neurocodec.encode(x, codec="pc", model=tiny_model, **bad)
    # strings as typed on the command line are converted
    blob = neurocodec.encode(x, codec="pc", model=tiny_model, batch="false")
    assert ncx.unpack(blob).header["layout"] == "hwc"
    with pytest.raises(UsageError):
        neurocodec.decode(blob, model=tiny_model, bogus=1)


def test_forged_headers_are_corrupt_stream_errors(tiny_model):
    from neurocodec.errors import CorruptStreamError

    x = np.zeros((6, 5), np.uint8)
    box = ncx.unpack(neurocodec.encode(x, codec="pc", model=tiny_model))
    forged = [{"shape": "abc"}, {"shape": [6, 5, 1, 1, 1]}, {"shape": [6, -5]}, {"shape": [6, True]},
              {"layout": "nhwc"}, {"layout": 3}, {"prec": 16}, {"prec": "24"}, {"dtype": "float32"},
              {"model_hash": "xyz"}, {"model": ""}, {"raw": "yes"}, {"raw": True}]
    for change in forged:
        blob = ncx.pack(ncx.Container("pc", 2, {**box.header, **change}, box.sections))
        with pytest.raises(CorruptStreamError):
            neurocodec.decode(blob, model=tiny_model)
    blob = ncx.pack(ncx.Container("pc", 2, {k: v for k, v in box.header.items() if k != "prec"}, box.sections))
    with pytest.raises(CorruptStreamError):
        neurocodec.decode(blob, model=tiny_model)
    blob = ncx.pack(ncx.Container("pc", 2, {**box.header, "shape": [1 << 20, 1 << 20]}, box.sections))
    with pytest.raises(InputError, match="max_values"):
        neurocodec.decode(blob, model=tiny_model)
