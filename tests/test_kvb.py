"""Discrete key-value bottleneck (issue 6): keys, values, no forgetting, codec, save/load, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import container
from neurocodec.codecs.kvb import KVBottleneck, PCAEncoder, RandomReLUEncoder
from neurocodec.codecs.kvb.baselines import LinearHead
from neurocodec.codecs.kvb.codec import KVBCodec, KVBDecoded
from neurocodec.codecs.kvb.data import digits_split
from neurocodec.errors import CorruptStreamError, InputError, NeurocodecError, UsageError

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
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
    path = trained.save(tmp_path / "m.kvb.npz")
    blob = neurocodec.encode(xte[:50], codec="kvb", model=str(path))
    box = container.unpack(blob)
    assert box.codec == "kvb" and box.header["shape"] == [50, 16]
    assert box.header["bottleneck"] == trained.fingerprint()
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
    a = trained.save(tmp_path / "a.kvb.npz")
    blob = neurocodec.encode(xte[:10], codec="kvb", model=str(a))
    other = KVBottleneck.load(a)
    other.partial_fit(xtr[:50], ytr[:50], epochs=1)  # values changed: a different bottleneck
    b = other.save(tmp_path / "b.kvb.npz")
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
    path = trained.save(tmp_path / "m.kvb.npz")
    back = KVBottleneck.load(path)
    assert back.fingerprint() == trained.fingerprint()
    assert torch.equal(back.keys, trained.keys) and torch.equal(back.values, trained.values)
    np.testing.assert_array_equal(back.predict(xte), trained.predict(xte))
    assert back.tasks_seen == 5 and back.classes_seen == list(range(10))


def test_save_load_other_encoders(digits, tmp_path):
    (xtr, ytr), (xte, _) = digits
    for enc in (RandomReLUEncoder(64, seed=3), "identity", "conv_ae"):
        kvb = small(enc, num_codebooks=8, num_keys=16).init_keys(xtr[:300], epochs=2)
        kvb.partial_fit(xtr[:100], ytr[:100], epochs=2)
        back = KVBottleneck.load(kvb.save(tmp_path / "e.kvb.npz"))
        assert back.fingerprint() == kvb.fingerprint()
        np.testing.assert_array_equal(back.indices(xte[:40]).numpy(), kvb.indices(xte[:40]).numpy())
    chunk = small(PCAEncoder(16), num_codebooks=4, key_dim=None, splitter="chunk").init_keys(xtr, epochs=2)
    assert chunk.key_dim == 4
    back = KVBottleneck.load(chunk.save(tmp_path / "c.kvb.npz"))
    np.testing.assert_array_equal(back.indices(xte).numpy(), chunk.indices(xte).numpy())
    # custom encoders must be handed back at load time
    custom = small(lambda x: x.reshape(len(x), -1)[:, :32], num_codebooks=4).init_keys(xtr, epochs=1)
    path = custom.save(tmp_path / "custom.kvb.npz")
    with pytest.raises(UsageError, match="custom encoder"):
        KVBottleneck.load(path)
    assert KVBottleneck.load(path, encoder=lambda x: x.reshape(len(x), -1)[:, :32]).fingerprint() == custom.fingerprint()


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(InputError):
        KVBottleneck.load(p)
    (tmp_path / "junk").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        KVBottleneck.load(tmp_path / "junk")
    with pytest.raises(InputError):
        KVBottleneck.load(tmp_path / "missing")


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
