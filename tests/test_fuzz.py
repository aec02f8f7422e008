"""Structure-aware fuzzing of every registered decoder.

Why structure-aware: random bytes never get past the container's CRCs (tests/test_container.py
shows that). An attacker or a buggy writer recomputes them, so here every mutated file is packed
again (:func:`forge`, which also writes the NaN/Infinity that Python's JSON reader accepts) and
the *decoder* is what is tested: a header field with a wrong type, value, or size, a missing or
extra key, a file renamed to another codec, a section flipped, cut, swapped, dropped or added.

The promise checked for every example: the decode ends in a ``neurocodec.errors`` exception or a
result of the shape the header claims, within :data:`TIME_LIMIT` seconds (``signal`` timer, no
subprocess) and within a memory bound (a soft ``RLIMIT_AS`` for the whole module, so a decoder
that believes a header's absurd size fails here with ``MemoryError`` instead of swapping the
machine). Hypothesis runs derandomized, so CI sees the same examples every time.

Decoders owned by other wings that fail a case are marked ``xfail(strict=False)`` in
:data:`KNOWN_WEAK` with the owner and the failure; when their owner fixes them the mark can go.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import resource
import signal
import struct
import zlib
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import cases
import neurocodec
from neurocodec import container as ncx
from neurocodec.codec import _REGISTRY, get_codec
from neurocodec.errors import CorruptStreamError, InputError, NeurocodecError

TIME_LIMIT = 10  # seconds per decode
MEMORY_MARGIN = 4 << 30  # bytes of address space beyond what the process holds when the module starts
CODECS = sorted(_REGISTRY)

# codec -> {test kind -> reason}: known weaknesses in decoders this suite's author does not own.
# Filled from the fuzzer's own findings; see the issue-16 report.
KNOWN_WEAK: dict[str, dict[str, str]] = {}

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                phases=(Phase.explicit, Phase.generate),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def small_cases() -> dict[str, tuple[Any, dict]]:
    """A tiny valid input and its parameters for every registered codec (tests/cases.py; hnerv/nerv:
    3 frames of 16x24, one epoch, ~3000 parameters; pc: two digits)."""
    given = cases.sources()
    return cases.cases(given, data={"pc": given["digits"][:2]})


FIXTURES = os.path.join(os.path.dirname(__file__), "data", "fixtures")


def newest_fixture(name: str) -> ncx.Container | None:
    """The committed fixture of the highest bitstream version (tests/data/fixtures), if any."""
    found = [(int(f[len(name) + 2:-4]), f) for f in os.listdir(FIXTURES)
             if re.fullmatch(re.escape(name) + r"-v[0-9]+\.ncx", f)]
    if not found:
        return None
    with open(os.path.join(FIXTURES, max(found)[1]), "rb") as fh:
        return ncx.unpack(fh.read())


class ValidFiles:
    """The valid file of each codec, encoded on first use. A codec whose encoder is broken fails
    :func:`test_every_codec_encodes_its_small_case`, and its decoder is fuzzed from its newest
    committed fixture instead."""

    def __init__(self) -> None:
        self.cases = small_cases()
        self.files: dict[str, ncx.Container] = {}
        self.broken: dict[str, str] = {}

    def __getitem__(self, name: str) -> ncx.Container:
        if name not in self.files and name not in self.broken:
            data, params = self.cases[name]
            try:
                self.files[name] = ncx.unpack(neurocodec.encode(data, codec=name, **params))
            except Exception as exc:  # noqa: BLE001 - reported as this codec's failure
                self.broken[name] = f"{type(exc).__name__}: {exc}"
                fallback = newest_fixture(name)
                if fallback is not None:
                    self.files[name] = fallback
        if name not in self.files:
            pytest.fail(f"{name} does not encode its small case and has no fixture: {self.broken[name]}")
        return self.files[name]

    def available(self) -> list[str]:
        out = []
        for name in CODECS:
            try:
                self[name]
                out.append(name)
            except pytest.fail.Exception:
                pass
        return out


@pytest.fixture(scope="module")
def valid() -> ValidFiles:
    return ValidFiles()


@pytest.fixture
def box(valid: ValidFiles, codec: str) -> ncx.Container:
    """The valid file of the parametrized codec, encoded before hypothesis starts drawing."""
    return valid[codec]


@pytest.fixture(autouse=True)
def fuzz_size_limit(monkeypatch):
    """Decodes here run under a 4M-value limit (the product's own limit, lowered through its
    environment variable): a forged but self-consistent header may legitimately ask a generative
    decoder (nerv renders any frame count) for millions of values, which is work, not a hang; the
    time bound is about decoders that never finish, not about large honest requests."""
    monkeypatch.setenv("NEUROCODEC_MAX_VALUES", str(1 << 22))


@pytest.fixture(scope="module", autouse=True)
def memory_bound():
    """A soft address-space limit for the fuzz run: what the process holds now plus
    :data:`MEMORY_MARGIN`. Restored afterwards (soft limits may be raised back)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = vm + MEMORY_MARGIN
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---------------------------------------------------------------------------------- forging
def forge(box: ncx.Container) -> bytes:
    """:func:`neurocodec.container.pack`, but as a hostile writer would: any JSON (NaN included),
    any section names, CRCs recomputed so the container accepts it."""
    head = bytearray(ncx.MAGIC) + bytes(box.format_version)
    name = box.codec.encode("ascii")
    head += bytes([len(name)]) + name + ncx.write_uvarint(box.codec_version)
    header = json.dumps(box.header, separators=(",", ":"), sort_keys=True, allow_nan=True).encode()
    head += ncx.write_uvarint(len(header)) + header + ncx.write_uvarint(len(box.sections))
    for sec, payload in box.sections.items():
        raw = sec.encode("ascii")
        head += bytes([len(raw)]) + raw + ncx.write_uvarint(len(payload)) + struct.pack("<I", zlib.crc32(payload))
    head += struct.pack("<I", zlib.crc32(head))
    return bytes(head) + b"".join(box.sections.values())


class DecodeTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise DecodeTimeout(f"decode took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def decode_options(codec: str) -> dict[str, Any]:
    """Decode on the CPU where the codec lets one choose (the memory bound and the examples are
    for the CPU path; a CUDA context would not fit under the address-space limit)."""
    cls = get_codec(codec)
    import inspect

    names = {p.name for p in cls.options} if cls.options else set(inspect.signature(cls.decompress).parameters)
    return {"device": "cpu"} if "device" in names else {}


def result_shape(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, np.ndarray):
        return out.shape
    indices = getattr(out, "indices", None)  # kvb
    return tuple(indices.shape) if indices is not None else None


def check_decode(box: ncx.Container, what: str) -> str:
    """Decode a forged file; return the outcome ('ok' or the error class) or fail the test."""
    blob = forge(box)
    try:
        with time_limit(TIME_LIMIT):
            out = neurocodec.decode(blob, **decode_options(box.codec))
    except NeurocodecError as exc:
        assert str(exc).strip(), f"{what}: {type(exc).__name__} without a message"
        return type(exc).__name__
    except DecodeTimeout:
        pytest.fail(f"{box.codec} decoder hangs on {what}")
    except MemoryError:
        pytest.fail(f"{box.codec} decoder exhausts memory on {what} (MemoryError)")
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        pytest.fail(f"{box.codec} decoder: {what} -> {type(exc).__name__}: {str(exc)[:300]}")
    shape = box.header.get("shape")
    if isinstance(shape, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        got = result_shape(out)
        assert got == tuple(shape), f"{box.codec}: {what} decoded to shape {got}, the header claims {shape}"
    return "ok"


# ---------------------------------------------------------------------------------- strategies
ABSURD = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2, 3, 7, 2**16, 2**31 - 1, 2**31, 2**32, 2**53, 2**63, 2**64, 10**30,
                     0.5, -0.0, 1e308, float("nan"), float("inf"), -float("inf"),
                     "", "abc", "0", "uint16", "float32", "mnist", "../../../etc/passwd", "/dev/zero",
                     [], [0], [1, 1], [2**31, 2**31, 3], [-1, 28, 28], [1, 1, 1, 1, 1, 1, 1], {}, {"a": 1}]),
    st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 2**34), max_size=6),
).map(copy.deepcopy)  # the lists and dicts above are shared constants: never mutate them in place


def leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (dict keys and list indices), the value itself included."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += leaf_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += leaf_paths(v, (*prefix, i))
    return out


def get_in(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def mutate_header(data: st.DataObject, header: dict) -> tuple[dict, list[str]]:
    header = json.loads(json.dumps(header))
    done = []
    for _ in range(data.draw(st.integers(1, 3), label="header ops")):
        paths = leaf_paths(header)
        op = data.draw(st.sampled_from(["set", "nudge", "delete", "add", "scale"]), label="op")
        if op == "add" or not paths:
            key = data.draw(st.text(min_size=1, max_size=8), label="new key")
            header[key] = data.draw(ABSURD, label="value")
            done.append(f"add {key!r}")
            continue
        path = data.draw(st.sampled_from(paths), label="path")
        parent, last = get_in(header, path[:-1]), path[-1]
        old = parent[last]
        if op == "delete":
            if isinstance(parent, dict):
                del parent[last]
            else:
                parent.pop(last)
            done.append(f"delete {'.'.join(map(str, path))}")
            continue
        if op in ("nudge", "scale") and isinstance(old, (int, float)) and not isinstance(old, bool):
            if op == "nudge":
                new = old + data.draw(st.sampled_from([-2, -1, 1, 2]), label="delta")
            else:
                new = old * data.draw(st.sampled_from([0, -1, 2, 1000, 2**20, 2**40]), label="factor")
            new = type(old)(new) if isinstance(old, int) else float(new)
        else:
            new = data.draw(ABSURD, label="value")
        parent[last] = new
        done.append(f"{'.'.join(map(str, path))}: {old!r} -> {new!r}")
    return header, done


def mutate_sections(data: st.DataObject, sections: dict[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    secs = dict(sections)
    done = []
    for _ in range(data.draw(st.integers(1, 2), label="section ops")):
        names = list(secs)
        op = data.draw(st.sampled_from(["flip", "flip", "truncate", "extend", "swap", "drop", "add", "random",
                                        "rename", "empty"]), label="op")
        if op == "add" or not names:
            name = data.draw(st.sampled_from(["x", "0", "1", "bitstream", "w", "px", "indices", "latent"]))
            secs[name] = data.draw(st.binary(max_size=64), label="payload")
            done.append(f"add section {name!r}")
            continue
        name = data.draw(st.sampled_from(names), label="section")
        payload = secs[name]
        if op == "flip" and payload:
            pos = data.draw(st.integers(0, len(payload) - 1), label="byte")
            bit = data.draw(st.integers(0, 7), label="bit")
            secs[name] = payload[:pos] + bytes([payload[pos] ^ (1 << bit)]) + payload[pos + 1:]
            done.append(f"flip bit {bit} of byte {pos} of {name!r}")
        elif op == "truncate" and payload:
            cut = data.draw(st.integers(0, len(payload) - 1), label="length")
            secs[name] = payload[:cut]
            done.append(f"truncate {name!r} to {cut}")
        elif op == "extend":
            secs[name] = payload + data.draw(st.binary(min_size=1, max_size=64), label="tail")
            done.append(f"extend {name!r}")
        elif op == "swap" and len(names) > 1:
            other = data.draw(st.sampled_from([n for n in names if n != name]), label="other")
            secs[name], secs[other] = secs[other], secs[name]
            done.append(f"swap {name!r} and {other!r}")
        elif op == "drop":
            del secs[name]
            done.append(f"drop {name!r}")
        elif op == "random":
            secs[name] = data.draw(st.binary(min_size=len(payload), max_size=len(payload)), label="noise")
            done.append(f"random bytes in {name!r}")
        elif op == "rename":
            secs[name + "_"] = secs.pop(name)
            done.append(f"rename {name!r}")
        elif op == "empty":
            secs[name] = b""
            done.append(f"empty {name!r}")
    return secs, done


def _cases(kind: str) -> list:
    out = []
    for name in CODECS:
        reason = KNOWN_WEAK.get(name, {}).get(kind)
        marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# ---------------------------------------------------------------------------------- tests
def test_every_registered_codec_is_fuzzed():
    assert set(small_cases()) == set(_REGISTRY) == set(CODECS)


@pytest.mark.parametrize("codec", _cases("header"))
@FUZZ
@given(data=st.data())
def test_mutated_headers(box, data):
    header, done = mutate_header(data, box.header)
    check_decode(ncx.Container(box.codec, box.codec_version, header, box.sections), "header " + "; ".join(done))


@pytest.mark.parametrize("codec", _cases("sections"))
@FUZZ
@given(data=st.data())
def test_mutated_sections(box, data):
    sections, done = mutate_sections(data, box.sections)
    check_decode(ncx.Container(box.codec, box.codec_version, box.header, sections), "; ".join(done))


@pytest.mark.parametrize("codec", _cases("both"))
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_mutated_headers_and_sections(box, data):
    header, done = mutate_header(data, box.header)
    sections, more = mutate_sections(data, box.sections)
    check_decode(ncx.Container(box.codec, box.codec_version, header, sections), "; ".join(done + more))


@pytest.mark.parametrize("codec", _cases("renamed"))
def test_renamed_to_every_other_codec(valid, codec):
    """A file of ``source`` relabelled ``codec`` (at ``codec``'s own version, so the header, not
    the version check, is what stops it): every one of the 11 x 12 pairs is tried."""
    target = get_codec(codec)
    for source in valid.available():  # a codec whose encoder is broken fails its own tests
        if source != codec:
            box = valid[source]
            check_decode(ncx.Container(codec, target.version, box.header, box.sections),
                         f"a {source} file renamed {codec}")


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_encodes_its_small_case(valid, codec):
    valid[codec]
    assert codec not in valid.broken, f"{codec} does not encode its small case: {valid.broken[codec]}"


@pytest.mark.parametrize("codec", _cases("valid"))
def test_the_unmutated_files_decode(valid, codec):
    assert check_decode(valid[codec], "the valid file") == "ok"


# ------------------------------------------------------------------ decoded-size limit (owned codecs)
HUGE = {
    "png": {"shape": [1 << 16, 1 << 16, 3]},
    "webp": {"shape": [1 << 16, 1 << 16, 3]},
    "jpeg": {"shape": [1 << 16, 1 << 16, 3]},
    "jpegxl": {"shape": [1 << 16, 1 << 16, 3]},
    "avif": {"shape": [1 << 16, 1 << 16, 3]},
    "x264": {"shape": [10000, 4096, 4096, 3], "coded_size": [4096, 4096]},
    "x265": {"shape": [10000, 4096, 4096, 3], "coded_size": [4096, 4096]},
    "svtav1": {"shape": [10000, 4096, 4096, 3], "coded_size": [4096, 4096]},
    "kvb": {"shape": [1 << 31, 64]},
    "pc": {"shape": [1 << 16, 1 << 12, 28]},
    "hnerv": {"shape": [1000, 1024, 1024, 3]},
    "nerv": {"shape": [1000, 1024, 1024, 3]},
}


def test_every_codec_declares_its_schema_and_the_limit():
    """The one gate (``Codec.check_header``, run by the base class before every ``decompress``) covers a
    codec only when it declares a schema with a decoded size, and its users can only raise the
    limit when ``max_values`` is a decode option."""
    import inspect

    missing = []
    for name in CODECS:
        cls = get_codec(name)
        schema = cls.schema()
        options = {p.name for p in cls.options} if cls.options else set(inspect.signature(cls.decompress).parameters)
        if schema is None or schema.decoded is None or "max_values" not in options:
            missing.append(name)
    assert not missing, f"codecs without a declared schema and size limit: {missing}"


@pytest.mark.parametrize("codec", sorted(HUGE))
def test_absurd_but_consistent_sizes_hit_the_limit(valid, codec, monkeypatch):
    """A header that is consistent with itself but claims a gigantic result is refused from the
    header alone, naming the claimed size and the limit, before anything is decoded."""
    monkeypatch.delenv("NEUROCODEC_MAX_VALUES")  # the default limit, not the fuzz one
    box = valid[codec]
    forged = ncx.Container(codec, box.codec_version, {**box.header, **HUGE[codec]}, box.sections)
    with time_limit(2), pytest.raises(InputError, match=r"claims \d+ decoded values.*limit of 1073741824"):
        neurocodec.decode(forge(forged))


@pytest.mark.parametrize("codec", ["png", "x264", "kvb"])
def test_the_limit_can_be_changed_per_call_and_by_environment(valid, codec, monkeypatch):
    box = valid[codec]
    blob = forge(box)
    values = math.prod(box.header["shape"])
    with pytest.raises(InputError, match="max_values="):
        neurocodec.decode(blob, max_values=values // 2)
    monkeypatch.setenv("NEUROCODEC_MAX_VALUES", str(values // 2))
    with pytest.raises(InputError, match=f"limit of {values // 2}"):
        neurocodec.decode(blob)
    assert result_shape(neurocodec.decode(blob, max_values=0)) == tuple(box.header["shape"])  # 0: no limit
    monkeypatch.setenv("NEUROCODEC_MAX_VALUES", "lots")
    with pytest.raises(NeurocodecError, match="NEUROCODEC_MAX_VALUES"):
        neurocodec.decode(blob)
    monkeypatch.delenv("NEUROCODEC_MAX_VALUES")
    with pytest.raises(NeurocodecError, match="max_values"):
        neurocodec.decode(blob, max_values="abc")


@pytest.mark.parametrize("codec,field", [
    ("x264", "coded_size"), ("x265", "shape"), ("svtav1", "dtype"), ("png", "batch"), ("webp", "shape"),
    ("jpegxl", "shape"), ("kvb", "bottleneck"), ("kvb", "value_dim"),
])
def test_a_missing_field_is_named(valid, codec, field):
    box = valid[codec]
    header = {k: v for k, v in box.header.items() if k != field}
    with pytest.raises(CorruptStreamError, match=f"'{field}' is missing"):
        neurocodec.decode(forge(ncx.Container(codec, box.codec_version, header, box.sections)))


#: header forgeries that no codec's schema lets through
FORGED_HEADERS: dict[str, Any] = {
    "shape text": lambda h: {**h, "shape": "abc"},
    "shape missing": lambda h: {k: v for k, v in h.items() if k != "shape"},
    "not an object": lambda h: [1, 2, 3],
}


@pytest.mark.parametrize("forgery", sorted(FORGED_HEADERS))
@pytest.mark.parametrize("codec", ["png", "jpeg", "webp", "jpegxl", "avif", "x264", "kvb", "pc", "ldm"])
def test_a_forged_header_handed_straight_to_decompress_is_refused(valid, codec, forgery):
    """``decompress`` is public: a header given to it directly meets the gate ``decode`` applies
    (``Codec.check_header``, run by the base class before every decompress body), so a forged one
    is a ``CorruptStreamError``, not whatever the body would trip over. The valid header still
    decodes the same way directly."""
    box = valid[codec]
    codec_obj = get_codec(codec)()
    options = decode_options(codec)
    with pytest.raises(CorruptStreamError, match="header"):
        codec_obj.decompress(FORGED_HEADERS[forgery](box.header), box.sections, **options)
    if forgery == "shape text":  # once per codec: the honest header passes the gate
        assert result_shape(codec_obj.decompress(box.header, box.sections, **options)) == tuple(box.header["shape"])


@pytest.mark.parametrize("codec", ["png", "x264", "kvb", "pc"])
def test_decode_checks_the_header_once(valid, codec, monkeypatch):
    """One gate, run once: ``decode`` leaves the header check to the gated ``decompress``."""
    cls = get_codec(codec)
    calls = []
    check = cls.check_header.__func__

    def counted(klass, *args, **kwargs):
        calls.append(klass.name)
        return check(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "check_header", classmethod(counted))
    neurocodec.decode(forge(valid[codec]), **decode_options(codec))
    assert calls == [codec]


def test_a_renamed_video_file_names_the_field(valid):
    """The issue's case: a png file relabelled x264 used to end in 'not enough values to unpack'."""
    box = valid["png"]
    with pytest.raises(CorruptStreamError, match="x264 header field"):
        neurocodec.decode(forge(ncx.Container("x264", 1, box.header, box.sections)))
    box = valid["hnerv"]
    with pytest.raises(CorruptStreamError, match="'coded_size' is missing"):
        neurocodec.decode(forge(ncx.Container("svtav1", 1, box.header, box.sections)))


def test_payload_size_must_match_the_header(valid):
    """The image inside a section declares its own size: a small payload claiming a huge image
    (a decompression bomb with an honest-looking header) is refused before its pixels decode."""
    from neurocodec.codecs.classical import avif_size, jxl_size

    for codec in ("png", "webp", "jpeg", "jpegxl", "avif"):
        box = valid[codec]
        header = {**box.header, "shape": [16, 16, 3]}
        with pytest.raises(CorruptStreamError, match="payload is 32x32, the header says 16x16"):
            neurocodec.decode(forge(ncx.Container(codec, box.codec_version, header, box.sections)))
    assert jxl_size(valid["jpegxl"].sections["0"]) == (32, 32)
    assert avif_size(valid["avif"].sections["0"]) == (32, 32)


# ------------------------------------------------------------------------ decoding-work limit (nerv)
def _zero_nerv(arch_text: str, frames: int) -> bytes:
    """A real, self-consistent nerv file whose decoder weights are all zero: a few kilobytes that
    decode (to grey frames) for any frame count the header states, the cheapest way to ask a
    generative decoder for unbounded work."""
    from neurocodec.codecs.hnerv.model import Arch, decoder_tensors
    from neurocodec.entropy import encode_symbols
    from neurocodec.quant import choose_axis, scales_to_bytes

    arch, _, _ = Arch.from_compact(arch_text, frames, 16, 24)
    tensors = decoder_tensors(arch)
    ws = scales_to_bytes([np.ones(s[0] if choose_axis(s) else 1, np.float32) for _, s in tensors])
    w = encode_symbols(np.zeros(sum(math.prod(s) for _, s in tensors), np.int64))
    header = {"shape": [frames, 16, 24, 3], "dtype": "uint8", "fps": 25.0, "a": arch_text}
    return ncx.pack(ncx.Container("nerv", 3, header, {"ws": ws, "w": w}))


def test_decoding_work_is_bounded_by_the_header_check(monkeypatch):
    from neurocodec.codecs.hnerv.codec import _header_arch, decode_work

    monkeypatch.delenv("NEUROCODEC_MAX_VALUES")
    small = "n s2.2.2 w32 r1.0 l32 p1.25.80 m0 b8.6"
    out = neurocodec.decode(_zero_nerv(small, 2), device="cpu")  # the forged file is a valid file
    assert out.shape == (2, 16, 24, 3) and (out == 128).all()
    blob = _zero_nerv(small, 8)
    work = decode_work(_header_arch(ncx.unpack(blob).header)[0])
    with time_limit(2), pytest.raises(InputError, match=f"claims {work} multiply-adds.*limit of {work - 1}"):
        neurocodec.decode(blob, device="cpu", max_work=work - 1)
    assert neurocodec.decode(blob, device="cpu", max_work=work).shape == (8, 16, 24, 3)
    # at the default limit: 800,000 frames of a 7.3 M-weight decoder (about 2.4e14 multiply-adds,
    # days of CPU), under the decoded-size limit, refused from the header alone
    from neurocodec.codecs.hnerv.model import decoder_params

    header = {"shape": [800_000, 16, 24, 3], "dtype": "uint8", "fps": 25.0,
              "a": "n s2.2.2 w256 r1.0 l256 p1.25.80 m0 b8.6"}
    box = ncx.unpack(blob)
    big = _header_arch(header)[0]
    assert math.prod(header["shape"]) < (1 << 30) < (1 << 47) < decode_work(big) and decoder_params(big) < 1 << 27
    with time_limit(2), pytest.raises(InputError, match=f"multiply-adds of decoding work, above the limit of {1 << 47}"):
        neurocodec.decode(forge(ncx.Container("nerv", 3, header, box.sections)))
    monkeypatch.setenv("NEUROCODEC_MAX_WORK", str(work - 1))
    with pytest.raises(InputError, match=f"limit of {work - 1}"):
        neurocodec.decode(blob, device="cpu")


@pytest.mark.parametrize("arch_text", ["n s2.2.2 w64 r1.0 l64 p1.25.80 m16 b8.6", "h s3.2 w24 e4 k1.5 r1.2 l12 b8.6"])
def test_decode_work_counts_what_torch_counts(arch_text):
    """decode_work is the decoder's multiply-adds as torch's own FLOP counter measures them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from neurocodec.codecs.hnerv.codec import decode_work
    from neurocodec.codecs.hnerv.model import Arch, Decoder, frame_times

    arch, _, _ = Arch.from_compact(arch_text, 3, 20, 30)
    with torch.device("meta"):
        dec = Decoder(arch)
        z = torch.zeros(3, arch.embed_ch, *arch.grid) if arch.kind == "hnerv" else frame_times(torch.arange(3), 3)
        with FlopCounterMode(display=False) as counter:
            dec(z)
    assert counter.get_total_flops() == 2 * decode_work(arch)
