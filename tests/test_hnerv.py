"""HNeRV / NeRV codecs on tiny clips: shapes, padding, bitstream, resume, rate control, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec.codecs.hnerv.codec import QUALITY_BPP, HNeRVCodec, NeRVCodec, plan, read_model
from neurocodec.codecs.hnerv.model import Arch, Model, choose_strides, decoder_params, model_values
from neurocodec.codecs.hnerv.train import FitConfig, fit, lr_at
from neurocodec.container import Container, pack, unpack
from neurocodec.errors import CorruptStreamError, InputError, UsageError


def _clip(t: int = 8, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth moving pattern (learnable in a few epochs) plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(t):
        r = 128 + 100 * np.sin((xx + 2 * i) / 5.0)
        g = 128 + 100 * np.cos((yy - i) / 4.0)
        b = 128 + 60 * np.sin((xx + yy + 3 * i) / 7.0)
        frames.append(np.stack([r, g, b], -1) + rng.normal(0, 3, (h, w, 3)))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


FAST = dict(epochs=2, width0=8, device="cpu")


# ------------------------------------------------------------------------------ model / shapes
@pytest.mark.parametrize("h,w", [(32, 32), (22, 30), (144, 176), (180, 320), (640, 1280), (5, 7)])
def test_strides_cover_the_frame_with_little_padding(h, w):
    s = choose_strides(h, w)
    arch = Arch("hnerv", 4, h, w, s, 8)
    ph, pw = arch.padded
    assert ph >= h and pw >= w and ph % arch.total_stride == 0 and pw % arch.total_stride == 0
    assert all(2 <= f <= 5 for f in s) or s in ([2], [1])
    assert list(s) == sorted(s, reverse=True)


def test_paper_strides_for_bunny_crop():
    assert choose_strides(640, 1280) == [5, 4, 4, 2, 2]


@pytest.mark.parametrize("kind,hidden", [("hnerv", 0), ("nerv", 0), ("nerv", 24)])
@pytest.mark.parametrize("h,w", [(32, 32), (22, 30)])
def test_model_output_shape_and_param_count(kind, hidden, h, w):
    arch = Arch(kind, 8, h, w, choose_strides(h, w), 16, embed_ch=4, reduce=1.2 if kind == "hnerv" else 2.0,
                mlp_hidden=hidden)
    model = Model(arch)
    x = torch.rand(3, 3, h, w)
    inp = x if kind == "hnerv" else torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        y = model(inp)
    assert y.shape == (3, 3, h, w) and float(y.min()) >= 0 and float(y.max()) <= 1
    assert decoder_params(arch) == sum(p.numel() for p in model.decoder.parameters())
    if kind == "hnerv":
        with torch.no_grad():
            assert model.embed(x).shape == (3, 4, *arch.grid)


def test_hnerv_widths_and_kernels_follow_the_paper():
    arch = Arch("hnerv", 1, 640, 1280, [5, 4, 4, 2, 2], 68)
    assert arch.widths() == [68, 57, 48, 40, 33, 28]
    assert [arch.kernel(i) for i in range(5)] == [1, 3, 5, 5, 5]
    small = Arch("hnerv", 1, 640, 1280, [5, 4, 4, 2, 2], 20)
    assert min(small.widths()) == 12
    nerv = Arch("nerv", 1, 640, 1280, [5, 4, 2, 2], 96, reduce=2.0)
    assert nerv.widths() == [96, 48, 24, 12, 12] and nerv.kernel(0) == nerv.kernel(3) == 3


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(i, 100, 1e-3, 0.1) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-5


# ------------------------------------------------------------------------------- rate control
def test_quality_presets_pick_monotone_sizes():
    shape = (120, 144, 176)
    for kind in ("hnerv", "nerv"):
        sizes = [model_values(plan(kind, shape, quality=q)) for q in range(1, 9)]
        assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0], sizes
    bpps = [0.02, 0.05, 0.1, 0.2, 0.4]
    sizes = [model_values(plan("hnerv", shape, target_bpp=b)) for b in bpps]
    assert sizes == sorted(sizes)
    by_bytes = [model_values(plan("hnerv", shape, target_bytes=b)) for b in (5_000, 20_000, 80_000)]
    assert by_bytes == sorted(by_bytes) and by_bytes[0] < by_bytes[-1]
    assert QUALITY_BPP[1] < QUALITY_BPP[8]


def test_target_params_matches_hnerv_to_nerv():
    shape = (120, 144, 176)
    h = plan("hnerv", shape, target_bpp=0.16)
    n = plan("nerv", shape, target_params=model_values(h), reduce=2.0)
    assert 0.8 * model_values(h) <= model_values(n) <= model_values(h)


def test_rate_control_errors():
    with pytest.raises(UsageError):
        plan("hnerv", (8, 32, 32), quality=3, target_bpp=0.1)
    with pytest.raises(UsageError):
        plan("hnerv", (8, 32, 32), quality=9)
    with pytest.raises(UsageError):
        plan("hnerv", (8, 32, 32), target_bytes=-5)


# ------------------------------------------------------------------------------------ bitstream
@pytest.mark.parametrize("cls", [HNeRVCodec, NeRVCodec])
def test_bitstream_round_trip_is_exact(cls):
    clip = _clip(8, 22, 30)
    codec = cls()
    blob = codec.encode(clip, **FAST)
    box = unpack(blob)
    assert box.header["shape"] == [8, 22, 30, 3] and box.header["fit"]["bytes"] == len(blob)
    assert box.header["fit"]["bpp"] == pytest.approx(len(blob) * 8 / (8 * 22 * 30), abs=1e-5)
    dec = neurocodec.decode(blob, device="cpu")
    assert dec.shape == clip.shape and dec.dtype == np.uint8
    # decode of the file == decode of the in-memory quantized model, bit for bit
    assert np.array_equal(dec, codec.last_model.render(device="cpu"))
    # and the encoder's reported PSNR is the PSNR of what the decoder returns
    from neurocodec.metrics import video_psnr

    assert video_psnr(clip, dec) == pytest.approx(box.header["fit"]["psnr"], abs=1e-3)
    # a fresh codec object decodes it too (decoder rebuilt from the header alone)
    # another batch size may round a few pixels differently (float32 kernels), never by more than 1
    assert np.abs(cls().decode(blob, device="cpu", batch=3).astype(int) - dec).max() <= 1


def test_frames_range_decodes_only_that_range():
    clip = _clip(8, 32, 32)
    blob = HNeRVCodec().encode(clip, **FAST)
    full = neurocodec.decode(blob, device="cpu", batch=8)
    part = neurocodec.decode(blob, frames=(2, 5), device="cpu", batch=8)
    assert part.shape == (3, 32, 32, 3) and np.array_equal(part, full[2:5])
    assert np.array_equal(neurocodec.decode(blob, frames=(-2, 8), device="cpu"), full[6:])
    for bad in [(5, 2), (0, 9), (3,), "x"]:
        with pytest.raises(UsageError):
            neurocodec.decode(blob, frames=bad)


def test_training_learns_and_quantization_costs_little():
    clip = _clip(8, 32, 32)
    codec = HNeRVCodec()
    codec.encode(clip, epochs=30, width0=16, device="cpu", lr=3e-3)
    r = codec.last_report
    assert r["psnr"] > 22.0, r
    assert r["psnr"] > r["psnr_float"] - 1.0  # 8/6-bit quantization stays within 1 dB
    assert r["epochs"] == 30 and r["finetune_epochs"] == 3


def test_exploding_loss_rolls_back_and_halves_the_lr():
    """A step size that knocks the network out (loss jumps, no NaN needed) is backed off: no accepted
    epoch is worse than SPIKE x the best before it, and the reported lr is the reduced one."""
    from neurocodec.codecs.hnerv.train import SPIKE

    clip = _clip(8, 32, 32)
    arch = plan("hnerv", clip.shape, width0=8)
    res = fit(clip, arch, FitConfig(epochs=8, lr=0.5, device="cpu", prune=0.0))
    train = [h[2] for h in res.history if h[0] == "train"]
    assert len(train) == 8 and np.isfinite(train).all()
    assert all(m <= SPIKE * min(train[:i]) for i, m in enumerate(train) if i)
    assert res.lr < 0.5


def test_time_budget_cuts_epochs():
    clip = _clip(8, 32, 32)
    codec = HNeRVCodec()
    codec.encode(clip, epochs=100_000, time_budget=2.0, width0=8, device="cpu")
    assert codec.last_report["epochs"] < 100_000
    assert codec.last_report["seconds"] < 30


def test_corrupt_streams_are_reported():
    clip = _clip(4, 16, 16)
    blob = HNeRVCodec().encode(clip, **FAST)
    box = unpack(blob)
    for name in ("w", "e", "ws"):
        sections = dict(box.sections)
        sections[name] = sections[name][: len(sections[name]) // 2]
        bad = pack(Container(box.codec, box.codec_version, box.header, sections))
        with pytest.raises(CorruptStreamError):
            neurocodec.decode(bad)
    header = dict(box.header)
    header["arch"] = {**header["arch"], "width0": -3}
    with pytest.raises(CorruptStreamError):
        neurocodec.decode(pack(Container(box.codec, box.codec_version, header, dict(box.sections))))
    with pytest.raises(CorruptStreamError):
        read_model({"shape": [4, 16, 16, 3]}, box.sections)
    # an hnerv stream is not a nerv stream
    with pytest.raises(UsageError):
        NeRVCodec().decode(blob)


def test_bad_input_and_params():
    codec = HNeRVCodec()
    with pytest.raises(InputError):
        codec.encode(np.zeros((4, 16, 16, 3), np.float32), **FAST)
    with pytest.raises(InputError):
        codec.encode(np.zeros((16, 16, 3), np.uint8), **FAST)
    with pytest.raises(UsageError):
        codec.encode(_clip(4, 16, 16), epochs=0)
    with pytest.raises(UsageError):
        codec.encode(_clip(4, 16, 16), bogus=1)
    with pytest.raises(UsageError):
        NeRVCodec().encode(_clip(4, 16, 16), embed_ch=4)  # an HNeRV-only parameter
    with pytest.raises(UsageError):
        codec.encode(_clip(4, 16, 16), weight_bits=1, **FAST)


# ----------------------------------------------------------------------------------------- resume
def test_resume_from_checkpoint_gives_the_same_model(tmp_path):
    clip = _clip(6, 16, 16)
    arch = plan("hnerv", clip.shape, width0=8)
    ref = fit(clip, arch, FitConfig(epochs=4, seed=3, device="cpu"))

    ckpt = tmp_path / "fit.ckpt"

    class Stop(Exception):
        pass

    def interrupt(epoch: int, phase: str) -> None:
        if phase == "train" and epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(clip, arch, FitConfig(epochs=4, seed=3, device="cpu", checkpoint=str(ckpt)), on_epoch=interrupt)
    assert ckpt.exists()
    seen = []
    resumed = fit(clip, arch, FitConfig(epochs=4, seed=3, device="cpu", checkpoint=str(ckpt)),
                  on_epoch=lambda e, p: seen.append((p, e)))
    assert seen[0] == ("train", 3)  # started where it stopped
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    # a finished checkpoint resumes straight to the end, with the same model
    again = fit(clip, arch, FitConfig(epochs=4, seed=3, device="cpu", checkpoint=str(ckpt)))
    assert again.psnr_train == pytest.approx(resumed.psnr_train)
    for a, b in zip(again.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    # a checkpoint for another model or recipe is refused
    other = plan("hnerv", clip.shape, width0=9)
    with pytest.raises(UsageError):
        fit(clip, other, FitConfig(epochs=4, seed=3, device="cpu", checkpoint=str(ckpt)))
    with pytest.raises(UsageError):
        fit(clip, arch, FitConfig(epochs=5, seed=3, device="cpu", checkpoint=str(ckpt)))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError):
        fit(clip, arch, FitConfig(epochs=4, seed=3, device="cpu", checkpoint=str(tmp_path / "junk.ckpt")))


# --------------------------------------------------------------------------------------- the CLI
def test_cli_encode_decode_with_quality_and_frames(tmp_path):
    from neurocodec.cli import main

    clip = _clip(8, 22, 30)
    src, ncx_path, out = tmp_path / "c.npy", tmp_path / "c.ncx", tmp_path / "d.npy"
    np.save(src, clip)
    rc = main(["encode", str(src), "-o", str(ncx_path), "-c", "hnerv", "--quality", "3", "-q",
               "-p", "epochs=2", "-p", "device=cpu", "-p", "fps=30"])
    assert rc == 0
    header = unpack(ncx_path.read_bytes()).header
    assert header["fps"] == 30.0 and header["fit"]["bytes"] == ncx_path.stat().st_size
    assert main(["decode", str(ncx_path), "-o", str(out), "--frames", "5:", "-q", "-p", "device=cpu"]) == 0
    tail = np.load(out)
    assert tail.shape == (3, 22, 30, 3) and tail.dtype == np.uint8
    full = neurocodec.decode(ncx_path.read_bytes(), device="cpu")
    assert np.array_equal(tail, full[5:])
    assert np.array_equal(neurocodec.decode(ncx_path.read_bytes(), frames=(None, 2), device="cpu"), full[:2])
    # a bad quality is a usage error (exit code 2)
    assert main(["encode", str(src), "-o", str(ncx_path), "-c", "hnerv", "--quality", "9", "-q"]) == 2


def test_reported_size_is_exact_for_many_clip_sizes():
    for t in (2, 3, 5):
        for h, w in ((8, 8), (9, 13)):
            clip = _clip(t, h, w, seed=t)
            blob = HNeRVCodec().encode(clip, epochs=1, width0=4, device="cpu", prune=0.0)
            fit_info = unpack(blob).header["fit"]
            assert fit_info["bytes"] == len(blob)
            assert fit_info["bpp"] == pytest.approx(len(blob) * 8 / (t * h * w), abs=1e-5)
