"""``neurocodec compare``: several codecs at one rate (or one quality), side by side.

Why: before reading RD tables a researcher wants to *look* at what each codec does at the same
budget. For each codec this finds the setting whose result is nearest the target, by bisection
over its one quality knob (``quality`` higher = more bits, ``crf`` lower = more bits), or, for a
codec with a ``target_bpp`` parameter, by asking for the rate directly. It then writes one PNG of
the same crop from every result (original first), with the codec, its setting, bpp and PSNR
printed under each tile, and returns the table.

Bisection assumes the rate (and PSNR) grows monotonically with the knob, which holds for the
classical codecs up to small wiggles; the answer is the best of every setting tried, so a wiggle
costs accuracy, never correctness of the reported numbers (each row is measured, not interpolated).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import Measured, get_codec, measure_decoded
from .errors import UnknownCodecError, UsageError

#: knobs tried in this order; +1: more bits when larger, -1: more bits when smaller
_KNOBS = (("quality", +1), ("crf", -1))


@dataclass(frozen=True)
class Row:
    """One codec's result nearest the target."""

    codec: str
    setting: dict[str, Any]
    measured: Measured
    recon: np.ndarray
    tries: int
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"codec": self.codec, "setting": self.setting, **self.measured.to_json(), "tries": self.tries,
                "note": self.note}


def _knob(cls: Any) -> tuple[str, int, float, float, bool] | None:
    """``(name, direction, lo, hi, integer)`` of the codec's quality knob, from its declarations."""
    declared = {p.name: p for p in (cls.params or ())}
    for name, direction in _KNOBS:
        p = declared.get(name)
        if p is not None and p.kind in ("int", "float") and p.lo is not None and p.hi is not None:
            return name, direction, float(p.lo), float(p.hi), p.kind == "int"
    return None


def _run(codec: Any, image: np.ndarray, params: dict[str, Any]) -> tuple[Measured, np.ndarray]:
    start = time.perf_counter()
    encoded = codec.encode_with_report(image, **params)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    recon = np.asarray(codec.decode(encoded.blob))
    decode_s = time.perf_counter() - start
    return measure_decoded(codec, image, encoded, encode_s=encode_s, decoded=recon, decode_s=decode_s), recon


def image_codec(name: str) -> type:
    """The image codec class named ``name``; a usage error for an unknown or non-image codec."""
    try:
        cls = get_codec(name)
    except UnknownCodecError as exc:
        raise UsageError(str(exc)) from None
    if cls.kind != "image":
        raise UsageError(f"compare works on images; '{name}' is a {cls.kind} codec")
    return cls


def nearest(name: str, image: np.ndarray, *, bpp: float | None = None, psnr: float | None = None,
            max_tries: int = 12) -> Row:
    """Measure codec ``name`` at the setting nearest ``bpp`` (or ``psnr``) on ``image``."""
    if (bpp is None) == (psnr is None):
        raise UsageError("give exactly one target: bpp or psnr")
    cls = image_codec(name)
    codec = cls()
    key, target = ("bpp", bpp) if bpp is not None else ("psnr", psnr)
    declared = {p.name for p in (cls.params or ())}
    if key == "bpp" and "target_bpp" in declared:
        m, recon = _run(codec, image, {"target_bpp": bpp})
        return Row(name, {"target_bpp": bpp}, m, recon, 1, "rate from the codec's target_bpp")
    knob = _knob(cls)
    if knob is None:
        m, recon = _run(codec, image, {})
        return Row(name, {}, m, recon, 1, "no declared quality range: default setting")
    knob_name, direction, lo, hi, integer = knob
    tried: dict[float, tuple[Measured, np.ndarray]] = {}

    def value_of(m: Measured) -> float:
        v = getattr(m, key)
        return math.inf if v is None else float(v)

    def probe(x: float) -> float:
        x = float(round(x)) if integer else x
        if x not in tried:
            setting = int(x) if integer else round(x, 3)
            tried[x] = _run(codec, image, {knob_name: setting})
        return value_of(tried[x][0])

    a, b = lo, hi
    for _ in range(max_tries):
        if integer and b - a <= 1:
            break
        if not integer and b - a <= (hi - lo) / 256:
            break
        mid = (a + b) / 2
        mid = float(math.floor(mid)) if integer else mid
        more = probe(mid) < target  # below target: move the knob towards more bits
        if (direction > 0) == more:
            a = mid
        else:
            b = mid
    for end in (a, b):  # the bracket's ends are candidates too
        if len(tried) < max_tries + 2:
            probe(end)
    best = min(tried, key=lambda x: abs(value_of(tried[x][0]) - target))
    m, recon = tried[best]
    setting = {knob_name: int(best) if integer else round(best, 3)}
    return Row(name, setting, m, recon, len(tried))


def parse_crop(text: str | None, shape: tuple[int, ...], side: int = 256) -> tuple[int, int, int, int]:
    """``WxH+X+Y`` -> ``(x, y, w, h)`` inside the image; default: up to ``side`` square at the centre."""
    h, w = shape[:2]
    if text is None:
        cw, ch = min(side, w), min(side, h)
        return (w - cw) // 2, (h - ch) // 2, cw, ch
    try:
        size, _, rest = text.partition("+")
        cw, ch = (int(v) for v in size.lower().split("x"))
        x, y = (int(v) for v in rest.split("+")) if rest else ((w - cw) // 2, (h - ch) // 2)
    except ValueError:
        raise UsageError(f"--crop must look like 256x256+100+50, got '{text}'") from None
    if cw <= 0 or ch <= 0 or x < 0 or y < 0 or x + cw > w or y + ch > h:
        raise UsageError(f"--crop {text} is not inside the {w}x{h} image")
    return x, y, cw, ch


def side_by_side(image: np.ndarray, rows: list[Row], crop: tuple[int, int, int, int], scale: int = 0) -> np.ndarray:
    """One RGB picture: the crop of the original, then of each result, labelled underneath
    (codec and setting, bpp, PSNR) in PIL's default font."""
    from PIL import Image, ImageDraw, ImageFont

    x, y, cw, ch = crop
    if not scale:
        scale = max(1, 192 // max(cw, ch))  # small crops are enlarged (nearest), so pixels stay visible
    font = ImageFont.load_default()
    tiles = [(image, ["original", f"{image.shape[1]}x{image.shape[0]}", f"crop {cw}x{ch}+{x}+{y}"])]
    for r in rows:
        setting = ", ".join(f"{k}={v}" for k, v in r.setting.items()) or "default"
        m = r.measured
        quality = "lossless" if m.lossless else (f"{m.psnr:.2f} dB PSNR" if m.psnr is not None else "")
        tiles.append((r.recon, [f"{r.codec} ({setting})", f"{m.bpp:.3f} bpp", quality]))
    line_h = 14
    pad = 6
    tw, th = cw * scale, ch * scale
    label_h = line_h * 3 + pad
    canvas = Image.new("RGB", (len(tiles) * (tw + pad) + pad, th + label_h + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (arr, lines) in enumerate(tiles):
        part = np.asarray(arr)[y:y + ch, x:x + cw]
        if part.ndim == 2:
            part = np.repeat(part[..., None], 3, axis=2)
        tile = Image.fromarray(np.ascontiguousarray(part[..., :3]).astype(np.uint8))
        if scale > 1:
            tile = tile.resize((tw, th), Image.NEAREST)
        left = pad + i * (tw + pad)
        canvas.paste(tile, (left, pad))
        for j, text in enumerate(lines):
            draw.text((left, pad + th + 4 + j * line_h), text, fill="black", font=font)
    return np.asarray(canvas)


def compare(image: np.ndarray, codecs: list[str], *, bpp: float | None = None, psnr: float | None = None) -> list[Row]:
    """:func:`nearest` for every codec in ``codecs``."""
    from .io import check_image

    image = check_image(image)
    return [nearest(name, image, bpp=bpp, psnr=psnr) for name in codecs]


def format_table(rows: list[Row], target: str) -> str:
    head = f"{'codec':<8} {'setting':<16} {'bytes':>8} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'enc s':>6} {'dec s':>6}"
    lines = [f"nearest {target}", head, "-" * len(head)]
    for r in rows:
        m = r.measured
        setting = ",".join(f"{k}={v}" for k, v in r.setting.items()) or "default"
        psnr = "lossless" if m.lossless else (f"{m.psnr:8.2f}" if m.psnr is not None else "-")
        ms = f"{m.ms_ssim:8.4f}" if m.ms_ssim is not None else "-"
        lines.append(f"{r.codec:<8} {setting:<16} {m.bytes:>8} {m.bpp:>7.3f} {psnr:>8} {ms:>8} "
                     f"{m.encode_s:>6.2f} {m.decode_s or 0:>6.2f}" + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)


def compare_cli(args: Any) -> int:
    """``neurocodec compare`` (parsed by :mod:`neurocodec.cli`)."""
    import json
    import sys
    from pathlib import Path

    from . import io as nio

    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    if not names:
        raise UsageError("--codecs needs at least one codec name")
    for name in names:  # every name checked before any work
        image_codec(name)
    if args.bpp is not None and not args.bpp > 0:
        raise UsageError(f"--bpp must be > 0, got {args.bpp}")
    output = args.output or str(Path(args.input).with_name(Path(args.input).stem + "-compare.png"))
    if Path(output).suffix.lower() != ".png":
        raise UsageError(f"compare writes a PNG picture; '{output}' is not .png")
    nio.refuse_overwriting_input(args.input, output)
    image = nio.check_image(nio.read_any(args.input))
    crop = parse_crop(args.crop, image.shape)
    rows = []
    from tqdm.auto import tqdm

    for name in tqdm(names, desc="compare", unit="codec", disable=args.quiet, file=sys.stderr):
        rows.append(nearest(name, image, bpp=args.bpp, psnr=args.psnr))
    nio.write_image(output, side_by_side(image, rows, crop))
    target = f"{args.bpp} bpp" if args.bpp is not None else f"{args.psnr} dB PSNR"
    if args.json:
        print(json.dumps({"input": args.input, "picture": output, "target": {"bpp": args.bpp, "psnr": args.psnr},
                          "crop": dict(zip(("x", "y", "width", "height"), crop)),
                          "rows": [r.to_json() for r in rows]}, indent=2, allow_nan=False))
    else:
        print(format_table(rows, target))
        if not args.quiet:
            print(f"side-by-side picture: {output}", file=sys.stderr)
    sys.stdout.flush()
    return 0
