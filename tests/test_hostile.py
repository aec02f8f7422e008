"""A hostile user at the command line: forged and mutated files of every codec, absurd sizes, bad
values, output onto input; every answer must be exit 0 (a correct decode), 2 (usage) or 3 (input)
with one line on stderr, never a traceback and never ``internal error`` (exit 1).

Why a test file that is also a script: the pass needs a small real input per codec encoded through
the CLI, then a few hundred CLI runs on files derived from it. Run as a script it does the whole
pass with a fresh ``neurocodec`` process per command (the user's view, imports and exit codes
included) and prints a table of what failed::

    .venv/bin/python tests/test_hostile.py                 # every codec, every mutation (minutes)
    .venv/bin/python tests/test_hostile.py --codecs png,kvb --in-process

Under pytest (the fast part) the same cases run in-process through :func:`neurocodec.cli.main`,
which maps errors to exit codes exactly as the ``neurocodec`` command does, for every codec with
the parameter sweep cut to one wrong value per parameter; one real subprocess per check kind
confirms that the in-process answers are the command's. It lives in ``tests/`` and not in
``benchmarks/`` because it measures nothing: it is a pass/fail check of the CLI, and it needs the
checkout's test data layout, not an installed wheel's.
"""
from __future__ import annotations

import argparse
import contextlib
import io as _io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # under pytest; the script runs without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

import cases
from neurocodec import container as ncx
from neurocodec.codec import _REGISTRY, get_codec

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")

#: the file :func:`make_inputs` writes for each input source of tests/cases.py
SOURCE_FILES: dict[str, str] = {"photo": "photo.png", "clip": "clip.npy", "digits": "digits.npy"}
#: codec -> (input file made by :func:`make_inputs`, encode --param items): small and real
CASES: dict[str, tuple[str, list[str]]] = {
    codec: (src, [f"{key}={value}" for key, value in params.items()])
    for codec, (src, params) in cases.cases(SOURCE_FILES).items()
}

#: codec -> why it may fail here: other owners' decoders (marked, not hidden; see the report)
KNOWN_WEAK: dict[str, str] = {}


def make_inputs(folder: Path) -> dict[str, Path]:
    """The small real inputs: a 32x32 photo crop (PNG), a 3-frame 16x24 clip and 3 digits (.npy)."""
    from neurocodec.io import write_image

    paths = {}
    for source, data in cases.sources().items():
        name = SOURCE_FILES[source]
        paths[name] = folder / name
        if name.endswith(".png"):
            write_image(paths[name], data)
        else:
            np.save(paths[name], np.ascontiguousarray(data))
    return paths


# ------------------------------------------------------------------------------ running the CLI
@dataclass
class Result:
    code: int
    stderr: str
    seconds: float


def run_subprocess(argv: list[str]) -> Result:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "neurocodec.cli", *argv], capture_output=True, text=True, env=ENV,
                          timeout=600)
    return Result(proc.returncode, proc.stderr, time.perf_counter() - start)


def run_in_process(argv: list[str]) -> Result:
    from neurocodec.cli import main

    err, out = _io.StringIO(), _io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return Result(int(code), err.getvalue(), time.perf_counter() - start)


@dataclass
class Report:
    """What went wrong, one line per failed check."""

    failures: list[str] = field(default_factory=list)
    checks: int = 0

    def expect(self, what: str, result: Result, codes: set[int], mention: str | None = None) -> None:
        self.checks += 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        problems = []
        if result.code not in codes:
            problems.append(f"exit {result.code}, expected {sorted(codes)}")
        if "Traceback" in result.stderr or "internal error" in result.stderr:
            problems.append("traceback / internal error")
        if result.code != 0 and (len(lines) != 1 or not lines[0].startswith("neurocodec: error: ")):
            problems.append(f"{len(lines)} stderr lines, expected one 'neurocodec: error:' line")
        if mention is not None and result.code != 0 and mention not in result.stderr:
            problems.append(f"the message does not name {mention!r}")
        if problems:
            tail = result.stderr.strip().splitlines()[-1:] or [""]
            self.failures.append(f"{what}: {'; '.join(problems)}: {tail[0][:300]}")


# ----------------------------------------------------------------------------- hostile files
def forged(box: ncx.Container, **changes: Any) -> bytes:
    """``box`` with fields replaced, packed again: CRCs recomputed, as a hostile writer would."""
    parts = {"codec": box.codec, "codec_version": box.codec_version, "header": box.header, "sections": box.sections}
    parts.update(changes)
    return ncx.pack(ncx.Container(parts["codec"], parts["codec_version"], parts["header"], parts["sections"]))


def scaled_shape(header: dict, factor: int) -> dict:
    shape = header.get("shape")
    return {**header, "shape": [int(v) * factor for v in shape]} if isinstance(shape, list) else header


def mutated_files(box: ncx.Container, blob: bytes) -> Iterator[tuple[str, bytes, set[int]]]:
    """(label, file bytes, accepted exit codes of ``decode``) for one codec's valid file."""
    for other in sorted(_REGISTRY):
        if other != box.codec:
            yield f"renamed {other}", forged(box, codec=other, codec_version=get_codec(other).version), {0, 2, 3}
    yield "absurd size x1024", forged(box, header=scaled_shape(box.header, 1024)), {3}
    yield "absurd size x2^20", forged(box, header=scaled_shape(box.header, 1 << 20)), {3}
    yield "shape text", forged(box, header={**box.header, "shape": "abc"}), {3}
    yield "shape negative", forged(box, header={**box.header, "shape": [-1] * len(box.header.get("shape", [1]))}), {3}
    yield "shape missing", forged(box, header={k: v for k, v in box.header.items() if k != "shape"}), {3}
    yield "header not an object", forged(box, header=[1, 2, 3]), {3}
    yield "extra header key", forged(box, header={**box.header, "zz_extra": 1}), {0, 3}
    biggest = max(box.sections, key=lambda k: len(box.sections[k]))
    payload = box.sections[biggest]
    flipped = bytes([payload[0] ^ 0xFF]) + payload[1:]
    yield "section byte flipped", forged(box, sections={**box.sections, biggest: flipped}), {0, 3}
    yield "section cut in half", forged(box, sections={**box.sections, biggest: payload[: len(payload) // 2]}), {0, 3}
    yield "section dropped", forged(box, sections={k: v for k, v in box.sections.items() if k != biggest}), {0, 3}
    yield "no sections", forged(box, sections={}), {3}
    for cut in sorted({1, 8, len(blob) // 2, len(blob) - 1}):
        yield f"file truncated to {cut}", blob[:cut], {3}
    yield "empty file", b"", {3}
    yield "random bytes", np.random.default_rng(16).integers(0, 256, 200, dtype=np.uint8).tobytes(), {3}


def wrong_values(param: Any, quick: bool) -> list[str]:
    """Values a declared parameter must refuse (type, range, choices), as typed on the command line."""
    kind, lo, hi = param.kind, param.lo, param.hi
    out: list[str] = []
    if param.choices is not None:
        out.append("fastest")
    elif kind == "int":
        out += ["abc", "1.5", "[1,2]"]
        out += [str(int(lo) - 1)] if lo is not None else []
        out += [str(int(hi) + 1)] if hi is not None else []
    elif kind == "float":
        out += ["abc", "nan", "inf"]
        out += [str(lo - 1 if lo >= 1 else -1.0)] if lo is not None else []
        out += [str(hi * 2 + 1)] if hi is not None else []
    elif kind == "bool":
        out += ["maybe", "2"]
    elif kind == "ints":
        out += ["a,b", "[]"]
        out += [f"{int(lo) - 1},{int(lo) - 1}"] if lo is not None else []
    elif param.name == "device":
        out += ["tpu"]
    if quick:
        out = out[:1] + ([out[-1]] if len(out) > 1 and (lo is not None or hi is not None) else [])
    return out


def hostile_pass(codec: str, folder: Path, inputs: dict[str, Path], run: Callable[[list[str]], Result],
                 report: Report, quick: bool = False) -> None:
    """Every check for one codec; failures go into ``report``."""
    name, params = CASES[codec]
    src = inputs[name]
    enc = folder / f"{codec}.ncx"
    argv = ["encode", str(src), "-o", str(enc), "--codec", codec, "-q"] + [x for p in params for x in ("-p", p)]
    result = run(argv)
    report.expect(f"{codec}: encode of the small input", result, {0})
    if result.code != 0:
        return
    blob = enc.read_bytes()
    box = ncx.unpack(blob)
    out_name = {"kvb": "out.npz"}.get(codec, "out.npy")  # kvb decodes to several arrays

    # forged and mutated files: decode and info
    for label, data, codes in mutated_files(box, blob):
        path = folder / f"{codec}-bad.ncx"
        path.write_bytes(data)
        decoder = label.split()[1] if label.startswith("renamed ") else codec
        out = folder / ("bad-" + {"kvb": "out.npz"}.get(decoder, "out.npy"))
        report.expect(f"{codec}: decode {label}", run(["decode", str(path), "-o", str(out), "-q"]), codes)
        report.expect(f"{codec}: info {label}", run(["info", str(path)]), {0, 3})
        out.unlink(missing_ok=True)

    # bad parameter values: refused before any work, naming the parameter
    cls = get_codec(codec)
    for param in cls.params or ():
        for value in wrong_values(param, quick):
            bad_out = folder / f"{codec}-param.ncx"
            given = [x for p in params if not p.startswith(param.name + "=") for x in ("-p", p)]
            result = run(["encode", str(src), "-o", str(bad_out), "--codec", codec, "-q", *given,
                          "-p", f"{param.name}={value}"])
            report.expect(f"{codec}: encode {param.name}={value}", result, {2}, mention=param.name)
            if bad_out.exists():
                report.failures.append(f"{codec}: encode {param.name}={value} left an output")
                bad_out.unlink()
    options = ["max_values=-1", "max_values=abc", "no_such_option=1"]
    for param in cls.options or ():
        options += [f"{param.name}={value}" for value in wrong_values(param, quick)]
    if cls.options is None:  # hnerv/nerv: options from the signature
        options += ["batch=0", "batch=abc", "device=tpu", "max_work=-1"]
    for option in dict.fromkeys(options):
        result = run(["decode", str(enc), "-o", str(folder / out_name), "-q", "-p", option])
        report.expect(f"{codec}: decode -p {option}", result, {2}, mention=option.split("=")[0])

    # a careless user: another kind of input, inputs that are not there or not data, odd flags
    junk = folder / "junk.png"
    junk.write_bytes(b"not a png at all")
    empty = folder / "empty.npy"
    np.save(empty, np.zeros((0, 4), np.uint8))
    floats = folder / "floats.npy"
    np.save(floats, np.full((3, 16, 24, 3), np.nan, np.float32))
    odd = [(str(p), {0, 2, 3}) for key, p in sorted(inputs.items()) if key != name]
    odd += [(str(folder / "missing.png"), {3}), (str(junk), {3}), (str(empty), {2, 3}), (str(floats), {2, 3}),
            (str(folder), {2, 3})]
    for path, codes in odd:
        out = folder / f"{codec}-odd.ncx"
        result = run(["encode", path, "-o", str(out), "--codec", codec, "-q"] + [x for p in params for x in ("-p", p)])
        report.expect(f"{codec}: encode {Path(path).name}", result, codes)
        out.unlink(missing_ok=True)
    for extra, codes in ((["--frames", "abc"], {2}), (["--frames", "5:2"], {2, 3}), (["--scale", "-1"], {2, 3}),
                         (["--size", "0x0"], {2, 3})):
        result = run(["decode", str(enc), "-o", str(folder / out_name), "-q", *extra])
        report.expect(f"{codec}: decode {' '.join(extra)}", result, codes)
    result = run(["decode", str(enc), "-o", str(folder / "no-such-folder" / out_name), "-q"])
    report.expect(f"{codec}: decode into a missing folder", result, {2, 3})

    # output onto input: refused (exit 2) before any work, the input unchanged
    before = src.read_bytes()
    link = folder / f"link-{codec}{src.suffix}"
    hard = folder / f"hard-{codec}{src.suffix}"
    for target, how in ((src, "same path"), (src.parent / "." / src.name, "./ alias")):
        result = run(["encode", str(src), "-o", str(target), "--codec", codec, "-q"])
        report.expect(f"{codec}: encode onto its input ({how})", result, {2})
    link.symlink_to(src)
    os.link(src, hard)
    for target, how in ((link, "symlink"), (hard, "hard link")):
        result = run(["encode", str(src), "-o", str(target), "--codec", codec, "-q"])
        report.expect(f"{codec}: encode onto its input ({how})", result, {2})
    link.unlink()
    hard.unlink()
    if src.read_bytes() != before:
        report.failures.append(f"{codec}: the input was changed by an encode onto it")
    enc_bytes = enc.read_bytes()
    report.expect(f"{codec}: decode onto its input", run(["decode", str(enc), "-o", str(enc), "-q"]), {2})
    if enc.read_bytes() != enc_bytes:
        report.failures.append(f"{codec}: the .ncx was changed by a decode onto it")


# ------------------------------------------------------------------------------------ pytest
if pytest is not None:

    @pytest.fixture(scope="module")
    def inputs(tmp_path_factory) -> dict[str, Path]:
        return make_inputs(tmp_path_factory.mktemp("inputs"))

    def _params() -> list:
        return [pytest.param(c, marks=[pytest.mark.xfail(strict=False, reason=KNOWN_WEAK[c])] if c in KNOWN_WEAK
                             else [], id=c) for c in sorted(CASES)]

    def test_every_codec_has_a_case():
        assert set(CASES) == set(_REGISTRY)

    @pytest.mark.parametrize("codec", _params())
    def test_hostile_cli_in_process(codec, inputs, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        report = Report()
        hostile_pass(codec, tmp_path, inputs, run_in_process, report, quick=True)
        assert report.checks > 30
        assert not report.failures, "\n".join(report.failures)

    def test_the_in_process_answers_are_the_commands(inputs, tmp_path):
        """One real ``neurocodec`` process per kind of check (forged file, bad value, onto input):
        the in-process runner sees what the command does."""
        enc = tmp_path / "p.ncx"
        assert run_subprocess(["encode", str(inputs["photo.png"]), "-o", str(enc), "--codec", "png", "-q"]).code == 0
        box = ncx.unpack(enc.read_bytes())
        bad = tmp_path / "bad.ncx"
        bad.write_bytes(forged(box, codec="x264", codec_version=1))
        argvs = [(["decode", str(bad), "-o", str(tmp_path / "o.npy"), "-q"], 3),
                 (["encode", str(inputs["photo.png"]), "-o", str(tmp_path / "q.ncx"), "--codec", "jpeg", "-p",
                   "quality=abc"], 2),
                 (["encode", str(inputs["photo.png"]), "-o", str(inputs["photo.png"]), "--codec", "png"], 2)]
        for argv, code in argvs:
            sub, inproc = run_subprocess(argv), run_in_process(argv)
            assert sub.code == inproc.code == code, (argv, sub.stderr, inproc.stderr)
            assert sub.stderr.strip() == inproc.stderr.strip() and len(sub.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ script
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", default=",".join(sorted(CASES)), help="comma-separated (default: all)")
    parser.add_argument("--in-process", action="store_true", help="run commands through cli.main (fast)")
    parser.add_argument("--quick", action="store_true", help="one or two wrong values per parameter")
    parser.add_argument("--json", help="also write the failures here")
    args = parser.parse_args(argv)
    import tempfile

    run = run_in_process if args.in_process else run_subprocess
    failures: dict[str, list[str]] = {}
    total = 0
    with tempfile.TemporaryDirectory(prefix="neurocodec-hostile-") as tmp:
        folder = Path(tmp)
        inputs = make_inputs(folder)
        for codec in args.codecs.split(","):
            report = Report()
            start = time.perf_counter()
            work = folder / codec
            work.mkdir()
            hostile_pass(codec, work, inputs, run, report, quick=args.quick)
            total += report.checks
            failures[codec] = report.failures
            print(f"{codec:8s} {report.checks:4d} checks {len(report.failures):3d} failed "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            for line in report.failures:
                print("    " + line, flush=True)
    bad = sum(len(v) for v in failures.values())
    print(f"{total} checks, {bad} failed")
    if args.json:
        Path(args.json).write_text(json.dumps(failures, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
