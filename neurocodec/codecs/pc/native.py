"""Which kernels pc codes with: the compiled C extension, else the Numba kernels.

``_native`` is built from ``native/pc_kernels.c`` by ``pip install`` (an optional setuptools
extension, see ``setup.py``). It computes the same integer tables as :mod:`.kernels`, bit for bit
(``tests/test_native.py``), several times faster and with no just-in-time compilation: coding
in a fresh process runs at full speed from the first pixel. (Building a model's float tables,
:func:`.model.dequantize`, still goes through Numba; :func:`dequantize` and :func:`mix_leaves`
below are its compiled twins, same bits.) Where the extension could not be built (no C
compiler), :mod:`.kernels` runs instead: same bitstreams, slower, compiled by Numba on first use.

The process-wide choice is made once, when this module is imported, and never changes: the
extension when it imports, unless ``NEUROCODEC_PC_KERNEL=numba`` asks for the fallback (``native``
insists on the extension, ``auto`` is the default): :data:`DEFAULT`. Functions of :mod:`.coding`
also take ``kernel=`` for one call, which the tests use to run both in one process; a caller
going through the codec API (the perf benchmark) runs a block under another kernel with
:func:`kernel_scope`, which sets a :class:`contextvars.ContextVar` (this thread / task only,
restored on exit), never a module global. :func:`current` is the kernel in force.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UsageError

if TYPE_CHECKING:
    from .model import HCLT

try:
    from . import _native
except ImportError:  # not built (no compiler at install time) or built for another Python
    _native = None

KERNELS = ("native", "numba")
ENV = "NEUROCODEC_PC_KERNEL"


def available() -> bool:
    """Whether the compiled extension imported."""
    return _native is not None


_REQUESTED = (os.environ.get(ENV) or "auto").strip().lower()

#: the kernel a call without ``kernel=`` uses outside any :func:`kernel_scope`, fixed at import
DEFAULT: str = "native" if available() and _REQUESTED != "numba" else "numba"
#: the kernel a :func:`kernel_scope` asked for (``None``: none is open in this context)
_SCOPED: contextvars.ContextVar[str | None] = contextvars.ContextVar("neurocodec_pc_kernel", default=None)


def current() -> str:
    """The kernel in force for a call without ``kernel=``: the innermost :func:`kernel_scope`'s,
    else :data:`DEFAULT`."""
    return _SCOPED.get() or DEFAULT


def resolve(kernel: str | None = None) -> str:
    """``"native"`` or ``"numba"``: the kernel one call runs (None or ``"auto"``: :func:`current`).

    Raises :class:`UsageError` for an unknown name (also one given in the environment) and when
    the extension is asked for but missing."""
    want = _REQUESTED if kernel is None else str(kernel).strip().lower()
    if want not in ("auto", *KERNELS):
        where = f"{ENV}={want!r}" if kernel is None else f"kernel={kernel!r}"
        raise UsageError(f"pc: {where} is not a kernel (use auto, native or numba)")
    if want == "native" and not available():
        raise UsageError("pc: the compiled kernels (neurocodec.codecs.pc._native) are not built in this "
                         "installation; reinstall with a C compiler, or use the numba kernel")
    return current() if kernel is None or want == "auto" else want


_TRANS_T: "weakref.WeakKeyDictionary[HCLT, np.ndarray]" = weakref.WeakKeyDictionary()


def _trans_t(circ: "HCLT") -> np.ndarray:
    """``trans[v]`` transposed per node (so the C loops read contiguous lanes), made once per circuit."""
    got = _TRANS_T.get(circ)
    if got is None:
        got = np.ascontiguousarray(circ.trans.transpose(0, 2, 1))
        got.flags.writeable = False
        _TRANS_T[circ] = got
    return got


def coder(circ: "HCLT", n: int, precision: int, node_major: bool = False) -> Any:
    """A fresh native coder over ``n`` patches of ``circ``, every pixel unknown. ``node_major``
    lays its state out node by node (for loops over the patches at one pixel: the decoder) rather
    than patch by patch (for loops over the pixels of one patch: the encoder); same results."""
    t = circ.tree
    return _native.Coder(circ.prior, circ.trans, _trans_t(circ), circ.leaf, t.parent, t.child_ptr, t.child_idx,
                         t.depth, t.post, int(n), int(precision), bool(node_major))


def dequantize(q: np.ndarray) -> np.ndarray:
    """The compiled twin of :func:`.model.dequantize` (same bits, no JIT): uint8 codes -> float64
    probabilities, rows of the last axis renormalised. Needs :func:`available`."""
    flat = np.ascontiguousarray(q, dtype=np.uint8)
    out = np.empty(flat.shape, dtype=np.float64)
    _native.dequantize_rows(flat, out, int(flat.shape[-1]))
    return out


def mix_leaves(w: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The compiled twin of :func:`.kernels.mix_leaves`: ``leaf[v, k, c] = sum_l w[v, k, l] basis[l, c]``
    summed in the same order. Needs :func:`available`."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    basis = np.ascontiguousarray(basis, dtype=np.float64)
    out = np.empty((*w.shape[:-1], basis.shape[1]))
    _native.mix_leaves(w, basis, out, int(np.prod(w.shape[:-1])), int(w.shape[-1]))
    return out


@contextlib.contextmanager
def kernel_scope(kernel: str) -> Iterator[str]:
    """Run a block with ``kernel`` as the kernel of every pc call without ``kernel=`` (what
    ``NEUROCODEC_PC_KERNEL`` sets for a whole process), then put the previous one back. For
    benchmarks that compare both kernels through the codec API in one process. The choice lives in
    a context variable: other threads (and asyncio tasks) keep theirs, and nothing module-wide is
    written."""
    name = resolve(kernel)
    token = _SCOPED.set(name)
    try:
        yield name
    finally:
        _SCOPED.reset(token)
