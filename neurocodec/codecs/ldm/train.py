"""Training of the ``ldm`` models: ``sr`` (LIIF upsampler), ``ae`` (codec autoencoder, also the
diffusion latent space), ``diffusion`` (latent UNet, needs a trained ``ae``) and ``hpsr`` (the
hyperprior codec's any-size decoder, needs the shipped hyperprior and ``sr``). The hyperprior
itself trains in :mod:`.train_hyperprior`.

``python -m neurocodec.codecs.ldm.train --stage sr --config neurocodec/codecs/ldm/weights/config.json``
(or ``neurocodec ldm train ...``). Data: :mod:`.train_data`. Fixed seed; a log is written next to the
weights. On a GPU, raise ``steps``, ``batch`` and the widths in the config to train larger models.

Output: model files through :func:`.model.save` (``sr.ncx``, ``ae.ncx``, ``unet.ncx``), and, every
``save_every`` steps, ``checkpoint_<stage>.ncx``: the network(s), the optimizer state, the step and
the states of every random generator, stored with :func:`neurocodec.weights.flatten` (never a
pickle). ``"resume": "checkpoint_<stage>.ncx"`` in the config section continues from one; on the CPU
the resumed run computes exactly what the uninterrupted run would have.

No process-wide side effects: a stage runs inside :func:`torch.random.fork_rng` (the global
generator, which module initialisation and training noise draw from, is seeded for the run and the
caller's state restored afterwards), and ``threads`` is restored when the stage ends.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ... import weights
from ...errors import InputError, UsageError
from ...runtime import resolve_device
from . import model
from .autoencoder import CodecAE, LIIFUpsampler, SynthesisLIIF
from .diffusion import UNet, alphas_cumprod, diffusion_loss
from .image import resize
from .model import DEFAULT_CONFIG, STAGE_NETWORKS, WEIGHTS_DIR
from .train_data import Sampler, degrade_up, queries, training_images, unit

Tensor = torch.Tensor
CHECKPOINT = "checkpoint"  # config["network"] of a training checkpoint (an ldm model file too)


# ------------------------------------------------------------------------------------- helpers
def _lr_at(cfg: dict, step: int) -> float:
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * step / cfg["steps"]))


class _Log:
    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a")

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=sys.stderr, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _in_out(out: Path, name: str) -> Path:
    """A path from a config: relative ones are taken inside the output folder, so recipes chain."""
    p = Path(name)
    return p if p.is_absolute() else out / p


def _maybe_init(net: torch.nn.Module, cfg: dict, stage: str, log: _Log, out: Path) -> None:
    """Continue from a stored model when the config names one (``"init": "sr.ncx"``; a relative
    path is taken inside the output folder). A resumed run takes everything from its checkpoint."""
    if cfg.get("init") and not cfg.get("resume"):
        src = model.instantiate(model.load_file(_in_out(out, cfg["init"]), STAGE_NETWORKS[stage]))
        net.load_state_dict(src.state_dict())
        log(f"initialised from {cfg['init']}")


# ----------------------------------------------------------------------------------- checkpoints
class _Checkpoints:
    """Write ``checkpoint_<stage>.ncx`` every ``save_every`` steps; restore one named by ``resume``.

    ``nets`` and ``opt`` are the live training objects (restored in place); ``sampler`` and ``gen``
    the run's generators. ``extra`` (JSON) is what the stage computed before its loop (the diffusion
    latent scales), returned by :meth:`resume` so a resumed run uses the stored values."""

    def __init__(self, stage: str, cfg: dict, out: Path, log: _Log, nets: Mapping[str, torch.nn.Module],
                 opt: torch.optim.Optimizer, sampler: Sampler, gen: torch.Generator | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.stage, self.cfg, self.out, self.log = stage, cfg, out, log
        self.nets, self.opt, self.sampler, self.gen = nets, opt, sampler, gen
        self.extra = dict(extra or {})
        self.every = int(cfg.get("save_every") or 0)
        self.path = out / f"{CHECKPOINT}_{stage}.ncx"

    def save(self, done: int) -> Path:
        tree = {"nets": {k: n.state_dict() for k, n in self.nets.items()}, "optimizer": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state(), "generator": None if self.gen is None else self.gen.get_state()}
        skeleton, arrays = weights.flatten(tree)
        config = {"network": CHECKPOINT, "stage": self.stage, "step": int(done), "train": self.cfg, "tree": skeleton,
                  # PCG64's state holds 128-bit integers: kept as JSON text, read back by json exactly
                  "numpy_rng": json.dumps(self.sampler.rng.bit_generator.state), "extra": self.extra}
        weights.save(self.path, model.KIND, model.FORMAT_VERSION, config, arrays)
        return self.path

    def after(self, done: int, total: int, on_save: Callable[[int], None] | None = None) -> None:
        """Called after each step (``done`` steps complete): checkpoint when it is time."""
        if self.every and done % self.every == 0 and done < total:
            self.log(f"checkpoint {self.save(done)} at step {done}")
            if on_save is not None:
                on_save(done)

    def resume(self) -> tuple[int, dict]:
        """(steps already done, stored ``extra``) from the config's ``resume`` checkpoint, or (0, extra)."""
        if not self.cfg.get("resume"):
            return 0, self.extra
        path = _in_out(self.out, self.cfg["resume"])
        mf = weights.load(path, kind=model.KIND, versions=model.VERSIONS)
        c = mf.config
        if c.get("network") != CHECKPOINT or c.get("stage") != self.stage:
            raise InputError(f"'{path}' is not a checkpoint of the ldm {self.stage} stage")
        try:
            tree = weights.unflatten(c["tree"], mf.arrays, as_tensors=True, int_keys=True)
            for name, net in self.nets.items():
                net.load_state_dict(tree["nets"][name])
            for group in tree["optimizer"]["param_groups"]:  # JSON made the betas tuple a list
                if "betas" in group:
                    group["betas"] = tuple(group["betas"])
            self.opt.load_state_dict(tree["optimizer"])
            torch.set_rng_state(tree["torch_rng"])
            if self.gen is not None:
                self.gen.set_state(tree["generator"])
            self.sampler.rng.bit_generator.state = json.loads(c["numpy_rng"])
            done, extra = int(c["step"]), weights.thaw(c.get("extra") or {})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"checkpoint '{path}' does not fit this run ({str(exc).splitlines()[0]})") from None
        self.extra = extra
        self.log(f"resumed from {self.cfg['resume']} at step {done}")
        return done, extra


# --------------------------------------------------------------------------------------- stages
def _sr_batch(sampler: Sampler, cfg: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One upsampler batch: per sample a crop of ``patch x s`` pixels (``s`` drawn from
    ``[scale_min, scale_max]``) shrunk by bicubic to ``patch``, and ``queries`` of its real pixels:
    (LR B,3,p,p; coordinates, cells B,Q,2; colours B,Q,3)."""
    p, q = cfg["patch"], cfg["queries"]
    lrs, coords, cells, gts = [], [], [], []
    for _ in range(cfg["batch"]):
        s = sampler.rng.uniform(cfg["scale_min"], cfg["scale_max"])
        hr = sampler.crop(int(round(p * s)))
        lrs.append(unit(resize(hr, p, p)))
        c, ce, g = queries(sampler.rng, hr, q)
        coords.append(c), cells.append(ce), gts.append(g)
    return torch.stack(lrs), torch.stack(coords), torch.stack(cells), torch.stack(gts)


def _l1_step(net: torch.nn.Module, opt: torch.optim.Optimizer, lr: float, src: Tensor, coords: Tensor, cells: Tensor,
             gts: Tensor) -> Tensor:
    """One Adam step at ``lr`` on the L1 error of ``net(src, coords, cells)`` against ``gts``."""
    for grp in opt.param_groups:
        grp["lr"] = lr
    loss = F.l1_loss(net(src, coords, cells), gts)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def train_sr(cfg: dict, out: Path, log: _Log, dev: torch.device) -> None:
    sampler = Sampler(training_images(), cfg["seed"])
    net = LIIFUpsampler(**cfg["model"])
    _maybe_init(net, cfg, "sr", log, out)
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    ckpt = _Checkpoints("sr", cfg, out, log, {"model": net}, opt, sampler)
    start, _ = ckpt.resume()
    t0 = time.time()
    for step in range(start, cfg["steps"]):
        lrs, coords, cells, gts = (t.to(dev) for t in _sr_batch(sampler, cfg))
        loss = _l1_step(net, opt, _lr_at(cfg, step), lrs, coords, cells, gts)
        if step % 50 == 0 or step == cfg["steps"] - 1:
            log(f"sr step {step} l1 {loss.item():.5f} ({time.time() - t0:.0f}s)")
        ckpt.after(step + 1, cfg["steps"])
    log(f"saved {model.save(net, 'sr', out, train=cfg, step=cfg['steps'])}")


def _hyperprior(name: str) -> tuple[torch.nn.Module, str]:
    """The shipped hyperprior ``name`` (frozen) and its model's SHA-256 (its streams record the
    first 16 digits)."""
    from .hyperprior import from_model_file

    if name not in model.HYPERPRIORS:
        raise UsageError(f"hpsr trains on a shipped hyperprior ({', '.join(model.HYPERPRIORS)}), got {name!r}")
    made, pinned = model.HYPERPRIORS[name]
    mf = weights.load(WEIGHTS_DIR / name, kind=model.KIND, versions=(2, 2), expect_digest=pinned)
    if made != pinned:
        raise UsageError(f"{name} ships as a decode-only copy: hpsr needs a hyperprior that can encode")
    return from_model_file(mf), made


@torch.no_grad()
def decode_like_codec(hp: torch.nn.Module, x: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """What the codec's decoder holds for ``x`` (B,3,H,W in [0, 1], sides multiples of 64) coded at
    qualities ``q``: (the 1x decode rounded to 8 bits, the synthesis features). The means come
    from the float ``h_s`` here, not the integer one the bitstream uses (they differ by under
    2^-mean_bits, far below a quantisation step)."""
    y = hp.analysis(x, q)
    mean, _ = hp.hyper_synthesis(torch.round(hp.hyper_analysis(y)))
    feats = hp.synthesis_features(torch.round(y - mean) + mean, q)
    decoded = ((hp.g_s_out(feats) + 1.0) * 0.5).clamp(0, 1)
    return torch.round(decoded * 255.0) / 255.0, feats


def train_hpsr(cfg: dict, out: Path, log: _Log, dev: torch.device) -> None:
    """The :class:`SynthesisLIIF` of one shipped hyperprior: random crops coded at a random
    quality by the frozen hyperprior, rendered at a random scale, L1 against the real pixels."""
    sampler = Sampler(training_images(), cfg["seed"])
    hp, made = _hyperprior(cfg["hyperprior"])
    hp.to(dev)
    net = SynthesisLIIF(feat_ch=int(hp.config["n"]), **cfg["model"])
    if cfg.get("init") and not cfg.get("resume"):
        # the pixel upsampler's weights: everything but the (zero) fuse conv
        src = model.instantiate(model.load_file(_in_out(out, cfg["init"]), "sr"))
        missing, unexpected = net.load_state_dict(src.state_dict(), strict=False)
        if unexpected or any(not k.startswith("fuse.") for k in missing):
            raise InputError(f"{cfg['init']} does not fit the hpsr network ({missing + unexpected})")
        log(f"initialised from {cfg['init']}")
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    ckpt = _Checkpoints("hpsr", cfg, out, log, {"model": net}, opt, sampler)
    start, _ = ckpt.resume()
    qualities = int(hp.config["qualities"])
    if cfg["patch"] % 64:
        raise UsageError(f"hpsr patch must be a multiple of 64 (the hyperprior's padding), got {cfg['patch']}")
    t0 = time.time()
    for step in range(start, cfg["steps"]):
        lrs, coords, cells, gts = (t.to(dev) for t in _sr_batch(sampler, cfg))
        quality = torch.from_numpy(sampler.rng.integers(qualities, size=cfg["batch"]))
        decoded, feats = decode_like_codec(hp, lrs, quality.to(dev))
        loss = _l1_step(net, opt, _lr_at(cfg, step), net.source(decoded, feats), coords, cells, gts)
        if step % 50 == 0 or step == cfg["steps"] - 1:
            log(f"hpsr step {step} l1 {loss.item():.5f} ({time.time() - t0:.0f}s)")
        ckpt.after(step + 1, cfg["steps"], lambda done: model.save(net, "hpsr", out, train=cfg, step=done,
                                                                     hyperprior=made))
    log(f"saved {model.save(net, 'hpsr', out, train=cfg, step=cfg['steps'], hyperprior=made)}")


def train_ae(cfg: dict, out: Path, log: _Log, dev: torch.device) -> None:
    sampler = Sampler(training_images(), cfg["seed"])
    net = CodecAE(**cfg["model"])
    _maybe_init(net, cfg, "ae", log, out)
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    ckpt = _Checkpoints("ae", cfg, out, log, {"model": net}, opt, sampler)
    start, _ = ckpt.resume()
    lambdas = torch.tensor(cfg["lambdas"], device=dev)
    p, nq = cfg["patch"], cfg["queries"]
    lat = p // net.factor
    t0 = time.time()
    for step in range(start, cfg["steps"]):
        xs, coords, cells, gts = [], [], [], []
        for _ in range(cfg["batch"]):
            crop = sampler.crop(p)
            xs.append(unit(crop))
            if sampler.rng.random() < cfg["native_prob"]:
                target = crop
            else:  # LIIF first-stage: the crop resized to x1..x4 of the latent grid
                n = int(round(lat * sampler.rng.uniform(1.0, 4.0)))
                target = resize(crop, n, n)
            c, ce, g = queries(sampler.rng, target, nq)
            coords.append(c), cells.append(ce), gts.append(g)
        x = torch.stack(xs).to(dev)
        qi = torch.from_numpy(sampler.rng.integers(net.qualities, size=len(xs))).to(dev)
        for grp in opt.param_groups:
            grp["lr"] = _lr_at(cfg, step)
        z, bits = net.quantize_train(net.encode(x), qi)  # its noise comes from the (forked) global RNG
        pred = net.forward_query(z, torch.stack(coords).to(dev), torch.stack(cells).to(dev))
        mse = ((pred - torch.stack(gts).to(dev)) ** 2).mean(dim=(1, 2))
        bpp = bits / (p * p)
        loss = (lambdas[qi] * 255**2 * mse + bpp).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg["steps"] - 1:
            psnr = (10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean()
            log(f"ae step {step} loss {loss.item():.4f} psnr {psnr:.2f} bpp {bpp.mean().item():.3f} ({time.time() - t0:.0f}s)")
        ckpt.after(step + 1, cfg["steps"])
    log(f"saved {model.save(net, 'ae', out, train=cfg, step=cfg['steps'])}")


def train_diffusion(cfg: dict, out: Path, log: _Log, dev: torch.device) -> None:
    """Latent UNet: conditional residual denoiser + (condition dropped) unconditional generator.

    Adam with linear warm-up and cosine decay; the stored weights are an exponential moving average
    (``ema``, default 0.999) of the trained ones, which matters most for short CPU runs. ``init``
    continues from a stored UNet (its architecture must match ``model``)."""
    sampler = Sampler(training_images(), cfg["seed"])
    # "ae"/"sr": paths as given (default: the files in the output folder)
    ae = model.instantiate(model.load_file(Path(cfg["ae"]) if cfg.get("ae") else out / model.FILES["ae"], "ae"))
    ae.requires_grad_(False)
    condition = cfg.get("condition", "bicubic")  # how the LR image is brought to the target grid
    if condition not in model.CONDITIONS:
        raise UsageError(f"diffusion condition must be one of {', '.join(model.CONDITIONS)}, got {condition!r}")
    sr = None  # the LIIF upsampler of the condition stays on the CPU (as in the shipped run)
    if condition == "liif":
        sr = model.instantiate(model.load_file(Path(cfg["sr"]) if cfg.get("sr") else out / model.FILES["sr"], "sr"))
        sr.requires_grad_(False)
    unet = UNet(**cfg["model"])
    _maybe_init(unet, cfg, "diffusion", log, out)
    ae.to(dev)
    unet.to(dev)
    ema = copy.deepcopy(unet).eval()
    ema.requires_grad_(False)
    ema_decay = float(cfg.get("ema", 0.999))
    opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
    abar = alphas_cumprod(unet.schedule).to(dev)
    p = cfg["patch"]
    with torch.no_grad():  # latent scales, as LDM's scale_factor: unit-variance diffusion targets
        crops = [sampler.crop(p) for _ in range(64)]
        z_s = ae.encode(torch.stack([unit(c) for c in crops]).to(dev))
        z_d = ae.encode(torch.stack([unit(degrade_up(c, sampler.rng.uniform(cfg["ratio_min"], cfg["ratio_max"]), sr))
                                     for c in crops]).to(dev))
        scales = {"sigma": float(z_s.std()), "res_sigma": float((z_s - z_d).std())}
    gen = torch.Generator().manual_seed(cfg["seed"])
    ckpt = _Checkpoints("diffusion", cfg, out, log, {"unet": unet, "ema": ema}, opt, sampler, gen, scales)
    start, scales = ckpt.resume()
    sigma, res_sigma = float(scales["sigma"]), float(scales["res_sigma"])
    log(f"latent std {sigma:.4f}, residual std {res_sigma:.4f}")
    meta = dict(sigma=sigma, res_sigma=res_sigma, condition=condition)  # stored with the weights
    t0 = time.time()
    total = cfg["steps"] + cfg["align_steps"]
    warmup = int(cfg.get("warmup", 0))
    running = None
    for step in range(start, total):
        hrs, conds = [], []
        for _ in range(cfg["batch"]):
            crop = sampler.crop(p)
            hrs.append(unit(crop))
            conds.append(unit(degrade_up(crop, sampler.rng.uniform(cfg["ratio_min"], cfg["ratio_max"]), sr)))
        with torch.no_grad():
            z_hr = ae.encode(torch.stack(hrs).to(dev))
            z_c = ae.encode(torch.stack(conds).to(dev))
            drop = torch.from_numpy(sampler.rng.random(len(hrs)) < cfg["uncond_prob"]).to(dev)
            z_c[drop] = 0
        # conditional: the residual over the encoded LR image; unconditional (dropped): the latent itself
        scale = torch.where(drop, sigma, res_sigma)[:, None, None, None]
        x0 = (z_hr - z_c) / scale
        cond = z_c / sigma
        for grp in opt.param_groups:
            grp["lr"] = cfg["lr"] * min(1.0, (step + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * step / total))
        loss, t, x0_hat = diffusion_loss(unet, x0, cond, abar, gen)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        msg = f"{unet.prediction} {loss.item():.4f} (avg {running:.4f})"
        if step >= cfg["steps"]:  # alignment fine-tune through the frozen decoder
            a = abar[t]
            w = (a.sqrt() / (1 - a).sqrt()).clamp(max=cfg["align_wmax"])[:, None, None, None]
            lat_l1 = (w * (x0_hat - x0).abs()).mean()
            coords, cells, gts = [], [], []
            for hr in hrs:
                img = (hr.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                c, ce, g = queries(sampler.rng, img, cfg["queries"])
                coords.append(c), cells.append(ce), gts.append(g)
            dec = ae.forward_query(x0_hat * scale + z_c, torch.stack(coords).to(dev), torch.stack(cells).to(dev))
            pix_l1 = (w[:, :, 0] * (dec - torch.stack(gts).to(dev)).abs()).mean()
            loss = loss + cfg["align_weight"] * (lat_l1 + pix_l1)
            msg += f" align {lat_l1.item():.4f}/{pix_l1.item():.4f}"
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, pt in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(pt, 1 - ema_decay)
        if step % 50 == 0 or step == total - 1:
            log(f"diffusion step {step} {msg} ({time.time() - t0:.0f}s)")
        # at each checkpoint the EMA weights are also written as a usable unet.ncx
        ckpt.after(step + 1, total, lambda done: model.save(ema, "unet", out, train=cfg, step=done, **meta))
    log(f"saved {model.save(ema, 'unet', out, train=cfg, step=total, **meta)}")


STAGES = {"sr": train_sr, "ae": train_ae, "diffusion": train_diffusion, "hpsr": train_hpsr}


def run(stage: str, config: Path, out: Path, steps: int | None = None, threads: int | None = None,
        section: str | None = None, device: str = "auto") -> int:
    """Train ``stage`` with the config's ``section`` (default: the section named like the stage; a
    config may hold several recipes for one stage, e.g. ``diffusion_pretrain`` then ``diffusion``)."""
    if stage not in STAGES:
        raise UsageError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})")
    try:
        cfg = json.loads(Path(config).read_text())[section or stage]
    except FileNotFoundError:
        raise InputError(f"no such config: {config}") from None
    except (json.JSONDecodeError, KeyError) as exc:
        raise InputError(f"{config}: not a valid ldm config ({exc})") from None
    if steps is not None:
        cfg["steps"] = steps
    dev = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = torch.get_num_threads()
    log = _Log(out / f"train_{stage}.log")
    cuda = list(range(torch.cuda.device_count())) if dev.type == "cuda" else []
    try:
        if threads:
            torch.set_num_threads(threads)
        log(f"stage {stage} config {json.dumps(cfg)} threads {torch.get_num_threads()} device {dev}")
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(cfg["seed"])
            STAGES[stage](cfg, out, log, dev)
    finally:
        torch.set_num_threads(before)
        log.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", required=True, choices=sorted(STAGES))
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--section", default=None, help="config section (default: the stage's name)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    a = ap.parse_args(argv)
    return run(a.stage, a.config, a.out, a.steps, a.threads, a.section, a.device)


if __name__ == "__main__":
    raise SystemExit(main())
