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
from .codec import get_codec, list_codecs
from .errors import InputError, NeurocodecError, UnknownCodecError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3

# Modules that add their own subcommands with add_commands(subparsers); missing ones are skipped.
_EXTENSIONS = (
    "neurocodec.codecs.pc.cli",
    "neurocodec.codecs.ldm.cli",
    "neurocodec.codecs.kvb.cli",
    "neurocodec.codecs.hnerv.cli",
    "neurocodec.bench.cli",
)


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
def cmd_encode(args: argparse.Namespace) -> int:
    from . import io as nio
    from .metrics import bpd, bpp

    try:
        codec = get_codec(args.codec)()
    except UnknownCodecError as exc:  # a name typed on the command line is a usage error
        raise UsageError(str(exc)) from None
    params = encode_params(codec, args)
    data = nio.read_any(args.input)
    if codec.kind == "video" and "fps" not in params and Path(args.input).suffix.lower() in nio.VIDEO_EXTENSIONS:
        if "fps" in inspect.signature(codec.compress).parameters:
            params["fps"] = nio.video_fps(args.input)
    output = args.output or str(Path(args.input).with_suffix(".ncx"))
    refuse_overwriting_input(args.input, output)
    start = time.perf_counter()
    encoded = codec.encode_with_report(data, progress=not args.quiet, **params)
    blob = encoded.blob
    elapsed = time.perf_counter() - start
    nio.write_bytes_atomic(output, blob)
    shape = getattr(data, "shape", ())
    rate = ""
    if codec.kind in ("image", "video") and len(shape) >= 2:
        rate = f"{bpp(len(blob), shape):.4f} bpp, {bpd(len(blob), shape):.4f} bpd"
    elif shape:
        rate = f"{8 * len(blob) / shape[0]:.1f} bits per sample"
    psnr = encoded.report.get("psnr")
    if isinstance(psnr, (int, float)):
        rate += f", {psnr:.2f} dB PSNR"  # codecs that learn report the quality they reached
    _report(args, f"{args.input} -> {output}: {len(blob)} bytes{', ' + rate if rate else ''} ({elapsed:.2f} s, {codec.name})")
    return EXIT_OK


def refuse_overwriting_input(source: str, output: str) -> None:
    """Refuse an output that is the input itself (same path, a ``./`` alias, a symlink or a hard
    link to it): atomic writes would replace the user's data with our bytes. Checked before any work."""
    src, out = Path(source), Path(output)
    if not out.exists() or not src.exists():
        return
    try:
        same = os.path.samefile(src, out)
    except OSError:
        same = src.resolve() == out.resolve()
    if same:
        raise UsageError(f"output '{output}' is the input '{source}': refusing to overwrite it")


def cmd_decode(args: argparse.Namespace) -> int:
    from . import io as nio

    refuse_overwriting_input(args.input, args.output)
    blob = nio.read_bytes(args.input)
    box = ncx.unpack(blob)
    codec = get_codec(box.codec)()
    options: dict[str, Any] = parse_params(args.param)
    if args.scale is not None:
        options["scale"] = args.scale
    if args.size is not None:
        options["size"] = parse_size(args.size)
    if args.frames is not None:
        options["frames"] = parse_frames(args.frames)
    start = time.perf_counter()
    data = codec.decode(box, **options)
    elapsed = time.perf_counter() - start
    nio.write_any(args.output, data, fps=float(box.header.get("fps", 25.0)))
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
    if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
        try:
            kind = get_codec(box.codec).kind
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
    for name, cls in sorted(list_codecs().items()):
        print(f"{name:<8} {cls.kind:<15} v{cls.version}  {cls.description}")
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
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="neurocodec", description="Neural and classical codecs behind one container (.ncx).")
    parser.add_argument("--version", action="version", version=f"neurocodec {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("encode", parents=[common], help="encode a file to .ncx")
    p.add_argument("input", help="image, video, .npy array or folder of images")
    p.add_argument("-o", "--output", help="output .ncx (default: input name with .ncx)")
    p.add_argument("-c", "--codec", required=True, help="codec name (see `neurocodec codecs`)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="codec parameter (repeatable)")
    p.add_argument("--quality", type=int, help="quality preset (codec-specific range)")
    p.add_argument("--bpp", type=float, help="target bits per pixel")
    p.add_argument("--size", help="target file size in bytes (20000, 20k, 1.5M)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", parents=[common], help="decode a .ncx file")
    p.add_argument("input", help=".ncx file")
    p.add_argument("-o", "--output", required=True,
                   help="output; format from the extension (.npy, .npz, .png, .y4m, .mp4, or a folder for PNG frames)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="decode option (repeatable)")
    p.add_argument("--scale", type=float, help="render at this scale (arbitrary-scale codecs)")
    p.add_argument("--size", help="render at WxH (arbitrary-scale codecs)")
    p.add_argument("--frames", help="decode only frames a:b (video codecs)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", parents=[common], help="print a .ncx header as JSON")
    p.add_argument("input")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("codecs", parents=[common], help="list the codecs available here, or one codec's parameters")
    p.add_argument("name", nargs="?", help="a codec: show its parameters with types, defaults and ranges")
    p.set_defaults(func=cmd_codecs)

    for module_name in _EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that codec (or the bench harness) is not part of this build
            raise
        # add_commands(subparsers[, common]): common is the parent parser with --quiet/--debug
        if len(inspect.signature(module.add_commands).parameters) >= 2:
            module.add_commands(sub, common)
        else:
            module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
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
    build_parser()._subparsers._group_actions[0].choices["encode"].print_help()  # noqa: SLF001
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
