"""The video ablation table, recomputed from the committed results: every row under
``benchmarks/results/video/<clip>/ablation/<row>/hnerv.json`` against that clip's default HNeRV
curve (``benchmarks/results/video/<clip>/hnerv.json``), or against the earlier default it was
measured with (``ablation/references.json``), point by point (the same bpp targets, in order) and,
where both curves have 4 points, as BD-rate and BD-PSNR of the row against its reference.

Why against the default and not through x265: the bench's BD-rate against x265 is taken over the
x265 points that overlap each HNeRV curve, so two HNeRV curves with different PSNR ranges are
measured over different windows and their x265 figures do not compare (seed 1's default curve
reaches 34 dB and brings x265's crf 23 point into its window).

    .venv/bin/python benchmarks/video/ablation.py             # markdown table on stdout
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "video"


def _curve(path: Path) -> tuple[list[float], list[float], dict]:
    doc = json.loads(path.read_text())
    res = doc["results"]
    return list(res["bpp"]), list(res["psnr-rgb"]), doc


def references(clip: str) -> dict[str, str]:
    """Rows measured against an earlier default: ``ablation/references.json`` maps such a row to the
    ablation row that holds the default curve of its time (when a default changes, its old curve
    moves under ``ablation/`` and the rows measured with it keep being compared with it)."""
    path = RESULTS / clip / "ablation" / "references.json"
    return json.loads(path.read_text()) if path.exists() else {}


def rows(clip: str) -> list[dict]:
    from neurocodec.metrics import bd_psnr, bd_rate

    default = _curve(RESULTS / clip / "hnerv.json")
    refs = references(clip)
    out = []
    for path in sorted((RESULTS / clip / "ablation").glob("*/hnerv.json")):
        r, d, doc = _curve(path)
        ref = refs.get(path.parent.name)
        base_r, base_d, _ = _curve(RESULTS / clip / "ablation" / ref / "hnerv.json") if ref else default
        n = min(len(r), len(base_r))
        row = {"clip": clip, "row": path.parent.name, "points": len(r), "commit": doc["environment"]["git_commit"][:7],
               "against": ref or "default",
               "delta_db": [d[i] - base_d[i] for i in range(n)], "bpp_ratio": [r[i] / base_r[i] for i in range(n)]}
        if len(r) >= 4 and len(base_r) >= 4:
            row["bd_rate_vs_default_%"] = bd_rate(base_r, base_d, r, d)
            row["bd_psnr_vs_default_db"] = bd_psnr(base_r, base_d, r, d)
        out.append(row)
    return out


def markdown(all_rows: list[dict]) -> str:
    lines = ["| clip | row | against | points | PSNR change per target (dB) | bpp ratio per target | BD-rate | "
             "BD-PSNR | commit |", "|---|---|---|---|---|---|---|---|---|"]
    for row in all_rows:
        bd = f"{row['bd_rate_vs_default_%']:+.1f} %" if "bd_rate_vs_default_%" in row else "n/a"
        bp = f"{row['bd_psnr_vs_default_db']:+.2f} dB" if "bd_psnr_vs_default_db" in row else "n/a"
        lines.append(f"| {row['clip']} | {row['row']} | {row['against']} | {row['points']} | "
                     f"{', '.join(f'{v:+.2f}' for v in row['delta_db'])} | "
                     f"{', '.join(f'{v:.3f}' for v in row['bpp_ratio'])} | {bd} | {bp} | {row['commit']} |")
    return "\n".join(lines)


def main() -> int:
    clips = sorted(p.parent.name for p in RESULTS.glob("*/ablation"))
    print(markdown([row for clip in clips for row in rows(clip)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
