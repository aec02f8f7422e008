"""The suite notebooks: built from the cell sources below (stored without outputs) and executed
with nbclient by ``make notebooks`` and by a CI test, so none of them rots.

    python notebooks/build.py            # (re)write notebooks/*.ipynb without outputs
    python notebooks/build.py --execute  # and execute each (outputs go to a temp folder)

Why a repo script and not part of the package: the notebooks are files of this checkout, written
next to this script; the package only provides what they import (``neurocodec.bench.plot``).

Notebooks read the JSON under ``$NEUROCODEC_RESULTS`` (default: ``default_results_dir()``, i.e.
``benchmarks/results`` of the checkout) and keep their sample reconstructions small when
``$NEUROCODEC_QUICK`` is set. Figures are drawn inline (``%matplotlib inline``, with the colours and
axis labels of ``neurocodec plot``) and committed pictures are displayed as PNGs, so an executed
notebook carries every figure in its outputs; tables have one row per RD point.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_SETUP = """\
%matplotlib inline
import os, json
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display
import neurocodec
from neurocodec import datasets, metrics
from neurocodec.bench.plot import DEFAULT_AXES, bd_table, draw_curves, format_table, load_suite
from neurocodec.bench.results import default_results_dir
RESULTS = Path(os.environ.get("NEUROCODEC_RESULTS") or default_results_dir())
QUICK = bool(os.environ.get("NEUROCODEC_QUICK"))
"""

# RD figures drawn inline with the colours and axis labels of `neurocodec plot` (draw_curves), and a
# BD table per dataset that says which dataset it belongs to
_RD = """\
suite = {suite!r}
data = load_suite(suite, results_dir=RESULTS)
print("datasets:", sorted(data))
x_key, y_keys, anchor = DEFAULT_AXES[suite]
y_keys = y_keys or ("psnr-rgb",)
for dataset, docs in data.items():
    fig, axes = plt.subplots(1, len(y_keys), figsize=(6 * len(y_keys), 4), squeeze=False)
    for ax, y in zip(axes[0], y_keys):
        draw_curves(ax, docs, x_key, y, yerr=y + "-std", title=f"{{suite}} / {{dataset}}")
    fig.tight_layout()
    plt.show()
    if suite in ("video", "image") and anchor in docs:
        rows = [dict(codec=k, against=anchor, **v) for k, v in bd_table(docs, anchor, x_key, y_keys[0]).items()]
        display(Markdown(f"**BD on {{suite}} / {{dataset}}** against {{anchor}} ({{y_keys[0]}}, pchip; "
                         "negative bd_rate = fewer bits at equal quality)\\n\\n"
                         + format_table(rows, ["codec", "against", "bd_rate", "bd_quality"])))
"""

# one row per RD point (never an average over points: each point is its own setting)
_TABLE = """\
suite = {suite!r}
data = load_suite(suite, results_dir=RESULTS)
print("datasets:", sorted(data))
is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
for dataset, docs in data.items():
    rows, columns = [], ["codec", "point"]
    for name, doc in sorted(docs.items()):
        res = {{k: v for k, v in doc["results"].items() if v and all(is_num(x) or x is None for x in v)}}
        columns += [k for k in res if k not in columns]
        for i in range(max(map(len, res.values()), default=0)):
            rows.append({{"codec": name, "point": i + 1, **{{k: v[i] for k, v in res.items() if i < len(v)}}}})
    display(Markdown(f"**{{suite}} / {{dataset}}**: one row per RD point\\n\\n" + format_table(rows, columns)))
"""

# committed pictures of a full run (labelled crop strips, the kvb rate plot), shown as they are
_COMMITTED = """\
pictures = sorted(p for p in (RESULTS / {suite!r}).rglob("*.png") if "raw" not in p.parts)
print(len(pictures), "committed pictures under", RESULTS / {suite!r})
for png in pictures:
    display(Markdown(f"`{{png.relative_to(RESULTS)}}`"), Image(filename=str(png)))
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
        if suite in ("video", "image", "sr"):
            nb.cells.append(nbformat.v4.new_markdown_cell("## Every RD point"))
            nb.cells.append(nbformat.v4.new_code_cell(_TABLE.format(suite=suite)))
        if suite in ("image", "sr", "kvb"):
            nb.cells.append(nbformat.v4.new_markdown_cell(
                "## Figures of the committed full run\n\nDrawn by `python benchmarks/report.py` from the JSON "
                "(crop strips: the raw tiles and captions under `crops/raw/`)."))
            nb.cells.append(nbformat.v4.new_code_cell(_COMMITTED.format(suite=suite)))
        if suite in _SAMPLES:
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


def embedded_figures(nb: object) -> list[tuple[int, int]]:
    """(cell index, output index) of every PNG an executed notebook carries in its outputs."""
    return [(i, j) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for j, out in enumerate(cell.get("outputs", [])) if "image/png" in out.get("data", {})]


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
            print(f"  executed -> {out} ({len(embedded_figures(nb))} figures embedded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
