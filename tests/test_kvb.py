"""Discrete key-value bottleneck (issues 6, 11): keys, values, no forgetting, codec, model files,
digests, shared read-only copies, errors."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import container, weights
from neurocodec.codecs.kvb import SHIPPED, ConvAEEncoder, KVBottleneck, PCAEncoder, RandomReLUEncoder
from neurocodec.codecs.kvb import shipped as shipped_mod
from neurocodec.codecs.kvb.baselines import LinearHead
from neurocodec.codecs.kvb.codec import KVBCodec, KVBDecoded, resolve_model
from neurocodec.codecs.kvb.data import digits_split
from neurocodec.errors import CorruptStreamError, InputError, NeurocodecError, UnsupportedVersionError, UsageError

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


@pytest.fixture(scope="module")
def digits():
    return digits_split()


def small(encoder="pca", **kw) -> KVBottleneck:
    opts = dict(num_codebooks=16, num_keys=32, key_dim=6, seed=0, device="cpu")
    opts.update(kw)
    if encoder == "pca":
        encoder = PCAEncoder(16)
    return KVBottleneck(encoder, **opts)


@pytest.fixture(scope="module")
def trained(digits):
    """A bottleneck trained class-incrementally on digits (shared by the codec tests)."""
    (xtr, ytr), _ = digits
    kvb = small().init_keys(xtr)
    for t in TASKS:
        sel = np.isin(ytr, t)
        kvb.partial_fit(xtr[sel], ytr[sel], epochs=60)
    return kvb


# ------------------------------------------------------------------------------------ keys
def test_key_init_beats_random_samples_and_uses_keys(digits):
    (xtr, _), _ = digits
    kvb = small().init_keys(xtr, epochs=10)
    C, K, dk = 16, 32, 6
    assert kvb.keys.shape == (C, K, dk) and torch.isfinite(kvb.keys).all()
    assert torch.equal(kvb.values, torch.zeros(C, K, 10))
    h = kvb.split(kvb.features(xtr))  # N x C x d_k

    def qerr(keys):
        d = ((h.transpose(0, 1)[:, :, None, :] - keys[:, None, :, :]) ** 2).sum(-1)  # C x N x K
        return float(d.min(-1).values.mean()), d.argmin(-1)

    err, idx = qerr(kvb.keys)
    rand_keys = h[torch.randint(0, len(h), (C, K), generator=torch.Generator().manual_seed(1)), torch.arange(C)[:, None]]
    err_rand, _ = qerr(rand_keys)
    assert err < 0.8 * err_rand  # k-means moved the keys towards the data
    used = np.mean([len(torch.unique(idx[c])) / K for c in range(C)])
    assert used > 0.9  # dead-key replacement leaves (almost) no key unused
    # indices agree with the brute-force nearest key
    assert torch.equal(kvb.indices(xtr, mask=False), idx.T)


def test_init_is_deterministic(digits):
    (xtr, _), _ = digits
    a, b = small().init_keys(xtr[:400]), small().init_keys(xtr[:400])
    assert torch.equal(a.keys, b.keys)
    c = small(seed=1).init_keys(xtr[:400])
    assert not torch.equal(a.keys, c.keys)


# ---------------------------------------------------------------------------------- values
def test_partial_fit_trains_only_selected_values(digits):
    (xtr, ytr), _ = digits
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 24))
    enc_before = [p.detach().clone() for p in encoder.parameters()]
    kvb = small(encoder).init_keys(xtr)
    keys_before = kvb.keys.clone()
    sel = np.isin(ytr, (0, 1))
    kvb.partial_fit(xtr[sel], ytr[sel], epochs=20)
    assert torch.equal(kvb.keys, keys_before)  # keys frozen
    assert all(torch.equal(a, b) for a, b in zip(enc_before, encoder.parameters()))  # encoder frozen
    assert not any(p.requires_grad for p in encoder.parameters())
    used = kvb.counts > 0
    assert used.any() and (~used).any()
    assert (kvb.values[used].abs().sum(-1) > 0).all()
    assert torch.equal(kvb.values[~used], torch.zeros_like(kvb.values[~used]))  # never-selected values untouched
    # a second task leaves the values only its own samples select exactly where they were
    before = kvb.values.clone()
    sel2 = np.isin(ytr, (2, 3))
    idx2 = kvb.indices(xtr[sel2], mask=False)
    kvb.partial_fit(xtr[sel2], ytr[sel2], epochs=5)
    touched = torch.zeros_like(used)
    touched[torch.arange(16)[None, :].expand_as(idx2), idx2] = True
    assert torch.equal(kvb.values[~touched], before[~touched])


def test_no_forgetting_where_naive_head_forgets(digits, trained):
    (xtr, ytr), (xte, yte) = digits
    acc = trained.score(xte, yte)
    first = np.isin(yte, TASKS[0])
    acc_first = float((trained.predict(xte[first]) == yte[first]).mean())
    # the same encoder features, a linear head fine-tuned task after task
    kvb = small().init_keys(xtr)
    ztr, zte = kvb.features(xtr), kvb.features(xte)
    head = LinearHead(10).init(ztr)
    for t in TASKS:
        sel = torch.from_numpy(np.isin(ytr, t))
        head.partial_fit(ztr[sel], torch.from_numpy(ytr)[sel], epochs=100)
    naive = float((head.predict(zte).numpy() == yte).mean())
    naive_first = float((head.predict(zte[torch.from_numpy(first)]).numpy() == yte[first]).mean())
    assert acc > 0.85, acc
    assert acc_first > 0.85, acc_first
    # a linear head on good fixed features saturates on each 2-class task, so it keeps part of the
    # old classes; it still loses most of the first task, which the bottleneck keeps
    assert naive_first < 0.6, naive_first
    assert acc > naive + 0.1, (acc, naive)


def test_key_masking_at_evaluation(trained, digits):
    _, (xte, _) = digits
    idx = trained.indices(xte, mask=True)
    used = trained.counts > 0
    assert used[torch.arange(16)[None, :].expand_as(idx), idx].all()
    assert trained.lookup(idx.numpy()).logits.argmax(1).tolist() == trained.predict(xte).tolist()


# ----------------------------------------------------------------------------------- codec
def test_codec_round_trip(trained, digits, tmp_path):
    _, (xte, _) = digits
    path = trained.save(tmp_path / "m.ncx")
    blob = neurocodec.encode(xte[:50], codec="kvb", model=str(path))
    box = container.unpack(blob)
    assert box.codec == "kvb" and box.codec_version == 2 and box.header["shape"] == [50, 16]
    assert box.header["bottleneck"] == trained.short_digest == weights.file_digest(path)[:16]
    assert box.header["fixed_bits_per_sample"] == pytest.approx(16 * 5)
    assert box.header["coded_bits_per_sample"] == pytest.approx(8 * len(box.sections["indices"]) / 50)
    out = neurocodec.decode(blob)
    assert isinstance(out, KVBDecoded)
    want = trained.indices(xte[:50]).numpy()
    np.testing.assert_array_equal(out.indices, want)
    np.testing.assert_array_equal(out.logits.argmax(1), trained.predict(xte[:50]))
    assert out.values.shape == (50, 16, 10)
    np.testing.assert_allclose(out.values.mean(1), out.logits, rtol=1e-6, atol=1e-7)
    # in-memory model: decode needs it passed
    blob2 = KVBCodec().encode(xte[:7], model=trained)
    with pytest.raises(UsageError, match="model="):
        neurocodec.decode(blob2)
    np.testing.assert_array_equal(KVBCodec().decode(blob2, model=trained).indices, trained.indices(xte[:7]).numpy())
    # a single sample is a batch of one
    assert KVBCodec().decode(KVBCodec().encode(xte[0], model=trained), model=trained).indices.shape == (1, 16)


def test_codec_random_indices_round_trip_unmasked(trained):
    """Every index, used in training or not, survives the entropy coder exactly."""
    codec = KVBCodec()
    x = np.random.default_rng(0).normal(size=(300, 8, 8)).astype(np.float32) * 8
    blob = codec.encode(x, model=trained, mask=False)
    out = codec.decode(blob, model=trained)
    np.testing.assert_array_equal(out.indices, trained.indices(x, mask=False).numpy())


def test_codec_refuses_other_bottleneck(trained, digits, tmp_path):
    (xtr, ytr), (xte, _) = digits
    a = trained.save(tmp_path / "a.ncx")
    blob = neurocodec.encode(xte[:10], codec="kvb", model=str(a))
    other = KVBottleneck.load(a)
    other.partial_fit(xtr[:50], ytr[:50], epochs=1)  # values changed: a different bottleneck
    b = other.save(tmp_path / "b.ncx")
    with pytest.raises(InputError, match="needs bottleneck"):
        KVBCodec().decode(blob, model=str(b))
    # the model named in the header has changed on disk since: also refused
    other.save(a)
    with pytest.raises(InputError, match="needs bottleneck"):
        neurocodec.decode(blob)


def test_codec_corrupt_and_bad_params(trained, digits):
    _, (xte, _) = digits
    blob = KVBCodec().encode(xte[:20], model=trained)
    box = container.unpack(blob)
    cut = container.Container(box.codec, box.codec_version, box.header, {"indices": box.sections["indices"][:-5]})
    with pytest.raises(CorruptStreamError):
        KVBCodec().decode(cut, model=trained)
    bad = container.Container(box.codec, box.codec_version, {**box.header, "shape": "x"}, box.sections)
    with pytest.raises(CorruptStreamError):
        KVBCodec().decode(bad, model=trained)
    with pytest.raises(UsageError):
        KVBCodec().encode(xte[:2], model=trained, quality=3)
    with pytest.raises(UsageError, match="neither a built-in"):
        KVBCodec().encode(xte[:2], model="no-such-model")


# ------------------------------------------------------------------------------- save/load
def test_save_load_round_trip(trained, digits, tmp_path):
    _, (xte, _) = digits
    path = trained.save(tmp_path / "m.ncx")
    back = KVBottleneck.load(path)
    assert back.digest == trained.digest == weights.file_digest(path)
    assert torch.equal(back.keys, trained.keys) and torch.equal(back.values, trained.values)
    np.testing.assert_array_equal(back.predict(xte), trained.predict(xte))
    assert back.tasks_seen == 5 and back.classes_seen == list(range(10))


def test_save_load_other_encoders(digits, tmp_path):
    (xtr, ytr), (xte, _) = digits
    for enc in (RandomReLUEncoder(64, seed=3), "identity", "conv_ae"):
        kvb = small(enc, num_codebooks=8, num_keys=16).init_keys(xtr[:300], epochs=2)
        kvb.partial_fit(xtr[:100], ytr[:100], epochs=2)
        back = KVBottleneck.load(kvb.save(tmp_path / "e.ncx"))
        assert back.digest == kvb.digest
        np.testing.assert_array_equal(back.indices(xte[:40]).numpy(), kvb.indices(xte[:40]).numpy())
    chunk = small(PCAEncoder(16), num_codebooks=4, key_dim=None, splitter="chunk").init_keys(xtr, epochs=2)
    assert chunk.key_dim == 4
    back = KVBottleneck.load(chunk.save(tmp_path / "c.ncx"))
    np.testing.assert_array_equal(back.indices(xte).numpy(), chunk.indices(xte).numpy())
    # custom encoders must be handed back at load time
    custom = small(lambda x: x.reshape(len(x), -1)[:, :32], num_codebooks=4).init_keys(xtr, epochs=1)
    path = custom.save(tmp_path / "custom.ncx")
    with pytest.raises(UsageError, match="custom encoder"):
        KVBottleneck.load(path)
    assert KVBottleneck.load(path, encoder=lambda x: x.reshape(len(x), -1)[:, :32]).digest == custom.digest
    with pytest.raises(UsageError, match="stores its own"):
        KVBottleneck.load(tmp_path / "c.ncx", encoder="identity")  # a file with a built-in encoder


def test_load_rejects_other_files(trained, digits, tmp_path):
    """Pickles, garbage, old .npz files, other kinds of model file and plain streams: InputError,
    whether given to KVBottleneck.load or to the codec as model=."""
    _, (xte, _) = digits
    bad = {}
    bad["pickle"] = tmp_path / "model.pkl"
    bad["pickle"].write_bytes(pickle.dumps({"keys": np.zeros(3)}))
    bad["junk"] = tmp_path / "junk"
    bad["junk"].write_bytes(b"not a model file at all")
    bad["empty"] = tmp_path / "empty.ncx"
    bad["empty"].write_bytes(b"")
    bad["npz"] = tmp_path / "old.kvb.npz"
    np.savez(bad["npz"], keys=np.zeros(3))
    bad["encoder"] = tmp_path / "conv_ae.ncx"  # a kvb-encoder file, not a bottleneck
    shutil.copy(shipped_mod.shipped_path("conv_ae"), bad["encoder"])
    bad["pc"] = tmp_path / "pc.ncx"
    weights.save(bad["pc"], "pc", 1, {}, {"a": np.zeros(2)})
    bad["stream"] = tmp_path / "stream.ncx"  # a kvb bitstream is not a model file
    bad["stream"].write_bytes(KVBCodec().encode(xte[:3], model=trained))
    good = trained.to_bytes()
    bad["flipped"] = tmp_path / "flipped.ncx"
    bad["flipped"].write_bytes(good[:-10] + bytes([good[-10] ^ 1]) + good[-9:])
    bad["cut"] = tmp_path / "cut.ncx"
    bad["cut"].write_bytes(good[: len(good) // 2])
    cfg, arrays = trained.config(), trained.model_arrays()
    bad["tables"] = tmp_path / "tables.ncx"
    weights.save(bad["tables"], "kvb", 1, cfg, {**arrays, "freqs": arrays["freqs"] + 1})
    bad["config"] = tmp_path / "config.ncx"
    weights.save(bad["config"], "kvb", 1, {**cfg, "num_keys": -3}, arrays)
    bad["missing"] = tmp_path / "missing.ncx"
    weights.save(bad["missing"], "kvb", 1, cfg, {k: v for k, v in arrays.items() if k != "values"})
    bad["no_encoder"] = tmp_path / "no_encoder.ncx"  # a PCA bottleneck without its PCA arrays
    weights.save(bad["no_encoder"], "kvb", 1, cfg, {k: v for k, v in arrays.items() if not k.startswith("encoder/")})
    bad["shape"] = tmp_path / "shape.ncx"
    weights.save(bad["shape"], "kvb", 1, cfg, {**arrays, "keys": arrays["keys"][:, :3]})
    for what, path in bad.items():
        with pytest.raises(InputError):
            KVBottleneck.load(path)
        with pytest.raises(InputError):
            KVBCodec().encode(xte[:2], model=str(path))
    with pytest.raises(InputError, match="no longer read"):
        KVBottleneck.load(bad["npz"])
    newer = tmp_path / "newer.ncx"
    weights.save(newer, "kvb", 99, cfg, arrays)
    with pytest.raises(UnsupportedVersionError):
        KVBottleneck.load(newer)
    with pytest.raises(InputError, match="does not exist"):
        KVBottleneck.load(tmp_path / "nowhere.ncx")


# ------------------------------------------------------------------------ shipped models
def test_shipped_files_are_pinned(digits):
    folder = shipped_mod.WEIGHTS_DIR
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".npz", ".pt", ".ncpc", ".pkl")) == []
    for name, digest in SHIPPED.items():
        assert weights.file_digest(shipped_mod.shipped_path(name)) == digest
    for name in ("digits", "mnist"):
        kvb = KVBottleneck.shipped(name, device="cpu")
        assert kvb.digest == SHIPPED[name] and kvb.short_digest == SHIPPED[name][:16]
        assert weights.load(shipped_mod.shipped_path(name)).kind == "kvb"
    assert ConvAEEncoder().source == SHIPPED["conv_ae"][:16]
    assert weights.load(shipped_mod.shipped_path("conv_ae")).kind == "kvb-encoder"
    _, (xte, _) = digits
    box = container.unpack(neurocodec.encode(xte[:5], codec="kvb", model="digits"))
    assert box.header["bottleneck"] == SHIPPED["digits"][:16] and box.header["model"] == "digits"
    with pytest.raises(UsageError, match="built-in"):
        KVBottleneck.shipped("conv_ae")


def test_edited_shipped_file_is_refused(monkeypatch, tmp_path, digits):
    _, (xte, _) = digits
    for name in SHIPPED:
        shutil.copy(shipped_mod.shipped_path(name), tmp_path / f"{name}.ncx")
    # a valid model file with one value changed: its CRCs are fine, its digest is not
    orig = weights.load(shipped_mod.shipped_path("digits"))
    arrays = {k: np.array(v) for k, v in orig.arrays.items()}
    arrays["values"][0, 0, 0] += 1.0
    weights.save(tmp_path / "digits.ncx", "kvb", orig.version, orig.config, arrays)
    ae = weights.load(shipped_mod.shipped_path("conv_ae"))
    weights.save(tmp_path / "conv_ae.ncx", ae.kind, ae.version, ae.config,
                 {k: np.array(v) * 2 for k, v in ae.arrays.items()})
    data = (tmp_path / "mnist.ncx").read_bytes()  # and one with a flipped byte
    (tmp_path / "mnist.ncx").write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    monkeypatch.setattr(shipped_mod, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(InputError, match="changed or replaced"):
        KVBottleneck.shipped("digits")
    with pytest.raises(InputError, match="changed or replaced"):
        neurocodec.encode(xte[:3], codec="kvb", model="digits")
    with pytest.raises(InputError, match="changed or replaced"):
        ConvAEEncoder()
    with pytest.raises(InputError):
        KVBottleneck.shipped("mnist")


# --------------------------------------------------------------------------- identity
def test_saved_twice_same_digest(trained, tmp_path):
    a, b = trained.save(tmp_path / "a.ncx"), trained.save(tmp_path / "b.ncx")
    assert a.read_bytes() == b.read_bytes()
    assert weights.file_digest(a) == weights.file_digest(b) == trained.digest
    back = KVBottleneck.load(a)
    assert back.save(tmp_path / "c.ncx").read_bytes() == a.read_bytes()
    # the in-memory digest is computed from the bytes save() would write, not only after a save
    fresh = KVBottleneck.load(a)
    fresh._digest_cache = None
    assert fresh.digest == trained.digest


def test_digest_follows_training_and_edits(trained, digits, tmp_path):
    (xtr, ytr), _ = digits
    kvb = KVBottleneck.load(trained.save(tmp_path / "m.ncx"))
    d0 = kvb.digest
    assert kvb.digest == d0  # cached: the same answer, no re-hash needed
    kvb.partial_fit(xtr[:40], ytr[:40], epochs=1)
    d1 = kvb.digest
    assert d1 != d0 and d1 == weights.file_digest(kvb.save(tmp_path / "m1.ncx"))
    kvb.values[0, 0, 0] += 1.0  # a hand edit of a tensor is seen through its version counter
    assert kvb.digest not in (d0, d1)
    with pytest.raises(ValueError):
        kvb.freqs[0, 0] = 7  # the tables are read-only
    kvb.init_keys(xtr[:100], epochs=1)
    assert kvb.digest == weights.file_digest(kvb.save(tmp_path / "m2.ncx"))


def test_encode_decode_encode_gives_identical_bytes(trained, digits, tmp_path):
    """Decoding in between changes nothing: no shared model is mutated, nothing is kept."""
    _, (xte, _) = digits
    path = str(trained.save(tmp_path / "m.ncx"))
    for model in ("digits", path, trained):
        first = KVBCodec().encode(xte[:40], model=model)
        out = KVBCodec().decode(first, model=model)
        out.values[:] = 0  # the caller owns what decode returns
        again = neurocodec.encode(xte[:40], codec="kvb", model=model)
        assert first == again
        np.testing.assert_array_equal(KVBCodec().decode(again, model=model).indices, out.indices)
    # the unmasked code too
    assert KVBCodec().encode(xte, model="digits", mask=False) == KVBCodec().encode(xte, model="digits", mask=False)


def test_codec_uses_a_shared_read_only_copy(digits):
    (xtr, ytr), (xte, _) = digits
    shared = resolve_model("digits", device="cpu")
    assert resolve_model("digits", device="cpu") is shared  # built once per file digest and device
    values = shared.values.clone()
    with pytest.raises(UsageError, match="read-only"):
        shared.partial_fit(xtr[:10], ytr[:10], epochs=1)
    with pytest.raises(UsageError, match="read-only"):
        shared.init_keys(xtr[:10])
    mine = KVBottleneck.shipped("digits", device="cpu")  # a fresh copy of one's own
    assert mine is not shared and mine.digest == shared.digest
    blob = neurocodec.encode(xte[:20], codec="kvb", model="digits")
    mine.partial_fit(xtr[:50], ytr[:50], epochs=2)
    assert mine.digest != shared.digest
    assert torch.equal(shared.values, values) and shared.digest == SHIPPED["digits"]
    assert neurocodec.decode(blob).indices.shape == (20, 64)


def test_no_global_rng_is_touched(digits):
    (xtr, ytr), (xte, _) = digits
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    kvb = small().init_keys(xtr[:300], epochs=2)
    kvb.partial_fit(xtr[:100], ytr[:100], epochs=2)
    small(RandomReLUEncoder(32)).init_keys(xtr[:100], epochs=1)
    small("conv_ae", num_codebooks=8).init_keys(xtr[:100], epochs=1)
    neurocodec.decode(neurocodec.encode(xte[:10], codec="kvb", model="digits"))
    head = LinearHead(10, seed=1).init(kvb.features(xtr[:100]))
    head.partial_fit(kvb.features(xtr[:100]), torch.from_numpy(ytr[:100]), epochs=1)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_decode_imports_no_training_code(trained, digits, tmp_path):
    _, (xte, _) = digits
    path = trained.save(tmp_path / "m.ncx")
    (tmp_path / "a.ncx").write_bytes(neurocodec.encode(xte[:5], codec="kvb", model=str(path)))
    (tmp_path / "b.ncx").write_bytes(neurocodec.encode(xte[:5], codec="kvb", model="digits"))
    code = (
        "import sys, neurocodec\n"
        f"for f in ({str(tmp_path / 'a.ncx')!r}, {str(tmp_path / 'b.ncx')!r}):\n"
        "    neurocodec.decode(open(f, 'rb').read())\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.startswith('neurocodec') and m.rsplit('.', 1)[-1].startswith('train'))\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_version_1_streams_are_refused(trained, digits):
    _, (xte, _) = digits
    box = container.unpack(KVBCodec().encode(xte[:3], model=trained))
    old = container.pack(container.Container(box.codec, 1, box.header, box.sections))
    with pytest.raises(UnsupportedVersionError):
        KVBCodec().decode(old, model=trained)

# ---------------------------------------------------------------------------------- errors
def test_bad_inputs(digits):
    (xtr, ytr), _ = digits
    with pytest.raises(UsageError):
        KVBottleneck("pca", splitter="hash")
    with pytest.raises(UsageError):
        KVBottleneck("no-such-encoder")
    with pytest.raises(UsageError):
        KVBottleneck("pca", num_keys=0)
    with pytest.raises(UsageError):
        KVBottleneck(42)
    with pytest.raises(UsageError, match="device"):
        KVBottleneck("pca", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            KVBottleneck("pca", device="cuda")
    kvb = small()
    with pytest.raises(UsageError, match="init_keys"):
        kvb.predict(xtr[:3])
    with pytest.raises(UsageError, match="init_keys"):
        kvb.partial_fit(xtr[:3], ytr[:3])
    with pytest.raises(UsageError, match="multiple"):
        small(PCAEncoder(16), num_codebooks=5, key_dim=None, splitter="chunk").init_keys(xtr, epochs=1)
    kvb.init_keys(xtr[:200], epochs=1)
    for bad in (np.array(["a", "b"]), np.zeros(5), np.zeros((0, 8, 8)), np.full((2, 8, 8), np.nan), np.zeros((3, 7, 7))):
        with pytest.raises(InputError):
            kvb.predict(bad)
    with pytest.raises(InputError, match="labels"):
        kvb.partial_fit(xtr[:10], ytr[:9])
    with pytest.raises(InputError, match="0..9"):
        kvb.partial_fit(xtr[:10], np.full(10, 10))
    with pytest.raises(InputError, match="integers"):
        kvb.partial_fit(xtr[:10], np.full(10, 0.5))
    with pytest.raises(InputError):
        kvb.lookup(np.zeros((2, 16)) + 99)
    # every error is a neurocodec error (the CLI maps them to exit codes)
    assert issubclass(InputError, NeurocodecError)


def test_torch_and_numpy_inputs_agree(trained, digits):
    _, (xte, _) = digits
    np.testing.assert_array_equal(trained.predict(xte[:30]), trained.predict(torch.from_numpy(xte[:30])))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(digits):
    (xtr, ytr), (xte, _) = digits
    cpu = small().init_keys(xtr, epochs=2)
    gpu = small(device="cuda").init_keys(xtr, epochs=2)
    assert gpu.keys.is_cuda
    agree = (cpu.indices(xte, mask=False).numpy() == gpu.indices(xte, mask=False).cpu().numpy()).mean()
    assert agree > 0.95


def test_builtin_models(digits, mnist_small):
    from neurocodec.codecs.kvb.codec import builtin_models

    assert {"digits", "mnist"} <= set(builtin_models())
    _, (xte, yte) = digits
    blob = neurocodec.encode(xte, codec="kvb", model="digits")
    out = neurocodec.decode(blob)  # the header names the built-in
    assert (out.logits.argmax(1) == yte).mean() > 0.9
    box = container.unpack(blob)
    assert box.header["coded_bits_per_sample"] <= box.header["fixed_bits_per_sample"] + 1
    m = neurocodec.decode(neurocodec.encode(mnist_small, codec="kvb"))  # default model: mnist
    assert m.indices.shape == (len(mnist_small), 64)
    with pytest.raises(InputError, match="shape"):
        neurocodec.encode(xte, codec="kvb", model="mnist")  # 8x8 digits into the 28x28 model
