"""The suite notebooks: built from the cell sources below (stored without outputs) and executed
with nbclient by ``make notebooks`` and by a CI test, so none of them rots.

    python notebooks/build.py            # (re)write notebooks/*.ipynb without outputs
    python notebooks/build.py --execute  # and execute each (outputs go to a temp folder)

Why a repo script and not part of the package: the notebooks are files of this checkout, written
next to this script; the package only provides what they import (``neurocodec.bench.plot``).

Notebooks read the JSON under ``$NEUROCODEC_RESULTS`` (default: ``default_results_dir()``, i.e.
``benchmarks/results`` of the checkout) and keep their sample reconstructions small when
``$NEUROCODEC_QUICK`` is set.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_SETUP = """\
import os, json
from pathlib import Path
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import neurocodec
from neurocodec import datasets, metrics
from neurocodec.bench.plot import load_suite, bd_table, format_table, DEFAULT_AXES
from neurocodec.bench.results import default_results_dir
RESULTS = Path(os.environ.get("NEUROCODEC_RESULTS") or default_results_dir())
QUICK = bool(os.environ.get("NEUROCODEC_QUICK"))
"""

_RD = """\
suite = {suite!r}
data = load_suite(suite, results_dir=RESULTS)
print("datasets:", sorted(data))
x_key, y_keys, anchor = DEFAULT_AXES[suite]
for dataset, docs in data.items():
    fig, axes = plt.subplots(1, max(1, len(y_keys)), figsize=(6 * max(1, len(y_keys)), 4), squeeze=False)
    for ax, y in zip(axes[0], y_keys or ("psnr-rgb",)):
        for name, doc in sorted(docs.items()):
            r = doc["results"]
            if x_key in r and y in r:
                pts = sorted((a, b) for a, b in zip(r[x_key], r[y]) if a is not None and b is not None)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name + (" (quick)" if doc.get("quick") else ""))
        ax.set_xlabel(x_key); ax.set_ylabel(y); ax.set_title(f"{{suite}} / {{dataset}}"); ax.grid(alpha=.3); ax.legend()
    plt.show()
    if anchor and anchor in docs:
        rows = [dict(codec=k, **v) for k, v in bd_table(docs, anchor, x_key, (y_keys or ("psnr-rgb",))[0]).items()]
        print(f"BD against {{anchor}}:")
        print(format_table(rows, ["codec", "bd_rate", "bd_quality"]))
"""

_TABLE = """\
suite = {suite!r}
data = load_suite(suite, results_dir=RESULTS)
print("datasets:", sorted(data))
for dataset, docs in data.items():
    keys = sorted({{k for d in docs.values() for k, v in d["results"].items() if v and isinstance(v[0], (int, float))}})
    rows = []
    for name, doc in sorted(docs.items()):
        row = {{"method": name}}
        for k in keys:
            vals = [v for v in doc["results"].get(k, []) if isinstance(v, (int, float))]
            row[k] = float(np.mean(vals)) if vals else None
        rows.append(row)
    print(f"## {{suite}} / {{dataset}}")
    print(format_table(rows, ["method", *keys]))
"""

_SAMPLES = {
    "video": """\
clip = datasets.load("carphone", max_frames=8 if QUICK else 30)
codecs = [c for c in ("x265", "svtav1", "hnerv") if c in neurocodec.list_codecs()]
params = {"x265": {"crf": 32, "preset": "slow"}, "svtav1": {"crf": 45, "preset": 6},
          "hnerv": {"target_bpp": 0.3, "epochs": 2 if QUICK else 60}}
fig, axes = plt.subplots(1, len(codecs) + 1, figsize=(4 * (len(codecs) + 1), 3.4))
axes[0].imshow(clip[-1]); axes[0].set_title("original"); axes[0].axis("off")
for ax, name in zip(axes[1:], codecs):
    blob = neurocodec.encode(clip, codec=name, **params[name])
    out = neurocodec.decode(blob)
    ax.imshow(out[-1]); ax.axis("off")
    ax.set_title(f"{name}: {metrics.bpp(len(blob), clip.shape):.3f} bpp, {metrics.video_psnr(clip, out):.2f} dB")
plt.show()
""",
    "lossless": """\
(_, _), (x_test, _) = datasets.mnist_5k_split()
digits = x_test[: 20 if QUICK else 200]
for name, params in [("png", {}), ("webp", {}), ("jpegxl", {}), ("pc", {"model": "mnist"})]:
    if name not in neurocodec.list_codecs():
        continue
    blob = neurocodec.encode(digits, codec=name, **params)
    assert np.array_equal(neurocodec.decode(blob), digits)
    print(f"{name:<7} {metrics.bpd(len(blob), digits.shape):.3f} bpd over {len(digits)} digits in one file (exact round trip)")
fig, axes = plt.subplots(1, 10, figsize=(10, 1.2))
for ax, d in zip(axes, digits[:10]):
    ax.imshow(d, cmap="gray"); ax.axis("off")
plt.show()
""",
    "image": """\
photo = datasets.load("coffee")[:192, :256]
rows = []
fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
axes[0].imshow(photo); axes[0].set_title("original"); axes[0].axis("off")
for ax, (name, params) in zip(axes[1:], [("jpeg", {"quality": 40}), ("webp", {"quality": 40}), ("ldm", {})]):
    if name not in neurocodec.list_codecs():
        ax.axis("off"); continue
    blob = neurocodec.encode(photo, codec=name, **params)
    out = neurocodec.decode(blob)
    ax.imshow(out); ax.axis("off")
    ax.set_title(f"{name}: {metrics.bpp(len(blob), photo.shape):.2f} bpp, {metrics.psnr(photo, out):.2f} dB")
plt.show()
""",
    "sr": """\
from PIL import Image
photo = datasets.load("chelsea")[:96, :96]
small = np.asarray(Image.fromarray(photo).resize((48, 48), Image.BICUBIC))
bicubic = np.asarray(Image.fromarray(small).resize((96, 96), Image.BICUBIC))
panels = [("original", photo), ("x2 bicubic", bicubic)]
if "ldm" in neurocodec.list_codecs():
    from neurocodec.codecs.ldm.api import upsample
    panels.append(("x2 LIIF", upsample(small, scale=2.0, method="liif")))
    panels.append(("x2 diffusion", upsample(small, scale=2.0, method="diffusion", steps=4 if QUICK else 20, seed=0)))
fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
for ax, (title, img) in zip(axes, panels):
    ax.imshow(img); ax.axis("off")
    ax.set_title(title if img is photo else f"{title}: {metrics.psnr(photo, img):.2f} dB")
plt.show()
if "ldm" in neurocodec.list_codecs():  # unconditional samples of the same latent model
    from neurocodec.codecs.ldm.api import generate
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for seed, ax in enumerate(axes):
        ax.imshow(generate(128, 128, seed=seed, steps=4 if QUICK else 20)); ax.axis("off"); ax.set_title(f"generate, seed {seed}")
    plt.show()
""",
    "kvb": """\
for png in sorted((RESULTS / "kvb").rglob("*.png")):
    img = plt.imread(png)
    plt.figure(figsize=(7, 4.5)); plt.imshow(img); plt.axis("off"); plt.title(png.name); plt.show()
""",
}

SUITE_TITLES = {
    "video": "Video: rate-distortion of HNeRV / NeRV against x264, x265 and SVT-AV1",
    "lossless": "Lossless: bits per dimension of the probabilistic-circuit codec against PNG, WebP, JPEG-XL, lzma",
    "sr": "Arbitrary-scale super-resolution: bicubic, LIIF path and diffusion path",
    "image": "Images: the latent (LDM/LIIF) codec against JPEG, WebP and JPEG-XL",
    "kvb": "Key-value bottleneck: class-incremental accuracy, forgetting and bits per sample",
}


def build(folder: Path | None = None) -> list[Path]:
    import nbformat

    folder = folder or HERE
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suite, title in SUITE_TITLES.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        body = (_RD if suite in ("video", "image", "sr") else _TABLE).format(suite=suite)
        nb.cells = [
            nbformat.v4.new_markdown_cell(f"# {title}\n\nLoads the suite's JSON results "
                                          f"(`benchmarks/results/{suite}/`), draws the figures and shows sample "
                                          "reconstructions. Regenerate the results with "
                                          f"`neurocodec bench {suite}` (add `--quick` for a fast run)."),
            nbformat.v4.new_code_cell(_SETUP),
            nbformat.v4.new_code_cell(body),
        ]
        if suite in ("video", "image"):
            nb.cells.append(nbformat.v4.new_code_cell(_TABLE.format(suite=suite)))
        nb.cells.append(nbformat.v4.new_markdown_cell("## Sample reconstructions"))
        nb.cells.append(nbformat.v4.new_code_cell(_SAMPLES[suite]))
        for i, cell in enumerate(nb.cells):  # stable ids: rebuilding an unchanged notebook changes nothing
            cell["id"] = f"{suite}-{i}"
        path = folder / f"{suite}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def execute(path: Path, results: Path | None = None, quick: bool = True, timeout: int = 600) -> object:
    """Run one notebook top to bottom (outputs are not written back to the stored notebook)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_backup = dict(os.environ)
    try:
        if results is not None:
            os.environ["NEUROCODEC_RESULTS"] = str(results)
        if quick:
            os.environ["NEUROCODEC_QUICK"] = "1"
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python notebooks/build.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--execute", action="store_true", help="execute every notebook after writing it")
    ap.add_argument("--results", type=Path, help="results folder (default: the checkout's benchmarks/results)")
    ap.add_argument("--full", action="store_true", help="full-size sample reconstructions (default: quick)")
    args = ap.parse_args(argv)
    paths = build()
    for path in paths:
        print(path)
        if args.execute:
            import nbformat

            nb = execute(path, args.results, quick=not args.full)
            out = Path(tempfile.gettempdir()) / f"neurocodec-{path.name}"
            nbformat.write(nb, out)
            print(f"  executed -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
