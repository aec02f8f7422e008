"""Header schemas and the decoded-size limit: what a decoder checks *before* it allocates or runs
anything.

Why: the container (:mod:`neurocodec.container`) proves that a header is the one its writer wrote
(CRC), not that the writer was honest or bug-free. A header whose CRC matches can still name the
wrong codec, lack a field, hold ``"abc"`` where a size belongs, or claim a ``100000 x 100000``
image from a 200-byte file. Each decoder therefore declares what its header must look like and
calls :meth:`Schema.check` first thing; a bad header becomes one :class:`CorruptStreamError`
naming the field (never ``not enough values to unpack`` or a ``KeyError``), and an honest but huge
claim becomes an :class:`InputError` naming the claimed size and the limit.

How a codec uses it: it declares its schema by overriding :meth:`neurocodec.codec.Codec.schema`,
and every call of its ``decompress`` (from :meth:`Codec.decode <neurocodec.codec.Codec.decode>`
or direct) is checked against it through :meth:`~neurocodec.codec.Codec.check_header` before the
method's body runs (one gate in the base class for every codec, not a copy per decoder)::

    from ..schema import Field, Schema, max_values_option

    SCHEMA = Schema(
        "mycodec",
        fields={
            "shape": Field("ints", length=4, lo=1, hi=1 << 20),   # required unless required=False
            "dtype": Field("str", choices=("uint8",)),
            "fps": Field("float", lo=1e-3, hi=1000),
            "note": Field("str", required=False),                 # optional; type-checked if present
        },
        sections=("weights", "embed"),                            # exactly these sections ...
        checks=(lambda h, s: None if h["shape"][3] == 3 else "shape must end in 3 channels",),
        decoded=lambda h: math.prod(h["shape"]),                  # values decode() will return
        work=None,                                                # or: multiply-adds decoding runs
    )

    class MyCodec(Codec):
        options = (max_values_option(), ...)                      # the limit as a decode option

        @classmethod
        def schema(cls) -> Schema:
            return SCHEMA

        @declared("options")
        def decompress(self, header, sections, *, max_values, ...):
            t, height, width, _ = header["shape"]                 # checked: 4 ints in range

Rules of the schema:

* a field is ``int`` (never a bool), ``float`` (an int is fine; NaN and infinities are refused:
  Python's JSON reader accepts them), ``bool``, ``str`` (``pattern``: a regex it must match in
  full), ``ints`` (a list of ints; ``length`` an exact count or a ``(min, max)`` pair, ``lo``/``hi``
  bound each element), ``list``, ``dict`` or ``any``; ``nullable`` accepts JSON ``null``;
* unknown keys are allowed (an older reader ignores what a newer writer adds within one codec
  version); missing required keys are refused;
* ``sections``: the exact set of section names, or ``section_pattern`` (a regex every name must
  match) with at most ``max_sections`` of them; ``min_section_bytes`` per section;
* ``checks``: functions of the (already type-checked) header and sections returning ``None`` or
  a message: consistency between fields and with the section sizes;
* ``decoded``: the number of values the decoded result will hold, compared with the limit;
* ``work``: for decoders whose *work* follows from header fields beyond the output size (hnerv/nerv:
  the header describes the network; a diffusion decoder: steps), the multiply-adds decoding will
  run, compared with :data:`DEFAULT_MAX_WORK` (``2**47``, about 1.4e14, which admits a quality-8
  HNeRV file of 720p video up to the decoded-size limit: see docs/format.md, Security), overridable
  like the size limit with ``max_work=`` (:func:`max_work_option`) or ``NEUROCODEC_MAX_WORK``.

The decoded-size limit, in the spirit of Pillow's ``Image.MAX_IMAGE_PIXELS``: a decoder refuses
a header that claims more than :data:`DEFAULT_MAX_VALUES` decoded values (elements of the
returned arrays; ``2**30``), unless the caller raises it with the ``max_values=`` decode option or
the ``NEUROCODEC_MAX_VALUES`` environment variable (read at each call, so nothing process-wide is
flipped by library code). Why 2**30: a decoder returns its result as one in-memory array, and the
neural decoders render through float32 tensors several times that size, so 2**30 values is 1 GiB
of uint8 output and roughly 4-8 GiB at the decoder's peak: what a laptop survives. It is twice
Pillow's error threshold (2 x 89.5 M pixels x 3 channels = 0.5 GiB), because video is bigger than
photos: 2**30 values are a 18900 x 18900 RGB image or 43 frames of 4K (3840 x 2160) video; a
longer 4K clip needs ``max_values=`` raised on purpose. ``max_values=0`` or the variable set to
``0`` / ``none`` disables the limit.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import CorruptStreamError, InputError, UsageError
from .params import Param

#: decoded values (elements of the arrays decode returns) a header may claim by default
DEFAULT_MAX_VALUES = 1 << 30
ENV_MAX_VALUES = "NEUROCODEC_MAX_VALUES"
#: decoder work (multiply-adds of the decoding network) a header may ask for by default
DEFAULT_MAX_WORK = 1 << 47
ENV_MAX_WORK = "NEUROCODEC_MAX_WORK"
FIELD_KINDS = ("int", "float", "bool", "str", "ints", "list", "dict", "any")


def max_values_option() -> Param:
    """The ``max_values`` decode option, declared once for every codec that takes it."""
    return Param("max_values", "int", None,
                 f"refuse a file that claims more decoded values than this (none = ${ENV_MAX_VALUES} or "
                 f"{DEFAULT_MAX_VALUES}; 0 = no limit)", lo=0, nullable=True)


def max_work_option() -> Param:
    """The ``max_work`` decode option of codecs whose decoding work follows from header fields
    (a schema with ``work``)."""
    return Param("max_work", "int", None,
                 f"refuse a file whose decoding takes more multiply-adds than this (none = ${ENV_MAX_WORK} or "
                 f"2**{DEFAULT_MAX_WORK.bit_length() - 1}; 0 = no limit)", lo=0, nullable=True)


#: option name -> (environment variable, default) of the limits every schema check applies
LIMITS: dict[str, tuple[str, int]] = {"max_values": (ENV_MAX_VALUES, DEFAULT_MAX_VALUES),
                                      "max_work": (ENV_MAX_WORK, DEFAULT_MAX_WORK)}
LIMIT_OPTIONS: dict[str, Callable[[], Param]] = {"max_values": max_values_option, "max_work": max_work_option}


def resolve_limit(name: str, value: int | None = None) -> int | None:
    """The limit ``name`` (``max_values`` or ``max_work``) in force: the caller's ``value`` if
    given, else its environment variable, else its default. ``None`` means no limit (``0`` asked
    for)."""
    env, default = LIMITS[name]
    return limit_in_force(name, value, env, default)


def limit_in_force(name: str, value: int | None, env: str, default: int) -> int | None:
    """The one reading of a size limit (the decode limits above, the model-file limit of
    :func:`neurocodec.weights.max_model_bytes`): the caller's ``value`` (option ``name``) if given,
    else the environment variable ``env``, else ``default``. ``0`` (or ``none`` / ``off`` in the
    variable) means no limit: ``None``. A value that is not a whole number >= 0 is a
    :class:`UsageError` naming where it came from."""
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return default
        if text.lower() in ("none", "off", "0"):
            return None
        try:
            value = int(text.replace("_", ""), 10)
        except ValueError:
            raise UsageError(f"{env}={text!r} is not a whole number") from None
        if value < 0:
            raise UsageError(f"{env}={text!r} must be >= 0")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name}={value!r} must be an integer >= 0 (0 = no limit)")
    return None if value == 0 else value


def resolve_max_values(max_values: int | None = None) -> int | None:
    """The decoded-size limit in force (:func:`resolve_limit` of ``max_values``)."""
    return resolve_limit("max_values", max_values)


def check_limit(codec: str, name: str, claimed: int, limit: int | None = None, what: str = "") -> None:
    """Refuse (``InputError``) a claim above the limit ``name`` in force, naming the claim, the
    limit and how to raise it."""
    bound = resolve_limit(name, limit)
    if bound is not None and claimed > bound:
        detail = f" ({what})" if what else ""
        noun = "decoded values" if name == "max_values" else "multiply-adds of decoding work"
        raise InputError(
            f"{codec} file claims {claimed} {noun}{detail}, above the limit of {bound}: "
            f"if you trust it, decode with {name}={claimed} (command line: --param {name}={claimed}) "
            f"or set {LIMITS[name][0]}"
        )


def check_decoded_size(codec: str, claimed: int, max_values: int | None = None, what: str = "") -> None:
    """Refuse (``InputError``) a claimed decoded size above the limit in force."""
    check_limit(codec, "max_values", claimed, max_values, what)


@dataclass(frozen=True)
class Field:
    """One header field; see the module docstring for the kinds."""

    kind: str
    required: bool = True
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    length: int | tuple[int, int] | None = None
    nullable: bool = False
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"unknown field kind {self.kind!r}")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or ``None``."""
        if value is None:
            return None if self.nullable else "is null"
        kind = self.kind
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"must be an integer, got {_show(value)}"
            return self._range(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"must be a number, got {_show(value)}"
            if not math.isfinite(value):
                return f"must be finite, got {value}"
            return self._range(value)
        if kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {_show(value)}"
        if kind == "str":
            if not isinstance(value, str):
                return f"must be text, got {_show(value)}"
            if self.choices is not None and value not in self.choices:
                return f"must be one of {', '.join(map(str, self.choices))}, got {_show(value)}"
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return f"has an unexpected form {_show(value)}"
            return self._length(len(value), value)
        if kind == "ints":
            if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                return f"must be a list of integers, got {_show(value)}"
            bad = self._length(len(value), value)
            if bad:
                return bad
            for v in value:
                if self._range(v):
                    return f"has {v} out of range ({self._bounds()}): {_show(value)}"
            return None
        if kind == "list":
            return self._length(len(value), value) if isinstance(value, list) else f"must be a list, got {_show(value)}"
        if kind == "dict":
            return None if isinstance(value, dict) else f"must be an object, got {_show(value)}"
        return None  # any

    def _range(self, v: float) -> str | None:
        if self.choices is not None and v not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {v}"
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            return f"must be {self._bounds()}, got {v}"
        return None

    def _bounds(self) -> str:
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        return f"in {lo}..{hi}"

    def _length(self, n: int, value: Any) -> str | None:
        if self.length is None:
            return None
        lo, hi = (self.length, self.length) if isinstance(self.length, int) else self.length
        if lo <= n <= hi:
            return None
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        return f"must have {want} elements, got {n}: {_show(value)}"


Check = Callable[[dict, Mapping[str, bytes]], "str | None"]


@dataclass(frozen=True)
class Schema:
    """What one codec's header and sections must look like (see the module docstring)."""

    codec: str
    fields: Mapping[str, Field]
    sections: tuple[str, ...] | None = None
    section_pattern: str | None = None
    max_sections: int = 1 << 16
    min_section_bytes: int = 0
    checks: tuple[Check, ...] = ()
    decoded: Callable[[dict], int] | None = None
    work: Callable[[dict], int] | None = None

    def check(self, header: Any, sections: Mapping[str, bytes] | None = None, *,
              max_values: int | None = None, max_work: int | None = None) -> dict:
        """Validate ``header`` (and ``sections``, when given); return the header. Raises
        :class:`CorruptStreamError` naming the field, or :class:`InputError` for a decoded size
        above ``max_values`` or decoding work above ``max_work`` (see :func:`resolve_limit`)."""
        name = self.codec
        if not isinstance(header, Mapping):
            raise CorruptStreamError(f"{name} header is not a JSON object")
        for key, spec in self.fields.items():
            if key not in header:
                if spec.required:
                    raise CorruptStreamError(f"{name} header field '{key}' is missing")
                continue
            bad = spec.problem(header[key])
            if bad:
                raise CorruptStreamError(f"{name} header field '{key}' {bad}")
        if sections is not None:
            self._check_sections(sections)
        for check in self.checks:
            bad = check(header, sections or {})
            if bad:
                raise CorruptStreamError(f"{name} header: {bad}")
        if self.decoded is not None:
            check_limit(name, "max_values", int(self.decoded(header)), max_values)
        if self.work is not None:
            check_limit(name, "max_work", int(self.work(header)), max_work)
        return dict(header)

    def _check_sections(self, sections: Mapping[str, bytes]) -> None:
        name = self.codec
        names = list(sections)
        if self.sections is not None:
            missing = [s for s in self.sections if s not in sections]
            if missing:
                raise CorruptStreamError(f"{name} stream has no '{missing[0]}' section "
                                         f"(has: {', '.join(names) or 'none'})")
            extra = [s for s in names if s not in self.sections]
            if extra:
                raise CorruptStreamError(f"{name} stream has an unexpected section '{extra[0]}'")
        if self.section_pattern is not None:
            odd = [s for s in names if not re.fullmatch(self.section_pattern, s)]
            if odd:
                raise CorruptStreamError(f"{name} stream has an unexpected section '{odd[0]}'")
        if len(names) > self.max_sections:
            raise CorruptStreamError(f"{name} stream has {len(names)} sections, at most {self.max_sections} allowed")
        short = [s for s in names if len(sections[s]) < self.min_section_bytes]
        if short:
            raise CorruptStreamError(f"{name} section '{short[0]}' holds {len(sections[short[0]])} bytes, "
                                     f"at least {self.min_section_bytes} expected")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["DEFAULT_MAX_VALUES", "DEFAULT_MAX_WORK", "ENV_MAX_VALUES", "ENV_MAX_WORK", "LIMITS", "Field", "Schema",
           "check_decoded_size", "check_limit", "limit_in_force", "max_values_option", "max_work_option",
           "resolve_limit", "resolve_max_values"]
