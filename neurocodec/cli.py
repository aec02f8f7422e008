"""``neurocodec`` command line: parses arguments, calls the library, maps errors to exit codes.

Exit codes: 0 success, 2 usage error, 3 bad or corrupt input, 1 anything else. Errors print one
line on stderr; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import container as ncx
from .codec import describe_codec, describe_codecs, get_codec
from .errors import InputError, NeurocodecError, UnknownCodecError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3

# Modules that add their own subcommands with add_commands(subparsers, common), with the commands
# each adds and their one-line help. Why a static table: importing a wing's cli module can import
# torch (seconds), and `neurocodec --help`, `codecs`, `info` or a png encode must not pay for it.
# A module is imported only when one of its commands is used; tests/test_cli.py checks this table
# against what the modules really add. Modules missing from a build are left out.
_EXTENSIONS: dict[str, dict[str, str]] = {
    "neurocodec.codecs.pc.cli": {"pc": "probabilistic-circuit codec tools"},
    "neurocodec.codecs.ldm.cli": {
        "upsample": "resize an image to any scale (LIIF or latent diffusion)",
        "generate": "sample an image from the latent diffusion model",
        "ldm": "ldm model tools",
    },
    "neurocodec.codecs.kvb.cli": {"kvb": "discrete key-value bottleneck: fit, learn, predict"},
    "neurocodec.codecs.hnerv.cli": {"hnerv": "video-as-a-network codecs (hnerv, nerv) tools"},
    "neurocodec.bench.cli": {"bench": "run a benchmark suite (writes <results>/<suite>/...)",
                             "plot": "draw RD curves and print a BD-rate table"},
}

# `encode -o FILE.EXT`: extensions written as the codec's own format (the payload of its single
# section, no .ncx header), with the codecs that have that format
RAW_OUTPUTS: dict[str, tuple[str, ...]] = {
    ".png": ("png",), ".webp": ("webp",), ".jxl": ("jpegxl",), ".jpg": ("jpeg",), ".jpeg": ("jpeg",),
    ".avif": ("avif",),
    ".h264": ("x264",), ".264": ("x264",), ".hevc": ("x265",), ".h265": ("x265",), ".265": ("x265",),
    ".obu": ("svtav1",), ".ivf": ("svtav1",),
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so every error takes one path."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def parse_value(text: str) -> Any:
    """``--param`` values: JSON where it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: list[str] | None, raw: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` items. With ``raw`` the values stay strings: the codec's declarations convert
    them (and name the parameter when they cannot)."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, got '{item}'")
        params[key.replace("-", "_")] = value if raw else parse_value(value)
    return params


# encode flags that are shorthands for a declared parameter
_FLAG_PARAMS = (("quality", "quality", "--quality"), ("bpp", "target_bpp", "--bpp"), ("size", "target_bytes", "--size"))


def encode_params(codec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The parameters of an encode: ``--param`` items plus the shorthand flags, refused with the
    flag's own name when the codec has no such parameter."""
    declared = type(codec).params
    params = parse_params(args.param, raw=declared is not None)
    accepted = {p.name for p in declared} if declared is not None else \
        set(inspect.signature(codec.compress).parameters)
    for flag, key, shown in _FLAG_PARAMS:
        value = getattr(args, flag)
        if value is None:
            continue
        if key not in accepted:
            raise UsageError(f"codec '{codec.name}' has no {shown} (no '{key}' parameter); "
                             f"its parameters: {', '.join(sorted(accepted - {'self', 'data', 'progress'})) or 'none'}")
        params[key] = parse_bytes(value) if flag == "size" else value
    if declared is not None:  # validate before the input is even read
        from .params import bind

        bind(declared, params, f"codec '{codec.name}'")
    return params


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"size must look like 640x480, got '{text}'") from None
    if w <= 0 or h <= 0:
        raise UsageError("size must be positive")
    return w, h


def parse_frames(text: str) -> tuple[int | None, int | None]:
    """``a:b`` (either side may be empty) -> (a, b)."""
    start, sep, stop = text.partition(":")
    if not sep:
        raise UsageError(f"--frames expects a:b, got '{text}'")
    try:
        return (int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise UsageError(f"--frames expects integers, got '{text}'") from None


def parse_bytes(text: str) -> int:
    """``20000``, ``20k``, ``1.5M`` -> bytes."""
    units = {"k": 1000, "m": 1000**2, "g": 1000**3}
    t = text.strip().lower().rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise UsageError(f"size must be a byte count like 20000 or 20k, got '{text}'") from None


def _report(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


# -------------------------------------------------------------------------------- commands
def _busy(desc: str, enabled: bool) -> Any:
    """A tqdm ticker (elapsed time, on stderr) for a step that reports no progress of its own; it
    appears only once the step has run for 2 s, so quick steps stay silent."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    return _Ticker(desc)


class _Ticker:
    """Elapsed time on stderr, drawn by a background thread from 2 s on."""

    def __init__(self, desc: str, delay: float = 2.0) -> None:
        self.desc, self.delay, self.bar = desc, delay, None

    def __enter__(self) -> "_Ticker":
        import threading

        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)
        self.thread.start()
        return self

    def _tick(self) -> None:
        if self.stop.wait(self.delay):
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(desc=self.desc, total=None, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False,
                        delay=1e-3)  # a delay: no drawing before start_t is moved back
        self.bar.start_t -= self.delay  # count from the step's start
        self.bar.refresh()
        while not self.stop.wait(0.5):
            self.bar.refresh()

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        if self.bar is not None:
            self.bar.close()


def _accepts(method: Any, declared: Any, name: str) -> bool:
    """Whether a codec method takes keyword ``name`` (declared options, else its signature)."""
    if declared is not None and any(p.name == name for p in declared):
        return True
    params = inspect.signature(method).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def output_plan(output: str, codec_name: str) -> str:
    """``"ncx"`` or ``"raw"`` for an encode's output path; refuses (before any work) an extension
    that is neither ``.ncx`` nor the codec's own format."""
    suffix = Path(output).suffix.lower()
    if suffix == ".ncx":
        return "ncx"
    if codec_name in RAW_OUTPUTS.get(suffix, ()):
        return "raw"
    own = sorted(ext for ext, names in RAW_OUTPUTS.items() if codec_name in names)
    hint = f" or {', '.join(own)} (the codec's own format)" if own else ""
    what = f"'{suffix}'" if suffix else "no extension"
    raise UsageError(f"output '{output}' has {what}: codec '{codec_name}' writes .ncx{hint}")


def raw_payload(box: "ncx.Container", codec_name: str, output: str) -> bytes:
    """The codec's own file for a raw output: the payload of its one section (a single image or
    one stream); refused where the .ncx header holds something the raw file cannot."""
    sections = box.sections
    header = box.header
    if len(sections) != 1:
        raise UsageError(f"{codec_name} made {len(sections)} sections (a batch): only a single image or stream "
                         f"can be written as '{Path(output).suffix}'; write .ncx")
    coded = header.get("coded_size")
    shape = header.get("shape")
    if coded and shape and list(coded) != list(shape[1:3]):
        raise UsageError(f"{codec_name}: frames of {shape[2]}x{shape[1]} were padded to {coded[1]}x{coded[0]} "
                         f"for 4:2:0; the raw stream would carry the padding: write .ncx")
    payload = next(iter(sections.values()))
    if Path(output).suffix.lower() == ".ivf":  # SVT-AV1 makes a low-overhead OBU stream: put it in IVF
        payload = _remux(payload, "obu", "ivf")
    return payload


def _remux(payload: bytes, fmt_in: str, fmt_out: str) -> bytes:
    import subprocess

    from .codecs.classical import ffmpeg_exe

    run = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", fmt_in, "-i", "pipe:0", "-c", "copy", "-f", fmt_out,
                          "pipe:1"], input=payload, capture_output=True)
    if run.returncode != 0:
        raise NeurocodecError(f"ffmpeg could not put the stream into {fmt_out}: "
                              f"{run.stderr.decode(errors='replace').strip()[-300:]}")
    return run.stdout


def slice_frames(data: Any, frames: tuple[int | None, int | None], what: str) -> Any:
    """``data[a:b]`` along the first axis (frames of a clip, images of a batch), refused when empty."""
    import numpy as np

    arr = np.asarray(data)
    if arr.ndim < 4:
        raise UsageError(f"--frames needs a video or a batch of images; {what} has shape {arr.shape}")
    out = arr[slice(*frames)]
    if out.shape[0] == 0:
        raise UsageError(f"--frames {frames[0] if frames[0] is not None else ''}:"
                         f"{frames[1] if frames[1] is not None else ''} selects no frames of {arr.shape[0]}")
    return out


def cmd_encode(args: argparse.Namespace) -> int:
    from . import io as nio
    from .codec import measure_decoded

    try:
        codec = get_codec(args.codec)()
    except UnknownCodecError as exc:  # a name typed on the command line is a usage error
        raise UsageError(str(exc)) from None
    params = encode_params(codec, args)
    output = args.output or str(Path(args.input).with_suffix(".ncx"))
    plan = output_plan(output, codec.name)
    frames = parse_frames(args.frames) if args.frames is not None else None
    refuse_overwriting_input(args.input, output)
    suffix = Path(args.input).suffix.lower()
    # a clip cut at a non-negative end need not be decoded past it
    max_frames = frames[1] if frames is not None and frames[1] is not None and frames[1] >= 0 \
        and (frames[0] is None or frames[0] >= 0) else None
    if suffix in nio.VIDEO_EXTENSIONS and max_frames is not None:
        data = nio.read_video(args.input, max_frames=max_frames)
    else:
        data = nio.read_any(args.input)
    if frames is not None:
        data = slice_frames(data, frames, args.input)
    if codec.kind == "video" and "fps" not in params and suffix in nio.VIDEO_EXTENSIONS:
        if _accepts(codec.compress, type(codec).params, "fps"):
            params["fps"] = nio.video_fps(args.input)
    show = not args.quiet
    # the classical codecs report no progress of their own (a lossless WebP encode takes seconds)
    own_bar = not type(codec).__module__.endswith(".classical")
    start = time.perf_counter()
    with _busy(f"encoding ({codec.name})", show and not own_bar):
        encoded = codec.encode_with_report(data, progress=show, **params)
    elapsed = time.perf_counter() - start
    blob = encoded.blob
    if args.no_measure:
        measured = None
    else:
        with _busy(f"decoding to measure ({codec.name})", show):
            measured = measure_decoded(codec, data, encoded, encode_s=elapsed, params=params)
    written = blob if plan == "ncx" else raw_payload(ncx.unpack(blob), codec.name, output)
    nio.write_bytes_atomic(output, written)
    summary = _summary(codec, data, blob, measured, encoded.report, elapsed)
    if plan == "raw":  # the rate of the file written (no .ncx header); the .ncx size beside it
        from .metrics import bpd, bpp

        summary["ncx_bytes"] = summary["bytes"]
        summary["bytes"] = len(written)
        shape = summary["shape"]
        summary["bpp"] = bpp(len(written), shape) if summary["bpp"] is not None else None
        summary["bpd"] = bpd(len(written), shape) if summary["bpd"] is not None else None
    if args.json:
        doc = {"input": args.input, "output": output, "format": "ncx" if plan == "ncx" else Path(output).suffix[1:],
               **summary}
        print(json.dumps(doc, indent=2, default=str, allow_nan=False))
        sys.stdout.flush()
    else:
        _report(args, f"{args.input} -> {output}: {_summary_line(summary, len(written), plan)}")
    return EXIT_OK


def _summary(codec: Any, data: Any, blob: bytes, measured: Any, report: Any, elapsed: float) -> dict[str, Any]:
    """The measurements of one encode as a JSON-safe dict (``--json`` prints it; the summary line
    is written from it)."""
    from .metrics import bpd, bpp

    shape = tuple(getattr(data, "shape", ()) or ())
    if measured is not None:
        out = measured.to_json()
    else:
        out = {"codec": codec.name, "bytes": len(blob),
               "bpp": bpp(len(blob), shape) if codec.kind in ("image", "video") and len(shape) >= 2 else None,
               "bpd": bpd(len(blob), shape) if shape else None, "psnr": None, "ms_ssim": None, "psnr_yuv": None,
               "lossless": None, "encode_s": elapsed, "decode_s": None}
    out["kind"] = codec.kind
    out["shape"] = list(shape)
    if codec.kind not in ("image", "video") and shape:
        out["bits_per_sample"] = 8 * len(blob) / shape[0]
    psnr = report.get("psnr") if hasattr(report, "get") else None
    if out.get("psnr") is None and isinstance(psnr, (int, float)):
        out["psnr"] = float(psnr)  # what a learning codec reports reaching (when not measured here)
        out["psnr_from"] = "encoder report"
    clean = {}
    for k, v in dict(report or {}).items():
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            continue
        clean[k] = v
    out["report"] = clean
    return out


def _summary_line(s: dict[str, Any], written: int, plan: str) -> str:
    parts = [f"{written} bytes" + ("" if plan == "ncx" else
                                   f" ({s['codec']}'s own format, no .ncx header; {s['ncx_bytes']} as .ncx)")]
    if s.get("bpp") is not None:
        parts.append(f"{s['bpp']:.4f} bpp")
    if s.get("bpd") is not None:
        parts.append(f"{s['bpd']:.4f} bpd")
    if s.get("bits_per_sample") is not None:
        parts.append(f"{s['bits_per_sample']:.1f} bits per sample")
    if s.get("lossless"):
        parts.append("lossless, verified")
    else:
        if s.get("psnr") is not None:
            parts.append(f"{s['psnr']:.2f} dB PSNR" + (" (encoder's report)" if s.get("psnr_from") else ""))
        if s.get("psnr_yuv") is not None:
            parts.append(f"{s['psnr_yuv']:.2f} dB PSNR-YUV")
        if s.get("ms_ssim") is not None:
            parts.append(f"{s['ms_ssim']:.4f} MS-SSIM")
    report = s.get("report") or {}
    if report.get("model_choice") == "auto" and report.get("model"):
        parts.append(f"model '{report['model']}' (chosen for this input)")
    times = f"{s['encode_s']:.2f} s encode" + (f", {s['decode_s']:.2f} s decode" if s.get("decode_s") else "")
    line = f"{', '.join(parts)} ({times}, {s['codec']})"
    # what the codec wants the user to know: a raw fallback, a restarted or short fit, a missed target
    notes = ([report["note"]] if isinstance(report.get("note"), str) else []) + \
        [w for w in report.get("warnings") or () if isinstance(w, str)]
    return line + "".join(f"\n  note: {n}" for n in notes)


def refuse_overwriting_input(source: str, output: str) -> None:
    """:func:`neurocodec.io.refuse_overwriting_input` (kept here for callers of the CLI module)."""
    from .io import refuse_overwriting_input as refuse

    refuse(source, output)


def cmd_decode(args: argparse.Namespace) -> int:
    from . import io as nio

    refuse_overwriting_input(args.input, args.output)
    nio.check_output_format(args.output, lossless=args.lossless, pix_fmt=args.pix_fmt)  # before any work
    blob = nio.read_bytes(args.input)
    box = ncx.unpack(blob)
    codec = get_codec(box.codec)()
    declared = type(codec).options
    options: dict[str, Any] = parse_params(args.param)
    if args.scale is not None:
        options["scale"] = args.scale
    if args.size is not None:
        options["size"] = parse_size(args.size)
    if args.refine is not None:
        options["refine"] = args.refine
    frames = parse_frames(args.frames) if args.frames is not None else None
    slice_after = False
    if frames is not None:
        if _accepts(codec.decompress, declared, "frames"):
            options["frames"] = frames
        elif codec.kind == "video":
            slice_after = True  # decoders without random access (x264, x265, SVT-AV1): decode all, then cut
        else:
            raise UsageError(f"--frames is for video codecs; '{box.codec}' is a {codec.kind} codec")
    show = not args.quiet
    if show and _accepts(codec.decompress, declared, "progress"):
        options.setdefault("progress", True)
        show_ticker = False
    else:
        show_ticker = show
    start = time.perf_counter()
    with _busy(f"decoding ({box.codec})", show_ticker):
        data = codec.decode(box, **options)
    if slice_after:
        data = slice_frames(data, frames, args.input)
    elapsed = time.perf_counter() - start
    with _busy(f"writing {Path(args.output).name}", show):
        nio.write_any(args.output, data, fps=float(box.header.get("fps", 25.0)), lossless=args.lossless,
                      pix_fmt=args.pix_fmt)
    if hasattr(data, "_asdict"):
        what = ", ".join(f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in data._asdict().items())
    else:
        what = str(tuple(getattr(data, "shape", ())))
    _report(args, f"{args.input} -> {args.output}: {box.codec} {what} ({elapsed:.2f} s)")
    return EXIT_OK


def describe(blob: bytes) -> dict[str, Any]:
    """What ``neurocodec info`` prints: container fields, section sizes and the rate."""
    from .metrics import bpd, bpp

    box = ncx.unpack(blob)
    info: dict[str, Any] = {
        "codec": box.codec,
        "codec_version": box.codec_version,
        "format_version": ".".join(map(str, box.format_version)),
        "file_bytes": len(blob),
        "sections": box.payload_bytes,
        "header_bytes": len(blob) - sum(box.payload_bytes.values()),
        "header": box.header,
    }
    shape = box.header.get("shape")
    if shape is None and box.codec in describe_codecs():  # a compact header: its codec knows the shape
        try:
            shape = get_codec(box.codec).full_header(box.header).get("shape")
        except NeurocodecError:
            shape = None
    if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
        try:
            kind = describe_codec(box.codec).kind  # read from the registry's source: no torch for info
        except NeurocodecError:
            kind = "image"
        if kind in ("image", "video") and len(shape) >= 2:
            info["bpp"] = bpp(len(blob), shape)
        info["bpd"] = bpd(len(blob), shape)
    return info


def cmd_info(args: argparse.Namespace) -> int:
    from . import io as nio

    print(json.dumps(describe(nio.read_bytes(args.input)), indent=2))
    sys.stdout.flush()  # a closed pipe surfaces here, inside main's handler, not at exit
    return EXIT_OK


def cmd_codecs(args: argparse.Namespace) -> int:
    if args.name:
        try:
            cls = get_codec(args.name)
        except UnknownCodecError as exc:
            raise UsageError(str(exc)) from None
        print(codec_help(cls))
        return EXIT_OK
    for name, info in sorted(describe_codecs().items()):
        print(f"{name:<8} {info.kind:<15} v{info.version}  {info.description}")
    sys.stdout.flush()
    print("\n`neurocodec codecs NAME` lists a codec's parameters.", file=sys.stderr)
    return EXIT_OK


def codec_help(cls: Any) -> str:
    """A codec's description and its parameter tables (``codecs NAME``, ``encode --codec NAME --help``)."""
    from .params import table

    lines = [f"{cls.name} ({cls.kind}, bitstream v{cls.version}): {cls.description}", "", "encode parameters (--param KEY=VALUE):"]
    if cls.params is None:
        sig = inspect.signature(cls.compress)
        lines += [f"  {n} = {p.default!r}" for n, p in sig.parameters.items()
                  if n not in ("self", "data", "progress") and p.kind is p.KEYWORD_ONLY]
    else:
        lines += ["  " + line for line in table(cls.params).splitlines()]
    if cls.options:
        lines += ["", "decode options (decode --param KEY=VALUE):"] + ["  " + line for line in table(cls.options).splitlines()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- parser
def _wing_available(module_name: str) -> bool:
    """Whether a wing's cli module is part of this build, found without importing its package."""
    root = Path(__file__).resolve().parent
    return root.joinpath(*module_name.split(".")[1:]).with_suffix(".py").is_file()


def _thread_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError(f"--threads takes a whole number of threads 1..1024, got {text!r}")
    return n


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line. The wing modules (and what they import) are loaded only for the command
    ``argv`` names; every other wing command is a placeholder with its help line, so ``--help``
    lists them all. ``argv=None`` loads every wing (the full parser, for tests and docs)."""
    from . import __version__

    parser = _Parser(prog="neurocodec", description="Neural and classical codecs behind one container (.ncx).")
    parser.add_argument("--version", action="version", version=f"neurocodec {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--threads", type=_thread_count, default=None, metavar="N",
                        help="threads for neurocodec's own compute (sets NEUROCODEC_THREADS; default: the cores "
                             "other work leaves idle for decoding, one for training, whose results depend on it)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("encode", parents=[common], help="encode a file to .ncx (or the codec's own format)")
    p.add_argument("input", help="image, video, .npy array or folder of images")
    p.add_argument("-o", "--output",
                   help="output .ncx (default: input name with .ncx), or the codec's own format for a single image "
                        "or stream: " + ", ".join(f"{e} ({'/'.join(c)})" for e, c in RAW_OUTPUTS.items()))
    p.add_argument("-c", "--codec", required=True, help="codec name (see `neurocodec codecs`; "
                                                         "`encode --codec NAME --help` lists its parameters)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="codec parameter (repeatable)")
    p.add_argument("--quality", type=int, help="quality preset (codec-specific range)")
    p.add_argument("--bpp", type=float, help="target bits per pixel (codecs with a target_bpp parameter)")
    p.add_argument("--size", help="target file size in bytes (20000, 20k, 1.5M; codecs with target_bytes)")
    p.add_argument("--frames", help="encode only frames a:b of a video or images a:b of a batch (Python slice)")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON on stdout")
    p.add_argument("--no-measure", action="store_true",
                   help="skip the decode after encoding that measures PSNR/MS-SSIM (or checks a lossless result)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", parents=[common], help="decode a .ncx file")
    p.add_argument("input", help=".ncx file")
    p.add_argument("-o", "--output", required=True,
                   help="output; format from the extension (.npy, .npz, .png, .y4m, .mp4, or a folder for PNG frames)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="decode option (repeatable)")
    p.add_argument("--scale", type=float, help="render at this scale (arbitrary-scale codecs)")
    p.add_argument("--size", help="render at WxH (arbitrary-scale codecs)")
    p.add_argument("--refine", choices=("none", "diffusion"),
                   help="ldm: diffusion = a generative decode at 2x or more (latent diffusion adds the detail the "
                        "bits do not hold; sharper, lower PSNR; --param steps=/seed=/strength=)")
    p.add_argument("--frames", help="decode only frames a:b (every video codec; x264/x265/svtav1 decode the whole "
                                    "clip and keep a:b, having no random access)")
    p.add_argument("--lossless", action="store_true",
                   help=".mp4/.mkv: exact RGB (H.264 4:4:4 RGB, which many players refuse) instead of the default "
                        "yuv420p H.264 at crf 12 that plays everywhere")
    p.add_argument("--pix-fmt", choices=("420", "444"), default=None,
                   help=".y4m: chroma subsampling (default 444; 420 for tools that read only 4:2:0)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", parents=[common], help="print a .ncx header as JSON")
    p.add_argument("input", help=".ncx file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("codecs", parents=[common], help="list the codecs available here, or one codec's parameters")
    p.add_argument("name", nargs="?", help="a codec: show its parameters with types, defaults and ranges")
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("compare", parents=[common], help="several codecs at one rate or quality, side by side",
                       description="For each codec find the setting nearest the target (bisection over its quality "
                                   "parameter, or its target_bpp), write one labelled side-by-side PNG of a crop and "
                                   "print a table.")
    p.add_argument("input", help="image file")
    p.add_argument("--codecs", required=True, help="comma-separated codec names, e.g. jpeg,webp,jpegxl,ldm")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--bpp", type=float, help="target rate in bits per pixel")
    target.add_argument("--psnr", type=float, help="target PSNR-RGB in dB")
    p.add_argument("-o", "--output", help="side-by-side PNG (default: INPUT-compare.png)")
    p.add_argument("--crop", help="crop WxH+X+Y of the picture (default: up to 256x256 at the centre)")
    p.add_argument("--json", action="store_true", help="print the table as JSON on stdout")
    p.set_defaults(func=cmd_compare)

    command = next((a for a in (argv or []) if not a.startswith("-")), None) if argv is not None else None
    for module_name, commands in _EXTENSIONS.items():
        if not _wing_available(module_name):
            continue
        if argv is None or command in commands:
            module = importlib.import_module(module_name)
            # add_commands(subparsers[, common]): common is the parent parser with --quiet/--debug
            if len(inspect.signature(module.add_commands).parameters) >= 2:
                module.add_commands(sub, common)
            else:
                module.add_commands(sub)
        else:
            for name, help_text in commands.items():  # a placeholder: never parsed, only listed
                sub.add_parser(name, help=help_text, add_help=False)
    return parser


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_cli

    return compare_cli(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser(argv)
        if _codec_help_requested(argv):
            return EXIT_OK
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version: argparse exits; main returns
            sys.stdout.flush()
            return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else EXIT_USAGE
        if not getattr(args, "command", None) or not hasattr(args, "func"):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if getattr(args, "threads", None) is not None:
            # the library's setting (runtime.default_threads), for this command's process only
            os.environ["NEUROCODEC_THREADS"] = str(args.threads)
        return int(args.func(args) or 0)
    except UsageError as exc:
        return _fail(exc, EXIT_USAGE, debug)
    except InputError as exc:
        return _fail(exc, EXIT_INPUT, debug)
    except NeurocodecError as exc:
        return _fail(exc, EXIT_ERROR, debug)
    except KeyboardInterrupt:
        print("neurocodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `neurocodec info x.ncx | head`: the reader left; end quietly like other Unix tools
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into one line
        return _fail(exc, EXIT_ERROR, debug, prefix="internal error: ")


def _codec_help_requested(argv: list[str]) -> bool:
    """``encode --codec NAME --help``: argparse's help, then NAME's parameter table."""
    if not argv or argv[0] != "encode" or not {"-h", "--help"} & set(argv):
        return False
    name = None
    for i, item in enumerate(argv):
        if item in ("-c", "--codec") and i + 1 < len(argv):
            name = argv[i + 1]
        elif item.startswith("--codec="):
            name = item.split("=", 1)[1]
    if name is None:
        return False
    try:
        cls = get_codec(name)
    except UnknownCodecError as exc:
        raise UsageError(str(exc)) from None
    build_parser(["encode"])._subparsers._group_actions[0].choices["encode"].print_help()  # noqa: SLF001
    print()
    print(codec_help(cls))
    return True


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would print a second BrokenPipeError
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fail(exc: BaseException, code: int, debug: bool, prefix: str = "") -> int:
    if debug:
        import traceback

        traceback.print_exception(exc)
    message = str(exc) or type(exc).__name__
    hint = "" if debug or not prefix else " (run with --debug for the traceback)"
    print(f"neurocodec: error: {prefix}{message}{hint}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
