"""RD curves (PNG + SVG), BD-rate tables and every committed figure, from the suites' JSON results.

One place for how a result looks: :data:`CODEC_COLOURS` and :func:`axis_label` are used by
``neurocodec plot``, by the suites when they finish a run, by ``benchmarks/report.py`` (which
redraws the committed figures from the JSON) and by the notebooks. Crop strips (a row of crops of
the same region, one per codec) are stored raw beside a caption file and drawn labelled from them,
so a new label style never needs a benchmark rerun.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import default_results_dir, read_results

if TYPE_CHECKING:  # numpy is imported where it is used: `neurocodec plot --help` stays light
    import numpy as np

# suite -> (x key, y keys, anchor codec): what a reader of that suite expects to see
DEFAULT_AXES: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "video": ("bpp", ("psnr-rgb", "ms-ssim-rgb"), "x265"),
    "image": ("bpp", ("psnr-rgb", "ms-ssim-rgb"), "jpeg"),
    "lossless": ("bpd", (), None),
    "sr": ("scale", ("psnr-rgb",), "bicubic"),
    "kvb": ("bits_per_sample", ("final_accuracy",), None),
}


def load_suite(suite: str, dataset: str | None = None, results_dir: Path | None = None) -> dict[str, dict[str, dict]]:
    """{dataset: {codec: document}} for every JSON file of a suite."""
    base = (results_dir or default_results_dir()) / suite
    found: dict[str, dict[str, dict]] = {}
    if not base.is_dir():
        return found
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if dataset and folder.name != dataset:
            continue
        docs = {}
        for f in sorted(folder.glob("*.json")):
            doc = read_results(f)
            if isinstance(doc, dict) and "results" in doc:
                docs[doc.get("name", f.stem)] = doc
        if docs:
            found[folder.name] = docs
    return found


def _xy(doc: dict, x: str, y: str) -> tuple[list[float], list[float]] | None:
    res = doc.get("results", {})
    if x not in res or y not in res:
        return None
    pts = sorted((a, b) for a, b in zip(res[x], res[y])
                 if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b))
    if not pts:
        return None
    return [p[0] for p in pts], [p[1] for p in pts]


def bd_table(docs: dict[str, dict], anchor: str, x: str = "bpp", y: str = "psnr-rgb") -> dict[str, dict[str, float | None]]:
    """BD-rate (%) and BD-PSNR of every codec against ``anchor`` (pchip); None where the curves do
    not have the 4 points pchip needs or do not overlap."""
    from ..metrics import bd_psnr, bd_rate

    out: dict[str, dict[str, float | None]] = {}
    ref = _xy(docs[anchor], x, y) if anchor in docs else None
    for name, doc in docs.items():
        if name == anchor or ref is None:
            continue
        cur = _xy(doc, x, y)
        row: dict[str, float | None] = {"bd_rate": None, "bd_quality": None}
        if cur and len(cur[0]) >= 4 and len(ref[0]) >= 4:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # little overlap: still computed, as JVET does
                for key, fn in (("bd_rate", bd_rate), ("bd_quality", bd_psnr)):
                    try:
                        value = fn(ref[0], ref[1], cur[0], cur[1])
                    except Exception:  # noqa: BLE001 - degenerate curves: reported as missing
                        continue
                    row[key] = value if math.isfinite(value) else None  # NaN = no overlap at all
        out[name] = row
    return out


# one colour per codec, shared by every figure (matplotlib's tab10/tab20 hues, fixed by name)
CODEC_COLOURS: dict[str, str] = {
    "png": "#7f7f7f", "webp": "#2ca02c", "jpeg": "#8c564b", "jpegxl": "#17becf", "x264": "#1f77b4",
    "x265": "#ff7f0e", "svtav1": "#9467bd", "hnerv": "#d62728", "nerv": "#e377c2", "pc": "#bcbd22",
    "ldm": "#d62728", "kvb": "#d62728", "bicubic": "#7f7f7f", "liif": "#1f77b4", "diffusion": "#ff7f0e",
    "ldm-hp": "#9467bd", "ldm-hp-refine": "#e377c2", "avif": "#bcbd22",
    "jpeg+bicubic": "#8c564b", "jpeg+liif": "#c49c94", "webp+bicubic": "#2ca02c", "webp+liif": "#98df8a",
}
_AXIS_LABELS = {
    "bpp": "rate (bits per pixel)", "bpd": "rate (bits per dimension)", "psnr-rgb": "PSNR-RGB (dB)",
    "psnr": "PSNR-RGB (dB)", "psnr-yuv": "PSNR-YUV 4:2:0, 6:1:1 (dB)", "ms-ssim-rgb": "MS-SSIM (RGB)",
    "ms-ssim": "MS-SSIM (RGB)", "bytes": "file size (bytes)", "accuracy": "accuracy",
    "final_accuracy": "final class-incremental accuracy", "bits_per_sample": "coded bits per sample",
    "psnr-2x-rgb": "PSNR-RGB at 2x vs bicubic-2x original (dB)", "scale": "upscaling factor",
    "ssim-rgb": "SSIM (RGB)", "detail-ratio": "detail ratio (1 = as sharp as the original)",
    "decode_fps": "decoding speed (frames/s)", "encoding_time": "encoding time (s)",
}


def colour(name: str) -> str | None:
    """The fixed colour of a codec (None: matplotlib's next colour, for names not listed)."""
    return CODEC_COLOURS.get(name) or CODEC_COLOURS.get(name.split("-")[0])


def axis_label(key: str) -> str:
    """A result key as an axis label with its unit (``bpp`` -> ``rate (bits per pixel)``)."""
    return _AXIS_LABELS.get(key, key.replace("_", " "))


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend unless a backend was chosen (a notebook's inline one)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _points(doc: dict, x: str, *keys: str) -> list[tuple[float, ...]]:
    """(x, key1, key2, ...) of every RD point with finite numbers for all of them, sorted by x."""
    res = doc.get("results", {})
    if x not in res or any(k not in res for k in keys):
        return []
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    rows = [t for t in zip(res[x], *(res[k] for k in keys)) if all(num(v) for v in t)]
    return sorted(rows)


def draw_curves(ax: Any, docs: dict[str, dict], x: str, y: str, *, yerr: str | None = None,
                title: str | None = None) -> int:
    """One line per codec (its fixed colour, a marker per RD point), axes labelled with units;
    ``yerr`` names a result key drawn as error bars where it is non-zero. Returns the curves drawn."""
    drawn = 0
    for name, doc in sorted(docs.items()):
        pts = _points(doc, x, y, yerr) if yerr and yerr in doc.get("results", {}) else _points(doc, x, y)
        if not pts:
            continue
        cols = list(zip(*pts))
        label = name + (" (quick)" if doc.get("quick") else "")
        if yerr and len(cols) == 3 and any(cols[2]):
            ax.errorbar(cols[0], cols[1], yerr=cols[2], marker="o", capsize=3, label=label, color=colour(name))
        else:
            ax.plot(cols[0], cols[1], marker="o", label=label, color=colour(name))
        drawn += 1
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    return drawn


def save_figure(fig: Any, *paths: Path, dpi: int = 120) -> list[Path]:
    """Write a figure atomically to each path (PNG or SVG by suffix; no software version or date
    in the file, so an unchanged figure rewrites to the same bytes) and close it."""
    from ..io import atomic_path

    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix.lstrip(".").lower()
        meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None} if fmt == "svg" else {}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
    _pyplot().close(fig)
    return list(paths)


def rd_figure(panels: list[tuple[dict[str, dict], str, str, str | None]], title: str | None = None,
              yerr: dict[str, str] | None = None) -> Any:
    """One row of panels ``(docs, x, y, panel title)``; ``yerr`` maps a y key to its error key."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, (docs, x, y, sub) in zip(axes[0], panels):
        draw_curves(ax, docs, x, y, yerr=(yerr or {}).get(y), title=sub)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_suite(suite: str, dataset: str | None = None, *, x: str | None = None, ys: tuple[str, ...] | None = None,
               results_dir: Path | None = None, out_dir: Path | None = None) -> list[Path]:
    """Draw one figure per (dataset, y) and save PNG + SVG beside the JSON. Returns the paths."""
    plt = _pyplot()
    dx, dys, _ = DEFAULT_AXES.get(suite, ("bpp", ("psnr-rgb",), None))
    x = x or dx
    ys = ys or dys
    written: list[Path] = []
    for ds, docs in load_suite(suite, dataset, results_dir).items():
        for y in ys:
            fig, ax = plt.subplots(figsize=(6, 4.2))
            if not draw_curves(ax, docs, x, y, title=f"{suite}: {ds}"):
                plt.close(fig)
                continue
            folder = (out_dir or (results_dir or default_results_dir()) / suite / ds)
            written += save_figure(fig, folder / f"{y}-vs-{x}.png", folder / f"{y}-vs-{x}.svg")
    return written


# ------------------------------------------------------------------ the figures each suite commits
_DATASET_COLOURS = {"digits": "#1f77b4", "mnist": "#ff7f0e"}
# kvb methods: marker, size, filled, z-order; iid is drawn last, large and hollow, because it lands
# on the kvb star (the point of the benchmark: kvb matches its i.i.d. upper bound)
_KVB_MARKERS = {"naive-linear": ("X", 70, True, 3), "vq-linear": ("s", 60, True, 3), "pq-kvb": ("^", 70, True, 3),
                "kvb": ("*", 240, True, 4), "iid": ("D", 150, False, 5)}


def kvb_figure(sweeps: dict[str, list[dict]], rows: list[tuple[str, str, dict]]) -> Any:
    """Rate against final accuracy: the (C, K) sweep of each dataset as labelled points (no line: two
    neighbours in rate are unrelated configurations) and each method's mean over seeds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    xs: list[float] = []
    main = {name: (float(res["bits_per_sample"][0]), float(res["accuracy"][0])) for name, method, res in rows
            if method == "kvb" and res.get("bits_per_sample") and res.get("accuracy")}
    main_ck: dict[str, str] = {}
    for name, points in sweeps.items():
        pts = sorted(points, key=lambda p: float(p["bits_coded"]))
        bits = [float(p["bits_coded"]) for p in pts]
        acc = [100 * float(p["final_accuracy"]) for p in pts]
        xs += bits
        ax.scatter(bits, acc, marker="o", s=28, color=_DATASET_COLOURS.get(name), zorder=2,
                   label=f"kvb (C, K) sweep, {name}")
        for i, (p, b, a) in enumerate(zip(pts, bits, acc)):
            ck = f"C={p['num_codebooks']},K={p['num_keys']}"
            if name in main and abs(b / main[name][0] - 1) < 0.02 and abs(a / 100 - main[name][1]) < 0.03:
                main_ck[name] = ck  # the main configuration: named in the star's legend entry instead
                continue
            # neighbours in rate alternate below / above their point, and a label drops further down
            # when the next point is close on the right, so labels and markers do not overlap
            crowded = i + 1 < len(bits) and bits[i + 1] < 1.35 * b
            ax.annotate(ck, (b, a), fontsize=6.5, xytext=(4, -18 if crowded else -10 if i % 2 == 0 else 5),
                        textcoords="offset points", color=_DATASET_COLOURS.get(name), annotation_clip=False)
    for name, method, res in sorted(rows, key=lambda r: (_KVB_MARKERS.get(r[1], ("", 0, 0, 0))[3], r[0])):
        if method not in _KVB_MARKERS or not res.get("bits_per_sample") or not res.get("accuracy"):
            continue
        marker, size, filled, z = _KVB_MARKERS[method]
        c = _DATASET_COLOURS.get(name)
        style = ({"facecolors": c, "edgecolors": "k", "linewidths": 0.8} if filled else
                 {"facecolors": "none", "edgecolors": c, "linewidths": 1.8})
        x, y = float(res["bits_per_sample"][0]), 100 * float(res["accuracy"][0])
        xs.append(x)
        label = f"{method} ({main_ck[name]}), {name}" if method == "kvb" and name in main_ck else f"{method}, {name}"
        ax.scatter([x], [y], marker=marker, s=size, zorder=z, label=label, **style)
    ax.set_xscale("log")
    if xs:  # room on the right for the last point's label
        ax.set_xlim(min(xs) / 1.4, max(xs) * 2.2)
    ax.set_xlabel(axis_label("bits_per_sample") + " (kvb stream of the test set; log scale)")
    ax.set_ylabel(axis_label("final_accuracy") + " (%)")
    ax.set_title("Discrete key-value bottleneck: rate against accuracy after 5 tasks")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def caption_lines(tile: dict[str, Any]) -> list[str]:
    """The lines under one crop: name and setting, a note, then rate and quality where known."""
    head = " ".join(str(tile[k]) for k in ("name", "setting") if tile.get(k) not in (None, ""))
    lines = [head] + ([str(tile["note"])] if tile.get("note") else [])
    if tile.get("bpp") is not None:
        lines.append(f"{tile['bpp']:.3f} bpp")
    if tile.get("psnr") is not None:
        lines.append("lossless" if not math.isfinite(tile["psnr"]) else f"{tile['psnr']:.2f} dB PSNR")
    return lines


def labelled_strip(tiles: list[np.ndarray], captions: list[list[str]], title: str | None = None,
                   scale: int = 1) -> np.ndarray:
    """Crops side by side, each with its caption lines underneath and an optional title line on
    top, in PIL's default font (an RGB uint8 array)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    import textwrap

    font = ImageFont.load_default()
    pad, line_h = 6, 14
    th = max(t.shape[0] for t in tiles) * scale
    widths = [t.shape[1] * scale for t in tiles]
    total_w = sum(widths) + pad * (len(tiles) + 1)
    title_lines = textwrap.wrap(title, max(20, total_w // 6)) if title else []  # ~6 px per character
    top = line_h * len(title_lines) + pad if title_lines else 0
    label_h = line_h * max(len(c) for c in captions) + pad
    canvas = Image.new("RGB", (total_w, top + th + label_h + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(title_lines):
        draw.text((pad, pad + j * line_h), text, fill="black", font=font)
    left = pad
    for tile, lines, w in zip(tiles, captions, widths):
        arr = np.asarray(tile)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        img = Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))
        if scale > 1:
            img = img.resize((w, arr.shape[0] * scale), Image.NEAREST)
        canvas.paste(img, (left, top + pad))
        for j, text in enumerate(lines):
            draw.text((left, top + pad + th + 4 + j * line_h), text, fill="black", font=font)
        left += w + pad
    return np.asarray(canvas)


def write_crop_strip(folder: Path, stem: str, tiles: list[np.ndarray], captions: list[dict[str, Any]],
                     title: str | None = None, quick: bool = False) -> Path:
    """Store a crop strip: the crops side by side without labels (``raw/<stem>.png``, the data),
    their captions (``raw/<stem>.json``, a side document: name, setting, bpp, psnr per tile, plus
    the environment that made them) and the labelled picture drawn from both (``<stem>.png``).
    Returns the labelled picture's path."""
    import json

    import numpy as np

    from ..io import write_bytes_atomic, write_image
    from .results import environment

    if len(tiles) != len(captions) or len({t.shape[:2] for t in tiles}) != 1:
        raise ValueError("a crop strip needs one caption per tile and tiles of one size")
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_image(raw / f"{stem}.png", np.concatenate([np.asarray(t) for t in tiles], axis=1))
    doc = {"kind": "crop-strip", "description": title or f"crop strip {stem}", "quick": quick,
           "environment": environment(), "tiles": len(tiles), "title": title, "captions": captions}
    write_bytes_atomic(raw / f"{stem}.json", (json.dumps(doc, indent=1) + "\n").encode())
    return draw_crop_strip(raw / f"{stem}.json")


def draw_crop_strip(caption_file: Path) -> Path:
    """Redraw ``<folder>/<stem>.png`` from ``<folder>/raw/<stem>.png`` and its caption file."""
    import json

    import numpy as np

    from ..io import read_image, write_image

    doc = json.loads(caption_file.read_text())
    strip = read_image(caption_file.with_suffix(".png"))
    n = int(doc["tiles"])
    tiles = np.split(strip, n, axis=1)
    out = caption_file.parent.parent / f"{caption_file.stem}.png"
    write_image(out, labelled_strip(tiles, [caption_lines(c) for c in doc["captions"]], doc.get("title")))
    return out


def suite_figures(suite: str, results_dir: Path | None = None) -> list[Path]:
    """Redraw the figures a suite commits from its JSON under ``results_dir`` (and every crop strip
    from its raw tiles and captions). Returns the paths written; a suite without results writes none."""
    base = (results_dir or default_results_dir()) / suite
    data = load_suite(suite, results_dir=results_dir)
    written: list[Path] = []
    if suite == "video":
        for ds, docs in data.items():
            ys = [y for y in ("psnr-rgb", "psnr-yuv", "ms-ssim-rgb") if any(y in d["results"] for d in docs.values())]
            written += save_figure(rd_figure([(docs, "bpp", y, None) for y in ys], title=f"video: {ds}"),
                                   base / ds / "rd.png", dpi=100)
    elif suite == "image":
        for ds, docs in data.items():
            ys = [y for y in ("psnr-rgb", "ms-ssim-rgb", "psnr-2x-rgb") if any(y in d["results"] for d in docs.values())]
            written += save_figure(rd_figure([(docs, "bpp", y, None) for y in ys],
                                             title="image: held-out photos" if ds == "held_out" else f"image: {ds}"),
                                   base / f"rd_{ds}.png", dpi=100)
    elif suite == "sr" and data:
        def sub(ds: str) -> str:
            name, _, crop = ds.rpartition("_crop")
            where = "held-out photos" if (name or ds) == "held_out" else (name or ds)
            return f"{where}, centre {crop}px crops (diffusion: mean, std over seeds)" if name else where

        panels = [(docs, "scale", "psnr-rgb", sub(ds)) for ds, docs in data.items()]
        written += save_figure(rd_figure(panels, title="arbitrary-scale super-resolution", yerr={"psnr-rgb": "psnr-rgb-std"}),
                               base / "psnr_vs_scale.png", dpi=100)
    elif suite == "kvb" and data:
        sweeps = {ds: docs["kvb-sweep"]["extra"]["per_point"] for ds, docs in data.items()
                  if "kvb-sweep" in docs and not docs["kvb-sweep"].get("quick")}
        rows = [(ds, m, doc["results"]) for ds, docs in data.items() for m, doc in docs.items() if not doc.get("quick")]
        if sweeps or rows:
            written += save_figure(kvb_figure(sweeps, rows), base / "rate_accuracy.png")
    for caption_file in sorted(base.glob("**/crops/raw/*.json")) if base.is_dir() else []:
        written.append(draw_crop_strip(caption_file))
    return written


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub-markdown table."""
    def cell(v: Any) -> str:
        if isinstance(v, float) and v.is_integer() and abs(v) >= 1000:
            return str(int(v))
        if isinstance(v, float):
            return "n/a" if not math.isfinite(v) else f"{v:.4g}"
        return "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
