"""Codec parameters, declared once.

A codec lists its encode parameters (and decode options) as :class:`Param` declarations. That one
list drives everything a user touches: validation and type conversion before any work (a value
typed on the command line arrives as a string), the defaults, ``neurocodec codecs NAME``,
``neurocodec encode --codec NAME --help``, and the error messages, which name the parameter, what
was given and what is accepted.

Why not read the signature of ``compress``: a signature has no ranges, choices or help, and
subclasses that share one ``compress`` (x264/x265/SVT-AV1) differ in exactly those.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
KINDS = ("int", "float", "str", "bool", "ints", "path")


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` is ``int``, ``float``, ``str``, ``bool``, ``ints`` (a list of
    integers, ``2,2,2`` on the command line) or ``path``; ``lo``/``hi`` bound numbers (inclusive;
    for ``ints``, every element); ``choices`` lists the accepted values; ``nullable`` accepts
    ``None`` (``none`` on the command line), which then means what ``help`` says (auto, off)."""

    name: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: unknown kind {self.kind!r}")

    # ---------------------------------------------------------------------- description
    def accepted(self) -> str:
        """What a valid value looks like, for help tables and error messages."""
        if self.choices is not None:
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind in ("int", "float", "ints"):
            what = {"int": "an integer", "float": "a number", "ints": "integers (a,b,c)"}[self.kind]
            if self.lo is not None and self.hi is not None:
                text = f"{what} {_num(self.lo)}..{_num(self.hi)}"
            elif self.lo is not None:
                text = f"{what} >= {_num(self.lo)}"
            elif self.hi is not None:
                text = f"{what} <= {_num(self.hi)}"
            else:
                text = what
        else:
            text = {"bool": "true or false", "str": "text", "path": "a file path"}[self.kind]
        return text + (" or none" if self.nullable else "")

    # ----------------------------------------------------------------------- conversion
    def convert(self, value: Any, owner: str) -> Any:
        """``value`` (a Python value or the string typed on the command line) as this parameter's
        type, or a :class:`UsageError` naming owner, parameter, the value given and what is accepted."""
        def refuse() -> UsageError:
            return UsageError(f"{owner} parameter {self.name}={_show(value)} is not accepted: "
                              f"expected {self.accepted()}")

        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null") and self.kind != "path"):
            if self.nullable:
                return None
            raise refuse()
        if self.kind == "bool":
            out = _to_bool(value)
            if out is None:
                raise refuse()
        elif self.kind == "int":
            out = _to_int(value)
            if out is None:
                raise refuse()
        elif self.kind == "float":
            out = _to_float(value)
            if out is None:
                raise refuse()
        elif self.kind == "ints":
            out = _to_ints(value)
            if out is None:
                raise refuse()
        elif self.kind in ("str", "path"):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and self.choices is not None:
                value = str(value)  # svtav1 preset=8 given as a number
            if not isinstance(value, str) or (self.kind == "path" and not value):
                if self.kind == "path" and hasattr(value, "__fspath__"):
                    value = str(value)
                else:
                    raise refuse()
            out = value
        if self.choices is not None and out not in self.choices:
            raise refuse()
        numbers = out if self.kind == "ints" else [out] if self.kind in ("int", "float") else []
        for v in numbers:
            if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
                raise refuse()
        return out


def bind(declared: Iterable[Param], given: Mapping[str, Any], owner: str, what: str = "parameter") -> dict[str, Any]:
    """Validate ``given`` against the declarations: unknown names are refused with the list of
    accepted ones, values are converted, defaults fill the rest."""
    table = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise UsageError(f"{owner} has no {what} {', '.join(map(repr, unknown))}; accepted: "
                         f"{', '.join(table) or 'none'}")
    return {name: (p.convert(given[name], owner) if name in given else p.default) for name, p in table.items()}


def table(declared: Iterable[Param]) -> str:
    """A plain-text table (name, default, meaning, accepted) for ``codecs NAME`` and ``--help``."""
    rows = [("parameter", "default", "meaning", "accepted")]
    rows += [(p.name, _show(p.default), p.help, p.accepted()) for p in declared]
    if len(rows) == 1:
        return "(no parameters)"
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 7)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- helpers
def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value if value and not any(c.isspace() for c in value) else repr(value)
    return json.dumps(value) if isinstance(value, (list, tuple, bool)) else str(value)


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None  # True is an int in Python, never a quality
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            f = _to_float(value)
            return int(f) if f is not None and f.is_integer() else None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        return _to_int(value.item())
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            return None
    elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _to_float(value.item())
    else:
        return None
    return out if math.isfinite(out) else None


def _to_ints(value: Any) -> list[int] | None:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
        else:
            value = [v for v in text.replace(" ", "").split(",") if v]
    if not isinstance(value, (list, tuple)) or not value:
        return None
    out = [_to_int(v) for v in value]
    return None if any(v is None for v in out) else out


def declared(which: str = "params"):
    """Decorator for ``compress`` (``which="params"``) or ``decompress`` (``which="options"``):
    binds the keyword arguments against the class's declarations before the method runs, so the
    method's own signature needs no defaults and a direct call validates exactly like ``encode``."""
    import functools

    what = "parameter" if which == "params" else "decode option"

    def wrap(method):
        import inspect

        # a decoder with long work (ldm's tiled rendering) takes ``progress`` like an encoder
        takes_progress = which == "params" or "progress" in inspect.signature(method).parameters

        @functools.wraps(method)
        def bound_method(self, *args: Any, progress: bool = False, **given: Any):
            owner = f"codec '{self.name}'"
            values = bind(getattr(type(self), which), given, owner, what)
            if takes_progress:
                return method(self, *args, progress=progress, **values)
            return method(self, *args, **values)

        bound_method.__neurocodec_declared__ = which  # type: ignore[attr-defined]
        return bound_method

    return wrap
