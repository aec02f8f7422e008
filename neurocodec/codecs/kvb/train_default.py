"""Train the default weights shipped in ``weights/`` (fixed seeds; writes ``weights/train_default.log``).

1. ``conv_ae.ncx`` (a ``model:kvb-encoder`` file): the conv autoencoder behind the ``conv_ae``
   encoder. Its data are *letters*, not digits, so the frozen encoder never saw an evaluation
   class: 28x28 glyphs rendered from the DejaVu/STIX fonts that matplotlib ships (no download),
   with random size, rotation, shear, stroke width and shift, then centred by centre of mass in a
   20x20 box like MNIST. Letters that look like digits (O, o, Q, D, I, l, i, j, J, S, s, Z, z, B,
   b, g, q, G) are left out.
2. ``digits.ncx`` and ``mnist.ncx`` (``model:kvb`` files): the built-in bottlenecks of the ``kvb``
   codec, each learned class-incrementally (5 tasks of 2 classes, 500 epochs each) on its training
   split (sklearn digits: the split of ``neurocodec bench kvb``; MNIST:
   ``datasets.mnist_5k_split()``), keys initialised on the same training images without labels.

Run: ``python -m neurocodec.codecs.kvb.train_default [ae|models|all]``. The log ends with the
SHA-256 of each file written: copy them into ``SHIPPED`` in ``shipped.py``, or the package refuses
the new files. Every random draw uses a local generator (the autoencoder's initialisation runs
under ``torch.random.fork_rng``, so the caller's global RNG is left as it was).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ... import weights
from .encoders import ENCODER_FORMAT_VERSION, ENCODER_KIND, ConvAE
from .shipped import WEIGHTS_DIR, shipped_path

SEED = 0
LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"
AE_CONFIG = {"latent": 64, "width": 32, "images": 24000, "epochs": 12, "batch": 128, "lr": 2e-3, "seed": SEED}
log = logging.getLogger("kvb.train")


def _fonts() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
        "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
        "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    ]
    return [folder / n for n in names if (folder / n).exists()]


def _mnist_style(img: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into 20x20 keeping the aspect ratio, centre by mass in 28x28."""
    from PIL import Image

    ys, xs = np.nonzero(img > 0.05)
    if ys.size == 0:
        return np.zeros((28, 28), np.float32)
    crop = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.BILINEAR)
    small = np.asarray(small, np.float32) / 255
    out = np.zeros((28, 28), np.float32)
    cy, cx = np.array(np.nonzero(small > -1)).reshape(2, nh, nw)
    mass = small.sum() + 1e-8
    my, mx = (cy * small).sum() / mass, (cx * small).sum() / mass
    oy, ox = int(round(14 - my)), int(round(14 - mx))
    oy, ox = min(max(oy, 0), 28 - nh), min(max(ox, 0), 28 - nw)
    out[oy : oy + nh, ox : ox + nw] = small
    return out


def render_letters(n: int, seed: int = SEED) -> np.ndarray:
    """``n`` random letter glyphs, ``n x 28 x 28`` float32 in 0..1."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    fonts = _fonts()
    if not fonts:
        raise RuntimeError("no fonts found in matplotlib's data folder")
    cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    out = np.empty((n, 28, 28), np.float32)
    for i in range(n):
        fi, size = int(rng.integers(len(fonts))), int(rng.integers(28, 44))
        font = cache.setdefault((fi, size), ImageFont.truetype(str(fonts[fi]), size))
        ch = LETTERS[int(rng.integers(len(LETTERS)))]
        x0, y0, x1, y1 = font.getbbox(ch)
        canvas = Image.new("L", (96, 96), 0)  # large enough that shear/rotation never clip
        ImageDraw.Draw(canvas).text((48 - (x0 + x1) / 2, 48 - (y0 + y1) / 2), ch, fill=255, font=font)
        if rng.random() < 0.35:
            canvas = canvas.filter(ImageFilter.MaxFilter(3))  # thicker strokes, like a pen
        shear = rng.uniform(-0.3, 0.3)
        canvas = canvas.transform((96, 96), Image.AFFINE, (1, shear, -shear * 48, 0, 1, 0), resample=Image.BILINEAR)
        canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.8)))
        out[i] = _mnist_style(np.asarray(canvas, np.float32) / 255)
    return out


def train_ae() -> None:
    cfg = AE_CONFIG
    t0 = time.time()
    data = torch.from_numpy(render_letters(cfg["images"], cfg["seed"]))[:, None]
    log.info("rendered %d letter glyphs (%s) in %.1f s", len(data), LETTERS, time.time() - t0)
    val, train = data[:2000], data[2000:]
    # torch modules draw their initial weights from the global RNG: seed it inside fork_rng so the
    # weights are reproducible and the process's RNG state is restored afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        model = ConvAE(cfg["latent"], cfg["width"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    steps = cfg["epochs"] * (len(train) // cfg["batch"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(cfg["seed"])
    bce = torch.nn.BCEWithLogitsLoss()
    for epoch in range(cfg["epochs"]):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        total = 0.0
        for s in range(0, len(train) - cfg["batch"] + 1, cfg["batch"]):
            xb = train[perm[s : s + cfg["batch"]]]
            loss = bce(model(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
        model.eval()
        with torch.no_grad():
            vrec = torch.sigmoid(model(val))
            vmse = float(((vrec - val) ** 2).mean())
        log.info("epoch %d: train bce %.4f, val mse %.5f (%.0f s)",
                 epoch + 1, total / len(train), vmse, time.time() - t0)
    state = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    config = {"arch": "conv_ae"} | {k: cfg[k] for k in ("latent", "width")} | {
        "trained_on": "rendered letters " + LETTERS, "train": cfg}
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    path = shipped_path("conv_ae")
    digest = weights.save(path, ENCODER_KIND, ENCODER_FORMAT_VERSION, config, state)
    log.info("wrote %s (%d bytes, %d parameters), sha256 %s", path, path.stat().st_size,
             sum(p.numel() for p in model.parameters()), digest)


# bottleneck configuration of each built-in model
MODELS = {
    "digits": {"encoder": ("pca", {"dim": 32}), "num_codebooks": 64, "num_keys": 128, "key_dim": 8},
    "mnist": {"encoder": ("pca", {"dim": 32}), "num_codebooks": 64, "num_keys": 256, "key_dim": 8},
}


def train_models(epochs: int = 500) -> None:
    from ...datasets import mnist_5k_split
    from .data import digits_split
    from .encoders import make_encoder
    from .model import KVBottleneck

    for name, cfg in MODELS.items():
        (xtr, ytr), (xte, yte) = digits_split() if name == "digits" else mnist_5k_split()
        enc_name, enc_opts = cfg["encoder"]
        kvb = KVBottleneck(make_encoder(enc_name, **enc_opts), num_codebooks=cfg["num_codebooks"],
                           num_keys=cfg["num_keys"], key_dim=cfg["key_dim"], seed=SEED, device="cpu")
        t0 = time.time()
        kvb.init_keys(xtr)
        for task in range(5):
            sel = np.isin(ytr, [2 * task, 2 * task + 1])
            kvb.partial_fit(xtr[sel], ytr[sel], epochs=epochs)
            log.info("%s: task %d, test accuracy %.4f (%.0f s)", name, task + 1, kvb.score(xte, yte), time.time() - t0)
        path = kvb.save(shipped_path(name))
        log.info("wrote %s (%d bytes), sha256 %s", path, path.stat().st_size, kvb.digest)


def write_config() -> None:
    """weights/config.json: the settings every shipped file was trained with."""
    doc = {"seed": SEED, "conv_ae": AE_CONFIG | {"letters": LETTERS}, "models": MODELS,
           "models_training": {"tasks": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]], "epochs_per_task": 500,
                               "init_keys": "EMA k-means, decay 0.95, 10 epochs, batch 256, "
                                            "on the training images without labels",
                               "values": "SGD lr 0.3, batch 256, label smoothing 0.1, grad-norm clip 1.0"}}
    (WEIGHTS_DIR / "config.json").write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    what = argv[0] if argv else "all"
    # the shipped files were trained on one thread; this script owns its process, so it may say so
    torch.set_num_threads(1)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(WEIGHTS_DIR / "train_default.log")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[handler, logging.StreamHandler(sys.stderr)])
    log.info("train_default %s (seed %d, torch %s)", what, SEED, torch.__version__)
    write_config()
    if what in ("ae", "all"):
        train_ae()
    if what in ("models", "all"):
        train_models()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
