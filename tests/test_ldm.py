"""Tests of the ldm codec / upsampler / generator (tiny random models, plus checks of the shipped ones)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import datasets, metrics
from neurocodec import weights
from neurocodec.codecs.ldm import api, liif, model
from neurocodec.codecs.ldm.autoencoder import CodecAE, LIIFUpsampler, SynthesisLIIF, encode_tiled, to_unit
from neurocodec.codecs.ldm.codec import LDMCodec
from neurocodec.codecs.ldm.diffusion import UNet, alphas_cumprod, ddim_sample, diffusion_loss, split_prediction
from neurocodec.codecs.ldm.image import resize
from neurocodec.codecs.ldm.model import SHIPPED, WEIGHTS_DIR
from neurocodec.errors import CorruptStreamError, InputError, NeurocodecError, UsageError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small tensors: one thread is faster, and far faster on a shared, oversubscribed CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A weights folder with tiny, randomly initialised models in the shipped format."""
    folder = tmp_path_factory.mktemp("ldm_tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.save(LIIFUpsampler(ch=8, blocks=1, hidden=16, depth=2), "sr", folder)
        model.save(CodecAE(ch=8, latent=4, dec_blocks=1, hidden=16, depth=2), "ae", folder)
        model.save(UNet(latent=4, ch=16), "unet", folder, sigma=1.0)
    return folder


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 3, xx * 2, (yy + xx)], axis=-1) % 256
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ coordinate math
def test_pixel_centers_and_indices():
    c = liif.pixel_centers(4)
    assert torch.allclose(c, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    for n in (1, 3, 7, 64):
        centers = liif.pixel_centers(n)
        idx = liif.nearest_index(centers, n)
        assert torch.equal(idx, torch.arange(n))
        assert torch.allclose(liif.index_center(idx, n), centers)
    # outside [-1, 1] clamps; the right edge belongs to the last cell
    assert liif.nearest_index(torch.tensor([-1.5, -1.0, 1.0, 2.0]), 5).tolist() == [0, 0, 4, 4]
    g = liif.make_coord(2, 3)
    assert g.shape == (2, 3, 2)
    assert torch.allclose(g[1, 2], torch.tensor([0.5, 2 / 3]))


def test_domain_centers_extent_and_output_size():
    # extent 1: same as pixel centers; extent 0.5: the first half of the domain
    assert torch.allclose(liif.domain_centers(5, 1.0), liif.pixel_centers(5))
    assert torch.allclose(liif.domain_centers(2, 0.5), torch.tensor([-0.75, -0.25]))
    assert liif.output_size(3, 5, 2.5) == (8, 13)  # round half up
    assert liif.output_size(100, 100, 0.001) == (1, 1)
    assert liif.output_size(300, 451, 3.7) == (1110, 1669)


def test_gather_matches_indexing():
    grid = torch.randn(2, 5, 6, 7)
    iy, ix = torch.randint(0, 6, (2, 11)), torch.randint(0, 7, (2, 11))
    got = liif.gather_pixels(grid, iy, ix)
    want = torch.stack([grid[b, :, iy[b], ix[b]].T for b in range(2)])
    assert torch.equal(got, want)


def test_bicubic_identity_constant_and_linear():
    base = torch.rand(1, 3, 6, 9)
    coord = liif.make_coord(6, 9).reshape(1, -1, 2)
    out = liif.bicubic_at(base, coord, (6, 9))
    assert torch.allclose(out.transpose(1, 2).reshape(1, 3, 6, 9), base, atol=1e-6)  # same grid: identity
    const = torch.full((1, 3, 5, 5), 0.3)
    q = torch.rand(1, 50, 2) * 2 - 1
    assert torch.allclose(liif.bicubic_at(const, q, (5, 5)), torch.full((1, 50, 3), 0.3), atol=1e-6)
    ramp = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 4, 10)
    x = torch.linspace(-0.5, 0.5, 21)  # interior: cubic convolution reproduces linear functions
    pts = torch.stack([torch.zeros_like(x), x], dim=-1)[None]
    want = (x + 1) * 5 - 0.5
    assert torch.allclose(liif.bicubic_at(ramp, pts, (4, 10))[0, :, 0], want, atol=1e-5)


def test_local_ensemble_weights_sum_to_one():
    head = liif.LIIFHead(4, hidden=8, depth=2)
    with torch.no_grad():
        last = head.mlp[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.1, -0.2, 0.7]))
    feat = torch.randn(1, 4, 5, 6)
    q = torch.rand(1, 40, 2) * 2 - 1
    out = head.query(head.prepare(feat), q, torch.full_like(q, 0.1), (5, 6))
    assert torch.allclose(out, torch.tensor([0.1, -0.2, 0.7]).expand(1, 40, 3), atol=1e-6)


def test_needed_range_covers_taps():
    ys = liif.domain_centers(40, 1.0)[10:20]
    lo, hi = liif.needed_range(ys, 9)
    assert 0 <= lo <= hi <= 8
    for y in ys:
        i = int(liif.nearest_index(y, 9))
        assert lo <= max(i - 2, 0) and min(i + 2, 8) <= hi


# --------------------------------------------------------------------------------------- tiling
def test_tiled_equals_untiled_upsampler():
    torch.manual_seed(1)
    sr = LIIFUpsampler(ch=8, blocks=2, hidden=16, depth=2).eval()
    lr = to_unit(_img(23, 31))
    full = sr.upsample(lr, 57, 80, tile=None)
    for tile in (7, 16, 33):
        tiled = sr.upsample(lr, 57, 80, tile=tile)
        assert tiled.shape == full.shape
        assert torch.allclose(tiled, full, atol=1e-5), (tile, (tiled - full).abs().max())


def test_tiled_equals_untiled_codec_decoder_and_encoder():
    torch.manual_seed(2)
    ae = CodecAE(ch=8, latent=4, dec_blocks=2, hidden=16, depth=2).eval()
    x = to_unit(_img(40, 54))
    with torch.no_grad():
        z_full = ae.encode(x)
        z_strips = encode_tiled(ae, x, rows=3)
        assert torch.allclose(z_full, z_strips, atol=1e-5)
    full = ae.render(z_full, 45, 61, (0.9, 0.95), tile=None)
    assert torch.allclose(ae.render(z_full, 45, 61, (0.9, 0.95), tile=8), full, atol=1e-5)


# ------------------------------------------------------------------------------------- codec
def test_latent_round_trip_exact(tiny):
    codec = LDMCodec(tiny)
    img = _img(29, 35)
    for q in (1, 4):
        blob = codec.encode(img, quality=q, model="ae")
        box = neurocodec.container.unpack(blob)
        want = codec.latent_symbols(img, q)
        got = codec.decode_latent(box.header, box.sections)
        assert got.dtype.kind == "i" and np.array_equal(got, want)
        assert box.header["latent"] == [4, 15, 18]


def test_tables_are_integer_and_reproducible(tiny):
    mf = model.load("ae", tiny)
    t, radius = model.tables(mf), mf.config["table_radius"]
    assert t.dtype.kind == "i" and t.shape == (4, 4, 2 * radius + 1) and not t.flags.writeable
    assert (t >= 1).all() and (t.sum(-1) == 1 << 16).all()
    assert np.array_equal(model.instantiate(mf).prior_tables(radius), t)  # same integers from the stored weights


def test_any_size_decode_shapes(tiny):
    codec = LDMCodec(tiny)
    img = _img(37, 51)
    blob = codec.encode(img, quality=2, model="ae")
    assert codec.decode(blob).shape == (37, 51, 3)
    assert codec.decode(blob, scale=2.7).shape == (100, 138, 3)
    assert codec.decode(blob, size=(80, 20)).shape == (20, 80, 3)
    assert codec.decode(blob, scale=0.1).shape == (4, 5, 3)  # thumbnail
    assert codec.decode(blob, size=(1, 1)).shape == (1, 1, 3)
    grey = codec.decode(codec.encode(img[..., 0], quality=1, model="ae"))
    assert grey.shape == (37, 51)


def test_codec_bad_input(tiny):
    codec = LDMCodec(tiny)
    img = _img(16, 16)
    with pytest.raises(UsageError):
        codec.encode(img, quality=7, model="ae")
    with pytest.raises(InputError):
        codec.encode(img.astype(np.float32), model="ae")
    with pytest.raises(InputError):
        codec.encode(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(UsageError):
        codec.encode(img, colour=3, model="ae")
    blob = codec.encode(img, model="ae")
    with pytest.raises(UsageError):
        codec.decode(blob, scale=2, size=(3, 3))
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(UsageError):
            codec.decode(blob, scale=bad)
    with pytest.raises(UsageError):
        codec.decode(blob, size=(0, 5))
    box = neurocodec.container.unpack(blob)
    for name, payload in box.sections.items():  # any truncated section
        if payload:
            with pytest.raises(CorruptStreamError):
                codec.decompress(box.header, {**box.sections, name: payload[:-1]})
    with pytest.raises(CorruptStreamError):
        codec.decompress({**box.header, "coding": "x" * 4}, box.sections)
    if "e" in box.header["coding"]:
        i = box.header["coding"].index("e")
        with pytest.raises(CorruptStreamError):
            codec.decompress(box.header, {k: v for k, v in box.sections.items() if k != f"ch{i}"})
    with pytest.raises(CorruptStreamError):
        codec.decompress({**box.header, "latent": [4, 99, 99]}, box.sections)
    with pytest.raises(InputError):  # stream from another model
        codec.decompress({**box.header, "model": "0" * 16}, box.sections)
    v1 = {k: v for k, v in box.header.items() if k != "model"}
    with pytest.raises(InputError):  # a version-1 stream of an ae.pt that is not the shipped one
        codec.decompress({**v1, "weights": box.header["model"]}, box.sections)


# ----------------------------------------------------------------------------- upsample/generate
@pytest.mark.parametrize("shape,scale", [((13, 17, 3), 2.5), ((10, 9, 3), 1.0), ((12, 20, 3), 0.5), ((7, 11), 3.7)])
def test_upsample_sizes(tiny, shape, scale):
    img = _img(shape[0], shape[1])
    if len(shape) == 2:
        img = img[..., 0]
    out = api.upsample(img, scale, weights_dir=tiny)
    want = (math.floor(shape[0] * scale + 0.5), math.floor(shape[1] * scale + 0.5))
    assert out.shape[:2] == want and out.ndim == len(shape) and out.dtype == np.uint8


def test_upsample_diffusion_and_generate(tiny):
    img = _img(9, 14)
    a = api.upsample(img, 2.5, method="diffusion", steps=2, seed=3, weights_dir=tiny)
    b = api.upsample(img, 2.5, method="diffusion", steps=2, seed=3, weights_dir=tiny)
    c = api.upsample(img, 2.5, method="diffusion", steps=2, seed=4, weights_dir=tiny)
    assert a.shape == (23, 35, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert api.upsample(img, 6.0, method="diffusion", steps=1, strength=1.0, weights_dir=tiny).shape == (54, 84, 3)
    assert api.upsample(np.dstack([img, img[..., :1]]), size=(20, 30), weights_dir=tiny).shape == (30, 20, 4)
    assert api.generate(33, 21, seed=1, steps=2, weights_dir=tiny).shape == (21, 33, 3)


def test_v_prediction_liif_conditioned_weights_run_through_the_api(tiny, tmp_path):
    """Weights declare their parameterisation and condition; the api follows them."""
    import shutil

    for f in ("sr.ncx", "ae.ncx"):
        shutil.copy(tiny / f, tmp_path / f)
    model.save(UNet(latent=4, ch=16, prediction="v", schedule="cosine"), "unet", tmp_path, sigma=1.0,
               res_sigma=0.5, condition="liif")
    img = _img(9, 14)
    a = api.upsample(img, 2.5, method="diffusion", steps=2, seed=3, weights_dir=tmp_path)
    assert a.shape == (23, 35, 3) and np.array_equal(a, api.upsample(img, 2.5, method="diffusion", steps=2, seed=3,
                                                                          weights_dir=tmp_path))
    assert not np.array_equal(a, api.upsample(img, 2.5, method="diffusion", steps=2, seed=3, weights_dir=tiny))
    assert api.generate(20, 12, seed=0, steps=2, weights_dir=tmp_path).shape == (12, 20, 3)


def test_ddim_seeded():
    unet = UNet(latent=4, ch=16).eval()
    cond = torch.zeros(1, 4, 6, 8)
    x1 = ddim_sample(unet, cond, steps=3, seed=5)
    assert torch.equal(x1, ddim_sample(unet, cond, steps=3, seed=5))
    assert x1.shape == cond.shape and torch.isfinite(x1).all()
    assert not torch.equal(x1, ddim_sample(unet, cond, steps=3, seed=5, t_start=300))
    with pytest.raises(ValueError):
        ddim_sample(unet, cond, steps=3, t_start=1000)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_noise_schedules(schedule):
    abar = alphas_cumprod(schedule)
    assert abar.shape == (1000,) and torch.all(abar[1:] < abar[:-1])
    assert 0.99 < float(abar[0]) < 1 and float(abar[-1]) < 1e-3


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_prediction_targets_invert(prediction):
    """The loss target is what split_prediction turns back into the true x0 and noise."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 6, 6, generator=g), torch.randn(3, 4, 6, 6, generator=g)
    a = alphas_cumprod("cosine")[torch.tensor([5, 400, 990])][:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = a.sqrt() * noise - (1 - a).sqrt() * x0 if prediction == "v" else noise
    x0_hat, eps_hat = split_prediction(target, xt, a, prediction)
    assert torch.allclose(x0_hat, x0, atol=1e-3 if prediction == "v" else 2e-2) and torch.allclose(eps_hat, noise, atol=1e-4)


def test_v_prediction_model_trains_and_samples():
    torch.manual_seed(0)
    unet = UNet(latent=4, ch=16, prediction="v", schedule="cosine")
    abar = alphas_cumprod(unet.schedule)
    x0 = torch.randn(4, 4, 8, 8) * 0.5
    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, t, x0_hat = diffusion_loss(unet, x0, torch.zeros_like(x0), abar, torch.Generator().manual_seed(1))
        first = loss.item() if first is None else first
        opt.zero_grad(), loss.backward(), opt.step()
    assert loss.item() < first and x0_hat.shape == x0.shape
    with pytest.raises(ValueError):
        UNet(latent=4, ch=16, prediction="x")
    out = ddim_sample(unet.eval(), torch.zeros(1, 4, 6, 8), steps=4, seed=2)
    assert out.shape == (1, 4, 6, 8) and torch.isfinite(out).all() and float(out.abs().max()) <= 4.0


def test_upsample_bad_input(tiny):
    img = _img(8, 8)
    with pytest.raises(UsageError):
        api.upsample(img, 2.0, method="nearest", weights_dir=tiny)
    with pytest.raises(UsageError):
        api.upsample(img, 2.0, method="diffusion", steps=0, weights_dir=tiny)
    with pytest.raises(UsageError):
        api.upsample(img, 2.0, method="diffusion", strength=0, weights_dir=tiny)
    with pytest.raises(UsageError):
        api.upsample(img, -2.0, weights_dir=tiny)
    with pytest.raises(UsageError):
        api.upsample(img, 1e6, weights_dir=tiny)
    with pytest.raises(InputError):
        api.upsample(np.zeros((2, 3, 4, 5), np.uint8), 2.0, weights_dir=tiny)
    with pytest.raises(InputError):
        api.upsample(img, 2.0, weights_dir=tiny / "missing")


def test_cli(tiny, tmp_path):
    from neurocodec.codecs.ldm import cli
    from neurocodec.io import read_image, write_image

    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    cli.add_commands(parser.add_subparsers(dest="command"))
    src = tmp_path / "in.png"
    write_image(src, _img(10, 15))
    out = tmp_path / "out.png"
    args = parser.parse_args(["--quiet", "upsample", str(src), "--scale", "2.7", "-o", str(out), "--weights", str(tiny)])
    assert args.func(args) == 0 and read_image(out).shape == (27, 41, 3)
    args = parser.parse_args(["--quiet", "generate", "--size", "30x20", "--seed", "2", "--steps", "2",
                              "-o", str(out), "--weights", str(tiny)])
    assert args.func(args) == 0 and read_image(out).shape == (20, 30, 3)
    args = parser.parse_args(["--quiet", "upsample", str(src), "-o", str(out), "--weights", str(tiny)])
    with pytest.raises(UsageError):
        args.func(args)
    with pytest.raises(UsageError):
        cli.parse_size("12by4")
    args = parser.parse_args(["ldm", "train", "--stage", "sr", "--config", str(tmp_path / "nope.json")])
    with pytest.raises(NeurocodecError):
        args.func(args)


# ------------------------------------------------------------------------------ shipped models
def test_shipped_codec_through_registry():
    img = datasets.load("chelsea")[100:164, 200:280]
    blob = neurocodec.encode(img, codec="ldm", quality=4, model="ae")
    rec = neurocodec.decode(blob)
    assert rec.shape == img.shape
    assert metrics.psnr(rec, img) > 24
    assert neurocodec.decode(blob, size=(160, 128)).shape == (128, 160, 3)


def test_shipped_liif_beats_bicubic():
    hr = datasets.load("astronaut")[64:256, 160:352]
    lr = resize(hr, 96, 96)
    sr = api.upsample(lr, 2.0)
    bic = resize(lr, 192, 192)
    p = metrics.psnr
    assert p(sr[2:-2, 2:-2], hr[2:-2, 2:-2]) > p(bic[2:-2, 2:-2], hr[2:-2, 2:-2]) + 0.2


def test_main_cli_decode_any_size_and_upsample(tmp_path):
    from neurocodec.cli import main
    from neurocodec.io import read_image, write_image

    src = tmp_path / "in.png"
    write_image(src, datasets.load("coffee")[:40, :60])
    ncx, out = tmp_path / "a.ncx", tmp_path / "out.png"
    assert main(["encode", str(src), "-c", "ldm", "--quality", "2", "-o", str(ncx), "-q"]) == 0
    assert main(["decode", str(ncx), "-o", str(out), "--scale", "2.7", "-q"]) == 0
    assert read_image(out).shape == (108, 162, 3)
    assert main(["decode", str(ncx), "-o", str(out), "--size", "30x20", "-q"]) == 0
    assert read_image(out).shape == (20, 30, 3)
    assert main(["upsample", str(src), "--scale", "2.5", "-o", str(out), "-q"]) == 0
    assert read_image(out).shape == (100, 150, 3)
    assert main(["upsample", str(src), "--scale", "0", "-o", str(out), "-q"]) == 2


def test_diffusion_training_smoke_liif_condition(tiny, tmp_path):
    """A few steps of the diffusion stage with the LIIF condition, v-prediction and EMA write weights
    the api reads back (the full recipe is weights/config.json)."""
    import json

    from neurocodec.codecs.ldm.train import run

    cfg = {"diffusion": {"seed": 0, "model": {"latent": 4, "ch": 16, "mult": [1, 2], "prediction": "v", "schedule": "cosine"},
                         "ae": str(tiny / "ae.ncx"), "sr": str(tiny / "sr.ncx"), "condition": "liif",
                         "steps": 3, "align_steps": 2, "batch": 2, "patch": 16, "lr": 1e-3, "warmup": 2, "ema": 0.9,
                         "ratio_min": 2.0, "ratio_max": 4.0, "uncond_prob": 0.5, "queries": 32,
                         "align_weight": 0.1, "align_wmax": 5.0}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert run("diffusion", tmp_path / "cfg.json", tmp_path / "out") == 0
    mf = model.load("unet", tmp_path / "out")
    assert mf.config["condition"] == "liif" and mf.config["step"] == 5 and model.instantiate(mf).prediction == "v"
    assert "align" in (tmp_path / "out" / "train_diffusion.log").read_text()
    # a second recipe section continues from the first one's output (relative init inside --out)
    cfg["finetune"] = {**cfg["diffusion"], "init": "unet.ncx", "steps": 1, "align_steps": 0, "ema": 0.0}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert run("diffusion", tmp_path / "cfg.json", tmp_path / "out", section="finetune") == 0
    assert "initialised from unet.ncx" in (tmp_path / "out" / "train_diffusion.log").read_text()
    assert model.load("unet", tmp_path / "out").config["step"] == 1
    cfg["diffusion"]["condition"] = "nearest"
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError):
        run("diffusion", tmp_path / "bad.json", tmp_path / "out2")


# ------------------------------------------------------------------------------- model files
def test_shipped_models_load_from_ncx_with_recorded_digests():
    assert not list(WEIGHTS_DIR.glob("*.pt"))  # no pickles shipped
    for name in ("sr", "ae", "unet", "hpsr"):
        mf = model.load(name)
        assert mf.kind == "ldm" and mf.version == model.FORMAT_VERSION and mf.config["network"] == name
        assert mf.digest == SHIPPED[name] == weights.file_digest(WEIGHTS_DIR / f"{name}.ncx")
        net = model.network(mf)
        assert net is model.network(mf, "cpu")  # built once per (file, device), shared read-only
        assert not any(p.requires_grad for p in net.parameters())
    unet = model.load("unet").config  # the training parameterisation travels with the weights
    assert (unet["args"]["prediction"], unet["args"]["schedule"], unet["condition"]) == ("v", "cosine", "liif")


def test_edited_shipped_model_is_refused(tmp_path, monkeypatch):
    mf = model.load("ae")
    # a valid container with other bytes (an edited config): refused by the recorded digest
    weights.save(tmp_path / "ae.ncx", mf.kind, mf.version, {**mf.config_dict(), "train": None}, dict(mf.arrays))
    monkeypatch.setattr(model, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(InputError, match="changed or replaced"):
        model.load("ae")
    with pytest.raises(InputError):
        LDMCodec().encode(_img(8, 8), model="ae")
    # the same file given as a user's model folder is used: its identity is its own digest
    assert model.load("ae", tmp_path).digest != SHIPPED["ae"]
    assert LDMCodec(tmp_path).decode(LDMCodec(tmp_path).encode(_img(8, 8), model="ae")).shape == (8, 8, 3)
    # a flipped byte: refused by the container's checksums
    data = bytearray((WEIGHTS_DIR / "ae.ncx").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "ae.ncx").write_bytes(bytes(data))
    with pytest.raises(InputError):
        model.load("ae")


class _Payload:
    """Unpickling this would create the marker file: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["ae.ncx", "ae.pt"])
def test_pickle_in_user_weights_dir_is_refused_never_executed(tiny, tmp_path, name):
    import pickle
    import shutil

    marker = tmp_path / "executed"
    payload = pickle.dumps(_Payload(marker))
    probe = tmp_path / "probe"  # the payload is live: unpickling it does create its marker
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    folder = tmp_path / "weights"
    folder.mkdir()
    for f in ("sr.ncx", "unet.ncx"):
        shutil.copy(tiny / f, folder / f)
    (folder / name).write_bytes(payload)
    codec = LDMCodec(folder)
    with pytest.raises(InputError):
        codec.encode(_img(8, 8), model="ae")
    with pytest.raises(InputError):
        codec.decode(LDMCodec(tiny).encode(_img(8, 8), model="ae"))
    with pytest.raises(InputError):
        api.upsample(_img(8, 8), 2.0, method="diffusion", steps=1, weights_dir=folder)
    with pytest.raises(InputError):
        api.generate(8, 8, steps=1, weights_dir=folder)
    with pytest.raises(InputError):
        model.load_file(folder / name, "ae")
    assert not marker.exists()


def test_model_file_checks(tiny, tmp_path):
    with pytest.raises(InputError, match="'ae' network, not 'sr'"):
        model.load_file(tiny / "ae.ncx", "sr")
    with pytest.raises(InputError, match="missing"):
        model.load("unet", tmp_path)
    with pytest.raises(UsageError):
        model.load("vae", tiny)
    with pytest.raises(UsageError):
        model.save(UNet(latent=4, ch=16), "unet", tmp_path)  # no latent scale
    with pytest.raises(UsageError):
        model.save(UNet(latent=4, ch=16), "ae", tmp_path)
    mf = model.load("unet", tiny)
    cfg = {**mf.config_dict(), "condition": "nearest"}
    weights.save(tmp_path / "unet.ncx", mf.kind, mf.version, cfg, dict(mf.arrays))
    with pytest.raises(InputError, match="condition"):
        model.load("unet", tmp_path)
    state = {k: v for k, v in mf.arrays.items() if not k.endswith("out.2.bias")}
    weights.save(tmp_path / "unet.ncx", mf.kind, mf.version, mf.config_dict(), state)
    with pytest.raises(InputError, match="does not fit"):
        model.network(model.load("unet", tmp_path))
    # saving does not change the model it saves (the ae's tables come from a rounded copy)
    ae = CodecAE(ch=8, latent=4, dec_blocks=1, hidden=16, depth=2)
    before = {k: v.clone() for k, v in ae.state_dict().items()}
    model.save(ae, "ae", tmp_path)
    assert all(torch.equal(before[k], v) for k, v in ae.state_dict().items())


# ----------------------------------------------------------------------------------- no state
def test_encode_decode_encode_identical_bytes(tiny):
    img = _img(30, 42)
    codec = LDMCodec(tiny)
    first = codec.encode(img, quality=2, model="ae")
    assert codec.decode(first, scale=2.7).shape == (81, 113, 3)
    assert codec.decode(first, size=(10, 7), device="cpu").shape == (7, 10, 3)
    if torch.cuda.is_available():  # a decode elsewhere must not move the encoder
        codec.decode(first, scale=1.5, device="cuda")
    assert codec.encode(img, quality=2, model="ae") == first
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert LDMCodec(tiny).encode(img, quality=2, model="ae") == first
    finally:
        torch.set_num_threads(threads)
    assert vars(codec) == {"weights_dir": tiny}  # nothing remembered between calls
    enc = codec.encode_with_report(img, quality=2, model="ae")
    assert enc.blob == first and enc.report["model"] == model.load("ae", tiny).short_digest


def test_shipped_codec_same_bytes_after_decodes():
    img = datasets.load("chelsea")[100:140, 200:250]
    codec = LDMCodec()
    blob = codec.encode(img, quality=3, model="ae")
    codec.decode(blob, scale=3.1)
    assert LDMCodec().encode(img, quality=3, model="ae") == blob
    assert neurocodec.container.unpack(blob).header["model"] == SHIPPED["ae"][:16]


def test_version_1_stream_of_the_shipped_ae_pt_still_decodes():
    """A v1 stream named its ae by the hash of ae.pt; ae.ncx holds the same parameters and tables
    (the conversion checked this bit for bit), so such a stream decodes to the same pixels."""
    img = datasets.load("chelsea")[100:132, 200:240]
    codec = LDMCodec()
    box = neurocodec.container.unpack(codec.encode(img, quality=1, model="ae"))
    header = {k: v for k, v in box.header.items() if k != "model"}
    header["weights"] = "ec146acf1bc8e343"  # sha256(ae.pt)[:16] of the shipped ae.pt
    v1 = neurocodec.container.pack(neurocodec.container.Container("ldm", 1, header, box.sections))
    assert np.array_equal(neurocodec.decode(v1), codec.decode(box))
    assert LDMCodec.version == 4  # v3/v4 = hyperprior streams (v4: with an any-size head); ae streams stay v2


def test_no_global_rng_or_threads_touched(tiny, tmp_path):
    import json

    from neurocodec.codecs.ldm.train import run

    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    threads = torch.get_num_threads()
    api.upsample(_img(9, 14), 2.0, method="diffusion", steps=2, seed=3, weights_dir=tiny)
    api.generate(16, 12, seed=1, steps=2, weights_dir=tiny)
    cfg = {"sr": {"seed": 0, "model": {"ch": 8, "blocks": 1, "hidden": 16, "depth": 2}, "steps": 2, "batch": 2,
                  "patch": 8, "queries": 16, "lr": 1e-3, "scale_min": 1.0, "scale_max": 2.0}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert run("sr", tmp_path / "cfg.json", tmp_path / "out", threads=2) == 0
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], np_state)
    assert torch.get_num_threads() == threads


def test_decoding_imports_no_training_code(tmp_path):
    """A decode through the main CLI, in a fresh process, imports no ``train*`` module."""
    import subprocess
    import sys

    src = tmp_path / "a.ncx"
    src.write_bytes(LDMCodec().encode(datasets.load("chelsea")[:24, :32], quality=1, model="ae"))
    code = (
        "import sys\n"
        "from neurocodec.cli import main\n"
        f"assert main(['decode', {str(src)!r}, '-o', {str(tmp_path / 'o.png')!r}, '--scale', '1.5', '-q']) == 0\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.startswith('neurocodec') and m.rsplit('.', 1)[-1].startswith('train'))\n"
        "assert 'neurocodec.codecs.ldm.codec' in sys.modules and not bad, bad\n"
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_cli_names_match_training():
    from neurocodec.codecs.ldm import cli, train

    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ldm", "train", "--stage", "ae"])
    assert args.config == model.DEFAULT_CONFIG and set(train.STAGES) == set(model.STAGE_NETWORKS)
    for stage in train.STAGES:
        assert parser.parse_args(["ldm", "train", "--stage", stage]).stage == stage


# -------------------------------------------------------------------------------- checkpoints
_TINY_STAGES = {
    "sr": {"seed": 0, "model": {"ch": 8, "blocks": 1, "hidden": 16, "depth": 2}, "steps": 4, "batch": 2,
           "patch": 8, "queries": 16, "lr": 1e-3, "scale_min": 1.0, "scale_max": 2.0},
    "ae": {"seed": 1, "model": {"ch": 8, "latent": 4, "dec_blocks": 1, "hidden": 16, "depth": 2, "qualities": 4},
           "steps": 4, "batch": 2, "patch": 16, "queries": 16, "lr": 1e-3, "native_prob": 0.5,
           "lambdas": [0.01, 0.02, 0.04, 0.08]},
    "diffusion": {"seed": 2, "model": {"latent": 4, "ch": 16, "mult": [1, 2], "prediction": "v", "schedule": "cosine"},
                  "steps": 3, "align_steps": 1, "batch": 2, "patch": 16, "lr": 1e-3, "warmup": 1, "ema": 0.5,
                  "ratio_min": 2.0, "ratio_max": 4.0, "uncond_prob": 0.5, "queries": 16, "align_weight": 0.1,
                  "align_wmax": 5.0},
    "hpsr": {"seed": 5, "model": {"ch": 8, "blocks": 1, "hidden": 16, "depth": 2}, "steps": 4, "batch": 2,
             "patch": 64, "queries": 16, "lr": 1e-3, "scale_min": 1.0, "scale_max": 2.0,
             "hyperprior": "hyperprior-2.ncx"},
}


@pytest.mark.parametrize("stage", sorted(_TINY_STAGES))
def test_checkpoint_resume_equals_uninterrupted_run(tiny, tmp_path, stage):
    import json

    from neurocodec.codecs.ldm.train import run

    cfg = {**_TINY_STAGES[stage], "save_every": 2}
    if stage == "diffusion":
        cfg["ae"] = str(tiny / "ae.ncx")
    network = model.STAGE_NETWORKS[stage]
    (tmp_path / "a.json").write_text(json.dumps({stage: cfg}))
    assert run(stage, tmp_path / "a.json", tmp_path / "a") == 0
    ckpt = tmp_path / "a" / f"checkpoint_{stage}.ncx"
    assert weights.load(ckpt).config["step"] == 2
    with pytest.raises(InputError):  # a checkpoint is not a model
        model.load_file(ckpt, network)
    (tmp_path / "b.json").write_text(json.dumps({stage: {**cfg, "save_every": 0, "resume": str(ckpt)}}))
    assert run(stage, tmp_path / "b.json", tmp_path / "b") == 0
    assert "resumed from" in (tmp_path / "b" / f"train_{stage}.log").read_text()
    a, b = model.load(network, tmp_path / "a"), model.load(network, tmp_path / "b")
    assert a.arrays.keys() == b.arrays.keys()
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)  # the same computation
    if stage == "diffusion":
        assert (a.config["sigma"], a.config["res_sigma"]) == (b.config["sigma"], b.config["res_sigma"])
    other = "ae" if stage == "sr" else "sr"
    (tmp_path / "c.json").write_text(json.dumps({other: {**_TINY_STAGES[other], "resume": str(ckpt)}}))
    with pytest.raises(InputError, match="not a checkpoint"):  # another stage's checkpoint
        run(other, tmp_path / "c.json", tmp_path / "c")


# ------------------------------------------------------------------- hyperprior (bitstream v3)
@pytest.fixture(scope="module")
def tiny_hp(tmp_path_factory):
    """A tiny randomly initialised hyperprior model file with its integer h_s and coding tables."""
    from neurocodec.codecs.ldm.hpcoding import write_model_file
    from neurocodec.codecs.ldm.hyperprior import HyperpriorModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = HyperpriorModel(n=8, m=8, nh=8, nz=4, qualities=8)
    path = tmp_path_factory.mktemp("hp") / "hp.ncx"
    write_model_file(net, path)
    return str(path)


def test_hyperprior_round_trip_header_and_versions(tiny_hp):
    codec = LDMCodec()
    img = _img(70, 90)
    blob = codec.encode(img, model="hyperprior", weights=tiny_hp, quality=5)
    box = neurocodec.container.unpack(blob)
    assert box.codec_version == 3 and box.header["network"] == "hyperprior"
    assert box.header["latent"] == [8, 8, 8] and box.header["hyper"] == [4, 2, 2]  # padded to 128x128
    out = codec.decode(blob, weights=tiny_hp)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert codec.encode(img, model="hyperprior", weights=tiny_hp, quality=5) == blob  # deterministic
    # the stored symbols decode exactly (entropy coding + integer h_s are lossless)
    z, sym, mean, idx = codec.hp_latents(box.header, box.sections, tiny_hp)
    assert sym.shape == (8, 8, 8) and idx.min() >= 0 and idx.max() < 64
    shipped = neurocodec.container.unpack(codec.encode(img, quality=5))  # the default: the shipped hyperprior
    assert shipped.codec_version == 4 and shipped.header["model"] != box.header["model"]
    with pytest.raises(InputError):  # another model
        codec.decode(blob, weights=str(WEIGHTS_DIR / "ae.ncx"))
    for bad in ({"quality": True}, {"latent": [8, 9, 8]}, {"model": "zz"}, {"shape": [70]}, {"escapes": [-1, 0]}):
        with pytest.raises(CorruptStreamError):
            codec.decompress({**box.header, **bad}, box.sections, weights=tiny_hp)
    with pytest.raises(CorruptStreamError):  # a v2 container with a v3 header
        codec.decode(neurocodec.container.pack(neurocodec.container.Container("ldm", 2, box.header, box.sections)))
    # an ae stream is still written as version 2
    assert neurocodec.container.unpack(codec.encode(_img(16, 16), quality=1, model="ae")).codec_version == 2


def test_a_decode_only_copy_decodes_its_models_files_bit_for_bit_and_nothing_else(tiny_hp, tmp_path):
    """How a retired hyperprior ships: without g_a, h_a, float h_s and the z density, naming the
    full model it was cut from (what that model's streams record); it never encodes or seeds training."""
    from neurocodec.codecs.ldm import hpcoding, train_hyperprior

    codec = LDMCodec()
    img = _img(70, 90)
    blob = codec.encode(img, model="hyperprior", weights=tiny_hp, quality=6)
    full = weights.load(tiny_hp)
    slim = tmp_path / "slim.ncx"
    digest = hpcoding.write_decode_only(full, slim)
    mf = weights.load(slim)
    assert mf.digest == digest != full.digest and hpcoding.stream_digest(mf) == full.short_digest
    assert not any(k.startswith(("g_a.", "h_a.", "h_s.", "z_density.")) for k in mf.arrays)
    assert slim.stat().st_size < Path(tiny_hp).stat().st_size
    assert np.array_equal(codec.decode(blob, weights=str(slim)), codec.decode(blob, weights=tiny_hp))
    for a, b in zip(codec.hp_latents(*_hb(blob), str(slim)), codec.hp_latents(*_hb(blob), tiny_hp)):
        assert np.array_equal(a, b)
    with pytest.raises(UsageError, match="decode-only"):
        codec.encode(img, model="hyperprior", weights=str(slim), quality=6)
    with pytest.raises(UsageError, match="decode-only"):
        train_hyperprior._warm_start(slim)
    with pytest.raises(UsageError, match="already decode-only"):
        hpcoding.write_decode_only(mf, tmp_path / "again.ncx")
    # the command line makes the same copy without a run folder; other commands still need one
    by_cli = tmp_path / "by_cli.ncx"
    assert train_hyperprior.main(["--decode-only", str(tiny_hp), "--export", str(by_cli)]) == 0
    assert weights.load(by_cli).arrays.keys() == mf.arrays.keys()
    assert hpcoding.stream_digest(weights.load(by_cli)) == full.short_digest
    with pytest.raises(SystemExit):
        train_hyperprior.main(["--steps", "1"])
    other = tmp_path / "other.ncx"
    hpcoding.write_decode_only(weights.load(WEIGHTS_DIR / "hyperprior-2.ncx"), other)
    with pytest.raises(InputError, match="decode with the same model"):  # another model's copy
        codec.decode(blob, weights=str(other))


def _hb(blob: bytes):
    box = neurocodec.container.unpack(blob)
    return box.header, box.sections


def test_the_retired_hyperprior_ships_decode_only_and_names_its_model():
    from neurocodec.codecs.ldm import hpcoding
    from neurocodec.codecs.ldm import model as ldm_model

    for name, (made, shipped) in ldm_model.HYPERPRIORS.items():
        mf = weights.load(WEIGHTS_DIR / name, expect_digest=shipped)
        assert hpcoding.stream_digest(mf) == made[:16]
        assert (hpcoding.decode_only_of(mf) is None) == (made == shipped) == (name == ldm_model.HYPERPRIOR_FILE)


def test_a_hyperprior_decode_checks_its_header_and_resolves_its_model_once(tiny_hp, monkeypatch):
    """One gate: the schema (whose checks run ``_check_hp_header``) once per decode, the
    hyperprior model file resolved once, both passed down to the latent decoding and synthesis."""
    from neurocodec.codecs.ldm import codec as ldm_codec

    codec = LDMCodec()
    img = _img(70, 90)
    blob = codec.encode(img, model="hyperprior", weights=tiny_hp, quality=5)
    want = codec.decode(blob, weights=tiny_hp)
    calls: list[str] = []
    check, hp_file = ldm_codec._check_hp_header, LDMCodec._hp_file

    def counted_check(*args, **kwargs):
        calls.append("header")
        return check(*args, **kwargs)

    def counted_file(self, *args, **kwargs):
        calls.append("model")
        return hp_file(self, *args, **kwargs)

    monkeypatch.setattr(ldm_codec, "_check_hp_header", counted_check)
    monkeypatch.setattr(LDMCodec, "_hp_file", counted_file)
    assert np.array_equal(codec.decode(blob, weights=tiny_hp), want)
    assert sorted(calls) == ["header", "model"]


def test_integer_hyper_synthesis_same_indices_across_threads_and_processes(tiny_hp):
    import json
    import subprocess
    import sys

    script = (
        "import json, sys, numpy as np, torch, numba\n"
        "from neurocodec import weights\n"
        "from neurocodec.codecs.ldm.hpcoding import Tables\n"
        "torch.set_num_threads(int(sys.argv[2]))\n"
        "mf = weights.load(sys.argv[1]); t = Tables(mf.arrays, mf.config['coding'])\n"
        "z = np.random.default_rng(0).integers(-6, 7, (4, 6, 5))\n"
        "mean, idx = t.hs(z)\n"
        "print(json.dumps([int(mean.sum()), int((mean * 7 + idx).sum() % 1000003), idx.ravel()[:50].tolist()]))\n")
    outs = []
    for threads in ("1", "2"):
        env = {**__import__("os").environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads, "NUMBA_NUM_THREADS": threads}
        res = subprocess.run([sys.executable, "-c", script, tiny_hp, threads], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        outs.append(json.loads(res.stdout))
    assert outs[0] == outs[1]


def test_hyperprior_latent_refinement_never_worsens_the_cost_and_decodes(tiny_hp):
    """effort=N: the encoder moves the symbols by gradient descent on bits + lambda*MSE with the
    tables held fixed; the file decodes with the plain decoder, effort=0 is the plain encoder's
    bytes, and the kept iterate is never worse than the start."""
    codec = LDMCodec()
    img = _img(40, 56)
    plain = codec.encode(img, model="hyperprior", weights=tiny_hp, quality=4)
    assert codec.encode(img, model="hyperprior", weights=tiny_hp, quality=4, effort=0) == plain
    refined = codec.encode_with_report(img, model="hyperprior", weights=tiny_hp, quality=4, effort=6)
    start, best = refined.report["refine_cost"]
    assert best <= start
    assert codec.encode(img, model="hyperprior", weights=tiny_hp, quality=4, effort=6) == refined.blob  # deterministic
    out = codec.decode(refined.blob, weights=tiny_hp)
    assert out.shape == img.shape and out.dtype == np.uint8
    with pytest.raises(UsageError):  # the ae has no refinement
        codec.encode(img, quality=1, effort=3, model="ae")


def test_v2_header_is_held_to_the_schema():
    """A v2 header whose fields passed their CRC but not each other (grey shape with RGB mode,
    latent that does not fit the shape, stray sections) is refused before any decoding."""
    blob = neurocodec.encode(_img(16, 20), codec="ldm", quality=1, model="ae")
    box = neurocodec.container.unpack(blob)
    for bad in ({"shape": [16, 20]}, {"latent": [8, 9, 10]}, {"coding": "p"}, {"quality": 7}):
        forged = neurocodec.container.pack(neurocodec.container.Container("ldm", 2, {**box.header, **bad}, box.sections))
        with pytest.raises(CorruptStreamError):
            neurocodec.decode(forged)
    extra = neurocodec.container.pack(neurocodec.container.Container("ldm", 2, box.header, {**box.sections, "ch99": b"x"}))
    with pytest.raises(CorruptStreamError):
        neurocodec.decode(extra)
    with pytest.raises(neurocodec.errors.InputError):  # an honest header, a decode size above the limit
        neurocodec.decode(blob, scale=8.0, max_values=1000)


# -------------------------------------------------------- the hyperprior's any-size decoder (hpsr)
def _synthesis_liif(tiny, feat_ch: int, fuse: float) -> SynthesisLIIF:
    """A tiny SynthesisLIIF holding the tiny sr's weights; ``fuse`` scales a seeded fuse conv."""
    net = SynthesisLIIF(feat_ch=feat_ch, ch=8, blocks=1, hidden=16, depth=2)
    missing, unexpected = net.load_state_dict(model.instantiate(model.load_file(tiny / "sr.ncx", "sr")).state_dict(),
                                              strict=False)
    assert sorted(missing) == ["fuse.bias", "fuse.weight"] and not unexpected
    with torch.no_grad():
        net.fuse.weight.copy_(fuse * torch.randn(net.fuse.weight.shape, generator=torch.Generator().manual_seed(1)))
    return net.eval()


def test_synthesis_liif_starts_as_its_pixel_upsampler_and_tiles_exactly(tiny):
    sr = model.instantiate(model.load_file(tiny / "sr.ncx", "sr"))
    decoded, feats = torch.rand(1, 3, 21, 30), torch.randn(1, 6, 11, 15)
    zero = _synthesis_liif(tiny, 6, 0.0)
    with torch.no_grad():
        assert torch.allclose(zero.upsample(zero.source(decoded, feats), 40, 61), sr.upsample(decoded, 40, 61),
                              atol=1e-6)  # a zero fuse conv: the pixel upsampler exactly
        net = _synthesis_liif(tiny, 6, 0.5)
        src = net.source(decoded, feats)
        assert src.shape == (1, 3 + 8, 21, 30)
        full = net.upsample(src, 40, 61, tile=None)
        assert (full - sr.upsample(decoded, 40, 61)).abs().max() > 1e-3  # the features are used
        for tile in (7, 16):
            assert torch.allclose(net.upsample(src, 40, 61, tile=tile), full, atol=1e-5)


def test_hpsr_model_file_names_its_hyperprior(tiny, tmp_path):
    net = _synthesis_liif(tiny, 6, 0.1)
    with pytest.raises(UsageError, match="hyperprior"):
        model.save(net, "hpsr", tmp_path)
    made = model.HYPERPRIORS["hyperprior-2.ncx"][0]
    path = model.save(net, "hpsr", tmp_path, hyperprior=made)
    mf = model.load_file(path, "hpsr")
    assert mf.config["hyperprior"] == made
    back = model.instantiate(mf)
    assert torch.equal(back.fuse.weight, net.fuse.weight.half().float())
    cfg = {k: v for k, v in mf.config_dict().items() if k != "hyperprior"}
    weights.save(tmp_path / "bad.ncx", mf.kind, mf.version, cfg, dict(mf.arrays))
    with pytest.raises(InputError, match="which hyperprior"):
        model.load_file(tmp_path / "bad.ncx", "hpsr")


def test_hyperprior_any_size_decode_uses_the_head_made_for_its_model(tiny, tmp_path):
    """A stream of a model with a head of its own is version 4 and is drawn at other sizes by that
    head on the 1x decode and the synthesis features; a version-3 stream (written before the head
    shipped) keeps the pixel upsampler, so its decodes never change. A zero fuse conv makes
    the two paths the same function."""
    import shutil

    img = _img(48, 70)
    blob = LDMCodec().encode(img, quality=3)  # the shipped hyperprior, which ships its head
    box = neurocodec.container.unpack(blob)
    assert box.codec_version == 4 and "sr" not in box.header  # the version carries the flag: no bytes
    old = neurocodec.container.pack(neurocodec.container.Container("ldm", 3, box.header, box.sections))
    assert len(old) == len(blob)
    with pytest.raises(CorruptStreamError, match="never holds"):  # the flag is never stored
        LDMCodec().decode(neurocodec.container.Container("ldm", 3, {**box.header, "sr": 1}, box.sections))
    made = model.HYPERPRIORS[model.HYPERPRIOR_FILE][0]
    feat_ch = int(weights.load(WEIGHTS_DIR / model.HYPERPRIOR_FILE).config["args"]["n"])
    codecs = {}
    for name, fuse, digest in (("none", None, None), ("zero", 0.0, made), ("used", 0.3, made),
                               ("other", 0.3, model.HYPERPRIORS["hyperprior.ncx"][0])):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(tiny / "sr.ncx", folder / "sr.ncx")
        if fuse is not None:
            model.save(_synthesis_liif(tiny, feat_ch, fuse), "hpsr", folder, hyperprior=digest)
        codecs[name] = LDMCodec(weights_dir=folder)
    pixel = api.upsample(LDMCodec().decode(blob), size=(140, 96), weights_dir=tiny)
    for name, codec in codecs.items():
        assert np.array_equal(codec.decode(blob), LDMCodec().decode(blob))  # 1x: never through a head
        assert np.array_equal(codec.decode(old, scale=2.0), pixel)  # a version-3 file: as before
    zero, used = codecs["zero"].decode(blob, scale=2.0), codecs["used"].decode(blob, scale=2.0)
    assert zero.shape == (96, 140, 3) and np.abs(zero.astype(int) - pixel).max() <= 1
    assert np.abs(used.astype(int) - pixel).mean() > 0.5
    for name in ("none", "other"):  # the file needs its model's head for other sizes
        with pytest.raises(InputError, match="any-size decoder"):
            codecs[name].decode(blob, scale=2.0)
    assert not np.array_equal(LDMCodec().decode(blob, scale=2.0), LDMCodec().decode(old, scale=2.0))
    with pytest.raises(CorruptStreamError):  # only the hyperprior's streams carry the flag
        ae = neurocodec.container.unpack(LDMCodec().encode(_img(16, 16), quality=1, model="ae"))
        LDMCodec().decompress({**ae.header, "sr": 1}, ae.sections)


def test_generative_decode_is_diffusion_over_the_streams_own_any_size_decode(tiny, tiny_hp):
    """``refine="diffusion"``: the stream's own decode at the denoiser's grid (the output, or 4x when it
    is larger), then seeded latent diffusion; refused below 2x, where the bits hold the detail."""
    codec = LDMCodec(weights_dir=tiny)
    img = _img(20, 26)
    blob = codec.encode(img, model="hyperprior", weights=tiny_hp, quality=4)
    opts = dict(weights=tiny_hp, refine="diffusion", steps=2)
    a = codec.decode(blob, scale=2.5, seed=3, **opts)
    assert a.shape == (50, 65, 3) and a.dtype == np.uint8
    assert np.array_equal(a, codec.decode(blob, scale=2.5, seed=3, **opts))  # a seed is a picture
    assert not np.array_equal(a, codec.decode(blob, scale=2.5, seed=4, **opts))
    base = codec.decode(blob, weights=tiny_hp, size=(65, 50))
    assert np.array_equal(a, api.diffuse(base, 50, 65, steps=2, seed=3, weights_dir=tiny))
    assert not np.array_equal(a, api.upsample(img, 2.5, method="diffusion", steps=2, seed=3, weights_dir=tiny))
    # beyond 4x the denoiser works at 4x and the autoencoder renders the rest
    big = codec.decode(blob, scale=6.0, seed=3, **opts)
    base4 = codec.decode(blob, weights=tiny_hp, size=(104, 80))
    assert big.shape == (120, 156, 3)
    assert np.array_equal(big, api.diffuse(base4, 120, 156, steps=2, seed=3, weights_dir=tiny))
    with pytest.raises(UsageError, match="2x or more"):
        codec.decode(blob, scale=1.5, **opts)
    with pytest.raises(UsageError, match="2x or more"):
        codec.decode(blob, size=(80, 30), **opts)  # 3x wide but 1.5x high
    with pytest.raises(UsageError):
        codec.decode(blob, scale=2.0, refine="gan", weights=tiny_hp)
    # the factorized ae's streams take it too, grey images stay grey
    grey = codec.encode(img[..., 0], model="ae", quality=2)
    assert codec.decode(grey, scale=2.0, refine="diffusion", steps=1).shape == (40, 52)


def test_cli_decode_refine(tiny, tmp_path):
    """``neurocodec decode --scale 4 --refine diffusion``; a codec without the option says so (exit 2)."""
    from neurocodec.cli import main

    src, ncx_file, jpg = tmp_path / "a.npy", tmp_path / "a.ncx", tmp_path / "j.ncx"
    np.save(src, _img(24, 24))
    assert main(["encode", str(src), "-c", "ldm", "-o", str(ncx_file), "-q", "--no-measure"]) == 0
    out = tmp_path / "a4.npy"
    assert main(["decode", str(ncx_file), "-o", str(out), "--scale", "4", "--refine", "diffusion", "-q",
                 "-p", "steps=1"]) == 0
    assert np.load(out).shape == (96, 96, 3)
    assert main(["encode", str(src), "-c", "jpeg", "-o", str(jpg), "-q", "--no-measure"]) == 0
    assert main(["decode", str(jpg), "-o", str(tmp_path / "j.npy"), "--refine", "diffusion", "-q"]) == 2
    assert not (tmp_path / "j.npy").exists()
