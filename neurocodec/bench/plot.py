"""RD curves (PNG + SVG) and BD-rate tables from the suites' JSON results."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .results import default_results_dir, read_results

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
}
_AXIS_LABELS = {
    "bpp": "rate (bits per pixel)", "bpd": "rate (bits per dimension)", "psnr-rgb": "PSNR-RGB (dB)",
    "psnr": "PSNR-RGB (dB)", "psnr-yuv": "PSNR-YUV 4:2:0, 6:1:1 (dB)", "ms-ssim-rgb": "MS-SSIM (RGB)",
    "ms-ssim": "MS-SSIM (RGB)", "bytes": "file size (bytes)", "accuracy": "accuracy",
}


def colour(name: str) -> str | None:
    """The fixed colour of a codec (None: matplotlib's next colour, for names not listed)."""
    return CODEC_COLOURS.get(name) or CODEC_COLOURS.get(name.split("-")[0])


def axis_label(key: str) -> str:
    """A result key as an axis label with its unit (``bpp`` -> ``rate (bits per pixel)``)."""
    return _AXIS_LABELS.get(key, key.replace("_", " "))


def plot_suite(suite: str, dataset: str | None = None, *, x: str | None = None, ys: tuple[str, ...] | None = None,
               results_dir: Path | None = None, out_dir: Path | None = None) -> list[Path]:
    """Draw one figure per (dataset, y) and save PNG + SVG beside the JSON. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dx, dys, _ = DEFAULT_AXES.get(suite, ("bpp", ("psnr-rgb",), None))
    x = x or dx
    ys = ys or dys
    written: list[Path] = []
    for ds, docs in load_suite(suite, dataset, results_dir).items():
        for y in ys:
            fig, ax = plt.subplots(figsize=(6, 4.2))
            drawn = 0
            for name, doc in sorted(docs.items()):
                xy = _xy(doc, x, y)
                if xy:
                    ax.plot(*xy, marker="o", label=name, color=colour(name))
                    drawn += 1
            if not drawn:
                plt.close(fig)
                continue
            ax.set_xlabel(axis_label(x))
            ax.set_ylabel(axis_label(y))
            ax.set_title(f"{suite}: {ds}")
            ax.grid(alpha=0.3)
            ax.legend()
            folder = (out_dir or (results_dir or default_results_dir()) / suite / ds)
            folder.mkdir(parents=True, exist_ok=True)
            for ext in ("png", "svg"):
                path = folder / f"{y}-vs-{x}.{ext}"
                fig.savefig(path, dpi=120, bbox_inches="tight")
                written.append(path)
            plt.close(fig)
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
