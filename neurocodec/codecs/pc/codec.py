"""The ``pc`` codec: lossless image coding with probabilistic circuits.

Bitstream (version 4): as version 3, plus the ``lz`` mode: with ``"lz": true`` in the header the one
section is ``lz`` instead of ``px``, the image (a batch as its images stacked row-wise) coded by
:mod:`.lz` (PNG row filters + raw LZMA2). The encoder tries it only when the model's code is
cheap (below :data:`LZ_TRY_BPD`, synthetic content: a chessboard, a screenshot) and keeps it
only when the file is smaller; photos never pay for it. ``model``/``model_hash`` still name the
model that was tried; an ``lz`` file, like a raw one, decodes without it.

Version 4 also has a *compact header* for files coded with a shipped model named by its name (or
chosen automatically): ``{"m": KEY[, "shape"][, "layout"][, "raw" | "lz"]}``. ``KEY`` is a key of
:data:`COMPACT`, which pins the model's name and ``model_hash`` (so a retrained shipped model
needs a new key; old keys keep naming the old digest); ``dtype`` is ``uint8`` and ``prec``
:data:`PRECISION`; ``layout`` is written only when it is not :func:`default_layout` of the shape;
the key ``digit`` also implies the shape ``[28, 28]`` (one MNIST digit: its whole header is
``{"m":"digit"}``, 13 bytes instead of 105). The decoder expands a compact header into the full one
(:func:`expand_header`) before anything else; full headers (every file of v1-v3, and v4 files
coded with a model file or a model object) are read as before.

Bitstream (version 3): as version 2; ``model`` may also name a ``photo`` model (shipped ``photo`` or
a ``pc-photo`` model file), whose ``px`` section is the wavefront stream of :mod:`.photo`.

Bitstream (version 2): header ``{"shape", "dtype", "model", "model_hash", "layout", "prec"[, "raw"]}``
and one section ``px``: the range-coder words of every coded pixel (see :mod:`.coding` for the
order), or with ``"raw": true`` the pixels themselves (when coding would cost more than 8 bpd).
``model`` is the shipped model's name or the model file's name; ``model_hash`` is the model file's
:attr:`~neurocodec.weights.ModelFile.short_digest` (the first 16 hex of the SHA-256 of its bytes).
The decoder refuses a model whose hash differs from the one in the header, and validates the header
against :data:`SCHEMA` (through :meth:`~neurocodec.codec.Codec.check_header`: types, ranges, layout vs
shape, the decoded-size limit) before it loads a model or allocates anything: a forged header is a
:class:`CorruptStreamError`, never a traceback.

Version 1 (before the shared model files) differs only in ``model_hash``: a hash of the stored
arrays (:func:`.legacy.v1_model_hash`). Such files are still decoded (``min_version = 1``): the
decoder accepts a model whose v1 hash matches; the shipped models kept their parameters, so v1
files made with them decode as before.

Model choice: with no ``model=``, :func:`auto_model` picks the shipped model that fits the input
(28x28 one-channel images or batches of them: ``mnist``; anything else: ``photo``); the report
says which and why, and says when the pixels were stored raw (``raw`` in the header too, which
``neurocodec info`` prints).

Coding runs on the CPU only (see :func:`coding_device`); the decoder imports no training code.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ...codec import Codec
from ...errors import CorruptStreamError, InputError, UsageError
from ...params import Param, declared
from ...runtime import check_device_name, lazy_import
from ...schema import Field, Schema, max_values_option
from . import coding
from .legacy import v1_model_hash
from . import photo
from .model import BUILTIN_MODELS, RETIRED, PCModel, load_model, load_shipped
from .photo import PhotoModel

lz = lazy_import("neurocodec.codecs.pc.lz")  # Numba row filters: imported when lz is first tried

PRECISION = 24  # bits of the integer tables handed to the range coder
LAYOUTS = {"hw": 2, "hwc": 3, "nhw": 3, "nhwc": 4}  # layout tag -> rank of the decoded array
_MAX_SIDE = 1 << 20
#: the model's rate (bits per subpixel) below which the encoder also tries the ``lz`` mode. Why
#: 1 bpd: lz wins only where long exact repeats are the content (simple-content set: chessboard at
#: 0.46 bpd and the screen at 0.04 bpd by the model, 10x and 5x more than lz's); where the model
#: spends more (text and page 4.0, logo 1.09, photos 2.9-3.6) lz lost by 8-35 %, and LZMA on a
#: 500x500 logo costs about as much time as the model itself: above 1 bpd it is never run.
LZ_TRY_BPD = 1.0
_LZ_FLAG = len(',"lz":true')  # what the mode costs in the header (the section name is as long as "px")


def _final(header: dict, key: str | None, report: dict) -> dict:
    """The header to write: compact when the model is a shipped one named by ``key`` (the report
    says which form, ``header``: ``compact`` or ``full``)."""
    report["header"] = "full" if key is None else f"compact ({key})"
    return header if key is None else compact_header(header, key)


def _lz_rows(x: np.ndarray) -> np.ndarray:
    """An (N, H, W, C) input as one (N*H, W, C) image for :mod:`.lz`: a batch's images stacked
    row-wise (each image's first row may then be predicted from the previous image's last)."""
    n, h, w, c = x.shape
    return np.ascontiguousarray(x).reshape(n * h, w, c)


class ModelParam(Param):
    """The ``model`` parameter: a shipped name, a model-file path, ``None`` (auto) or, from
    Python, a :class:`PCModel` object (passed through: it is not a string to convert)."""

    def convert(self, value: Any, owner: str) -> Any:
        if isinstance(value, (PCModel, PhotoModel)):
            return value
        return super().convert(value, owner)


_MODEL_HELP = ("shipped model name (" + ", ".join(BUILTIN_MODELS) + ") or a pc model file; none = the shipped "
               "model that fits the input (28x28 grey: mnist, else photo)")


def auto_model(shape: tuple[int, int, int, int]) -> tuple[str, str]:
    """(shipped model name, why) for an (N, H, W, C) input when no model is given.

    Why this rule: ``mnist``'s one circuit covers exactly a 28x28 grey digit; on any other size its
    patches cut through the content and padding, and on photos it is far worse than ``natural``
    (which is trained on photos and video frames, colour and grey). Anything else gets ``photo``:
    it codes every pixel in the context of its decoded neighbours, where ``natural`` codes 8x8
    patches apart (held-out photos: see the README for the measured rates of both)."""
    _, h, w, c = shape
    if (h, w, c) == (28, 28, 1):
        return "mnist", "28x28 grey input (digits-shaped): the MNIST model"
    return "photo", f"{h}x{w}x{c} input (not 28x28 grey): the photo model"


def coding_device(device: Any) -> str:
    """The device pc codes on: always ``"cpu"``.

    ``device`` is checked with :func:`neurocodec.runtime.check_device_name` (same names and errors
    as every wing; torch is not imported: the coder does not need it). ``"auto"`` and ``"cpu"`` mean
    the CPU; CUDA is refused because the coder's conditionals must be bit-identical on both sides,
    which the sequential Numba CPU kernels guarantee and GPU float reductions do not: a file coded
    on one GPU could be undecodable on another machine."""
    name = check_device_name(device)
    if name in ("auto", "cpu"):
        return "cpu"
    raise UsageError(f"pc: coding on {name} is not supported (GPU sums are not bit-reproducible across "
                     f"machines); use device='cpu' or 'auto'")


def canonical(x: Any, batch: bool | None) -> tuple[np.ndarray, str]:
    """(N, H, W, C) view of an image or batch, and the layout tag that undoes it.

    2-D: one gray image. 4-D: a batch with channels. 3-D is ambiguous: a single image ``H,W,C``
    when the last axis is 1, 3 or 4 (and ``batch`` is not True), else a batch ``N,H,W``.
    """
    x = np.asarray(x)
    coding.check_pixels(x)
    if x.ndim == 2:
        if batch:
            raise UsageError("pc: batch=True needs an N,H,W[,C] array")
        return x[None, :, :, None], "hw"
    if x.ndim == 3:
        as_batch = batch if batch is not None else x.shape[-1] not in (1, 3, 4)
        return (x[:, :, :, None], "nhw") if as_batch else (x[None], "hwc")
    if x.ndim == 4:
        if batch is False:
            raise UsageError("pc: a 4-D array is a batch N,H,W,C")
        return x, "nhwc"
    raise InputError(f"pc codes images H,W[,C] or batches N,H,W[,C]; got shape {x.shape}")


#: compact-header key -> (shipped model name, its ``model_hash``, implied shape or None). Pinned
#: here, not read from :data:`.model.SHIPPED`: a key must name the same parameters forever
#: (``tests/test_pc_modes.py`` checks that each still matches the shipped file).
COMPACT: Mapping[str, tuple[str, str, tuple[int, ...] | None]] = MappingProxyType({
    "mnist": ("mnist", "b82e576ea7bbd9ae", None),
    "natural": ("natural", "37fa2f2778df8b04", None),
    "photo": ("photo", "90034c8ca8ca591a", None),
    "digit": ("mnist", "b82e576ea7bbd9ae", (28, 28)),  # one digit of the model's own size (the first mnist)
    "mnist2": ("mnist", "bcaca5ff03b0423c", None),  # the second mnist model (shifted training digits)
    "digit2": ("mnist", "bcaca5ff03b0423c", (28, 28)),
    "mnist3": ("mnist", "b0f21f789ce5695c", None),  # the third (12 epochs of shifted digits, 64 leaf bases)
    "digit3": ("mnist", "b0f21f789ce5695c", (28, 28)),
})
_FULL_ONLY = ("dtype", "model", "model_hash", "prec")  # fields a compact header never holds


def default_layout(shape: tuple[int, ...] | list[int]) -> str:
    """The layout :func:`canonical` infers from a shape with ``batch`` unset (a compact header
    omits the layout when it is this one)."""
    if len(shape) == 3:
        return "hwc" if shape[-1] in (1, 3, 4) else "nhw"
    return {2: "hw", 4: "nhwc"}.get(len(shape), "hw")


def compact_header(header: dict, key: str) -> dict:
    """The compact form of a full ``header`` for the shipped model of compact-header ``key``."""
    out: dict[str, Any] = {"m": key}
    if COMPACT[key][2] is None:
        out["shape"] = header["shape"]
        if header["layout"] != default_layout(header["shape"]):
            out["layout"] = header["layout"]
    return out | {k: header[k] for k in ("raw", "lz") if k in header}


def _compact_key(model: Any, pcm: Any, shape: tuple[int, ...], layout: str) -> str | None:
    """The compact-header key for a file coded with ``model`` (a shipped name: else None)."""
    if not (isinstance(model, str) and model in BUILTIN_MODELS):
        return None
    keys = [k for k, (name, digest, _) in COMPACT.items() if (name, digest) == (model, pcm.short_digest)]
    implied = [k for k in keys if COMPACT[k][2] == tuple(shape) and layout == default_layout(shape)]
    return next(iter(implied or [k for k in keys if COMPACT[k][2] is None]), None)


def _form_check(h: dict, sections: Mapping[str, bytes]) -> str | None:
    if "m" not in h:
        missing = [k for k in ("shape", "layout", *_FULL_ONLY) if k not in h]
        return f"field '{missing[0]}' is missing" if missing else None
    extra = [k for k in _FULL_ONLY if k in h]
    if extra:
        return f"a compact header (m={h['m']!r}) has no '{extra[0]}' field"
    implied = COMPACT[h["m"]][2]
    if implied is not None and ("shape" in h or "layout" in h):
        return f"compact key {h['m']!r} implies the shape {list(implied)}: no 'shape' or 'layout' field"
    if implied is None and "shape" not in h:
        return f"compact key {h['m']!r} needs a 'shape' field"
    return None


def expand_header(h: dict) -> dict:
    """The full header of a (type-checked) compact header; a full header is returned as it is."""
    if "m" not in h:
        return h
    name, digest, implied = COMPACT[h["m"]]
    shape = list(implied) if implied is not None else h["shape"]
    rest = {k: v for k, v in h.items() if k != "m"}
    return {**rest, "shape": shape, "dtype": "uint8", "layout": h.get("layout", default_layout(shape)),
            "model": name, "model_hash": digest, "prec": PRECISION}


def _layout_check(h: dict, sections: Mapping[str, bytes]) -> str | None:
    h = expand_header(h)
    shape, layout = h["shape"], h["layout"]
    if len(shape) != LAYOUTS[layout]:
        return f"layout {layout} needs a {LAYOUTS[layout]}-D shape, got {shape}"
    if h.get("raw") and h.get("lz"):
        return "raw and lz both set: a file has one mode"
    want = "lz" if h.get("lz") else "px"
    if list(sections) != [want]:
        return f"{'an lz' if want == 'lz' else 'a'} file has one '{want}' section, got {', '.join(sections) or 'none'}"
    if h.get("raw") and len(sections["px"]) != math.prod(shape):
        return f"raw section holds {len(sections['px'])} bytes, shape {shape} needs {math.prod(shape)}"
    if h.get("lz") and len(sections["lz"]) > math.prod(shape):
        # the encoder keeps lz only when it is smaller than the coded pixels, themselves at most the raw size
        return f"lz section holds {len(sections['lz'])} bytes, more than the {math.prod(shape)} raw pixels of shape {shape}"
    return None


SCHEMA = Schema(
    "pc",
    fields={
        # required in a full header, absent or optional in a compact one (_form_check)
        "shape": Field("ints", required=False, length=(2, 4), lo=1, hi=_MAX_SIDE),
        "dtype": Field("str", required=False, choices=("uint8",)),
        "layout": Field("str", required=False, choices=tuple(LAYOUTS)),
        "model": Field("str", required=False, length=(1, 255)),
        "model_hash": Field("str", required=False, pattern="[0-9a-f]{16}"),
        "prec": Field("int", required=False, choices=(PRECISION,)),
        "m": Field("str", required=False, choices=tuple(COMPACT)),
        "raw": Field("bool", required=False),
        "lz": Field("bool", required=False),
    },
    section_pattern="px|lz",
    max_sections=1,
    checks=(_form_check, _layout_check),
    decoded=lambda h: math.prod(expand_header(h)["shape"]),
)


class PCCodec(Codec):
    name = "pc"
    version = 4  # v4: the lz mode; v3: photo models (v2 files, circuit models only, are v3 files naming no photo model)
    min_version = 1  # v1 files name their model by the v1 array hash, still accepted
    kind = "image"
    description = "lossless 8-bit images with probabilistic circuits (HCLT patches; photo: context-selected residual circuits)"
    params = (
        ModelParam("model", "path", None, _MODEL_HELP, nullable=True),
        Param("batch", "bool", None, "a 3-D array is a batch N,H,W (true) or one image H,W,C (false); "
                                     "none = a batch unless the last axis is 1, 3 or 4", nullable=True),
        Param("device", "str", "auto", "where to code: cpu (or auto); GPUs are refused (not bit-reproducible)"),
    )
    options = (
        ModelParam("model", "path", None, "the model the file was coded with, when it is not a shipped one "
                                          "(none = the shipped model the header names)", nullable=True),
        Param("device", "str", "auto", "where to decode: cpu (or auto)"),
        max_values_option(),
    )

    @classmethod
    def schema(cls) -> Schema:
        return SCHEMA

    @declared()
    def compress(self, data: Any, *, progress: bool = False, model: str | Path | PCModel | PhotoModel | None,
                 batch: bool | None, device: str) -> tuple[dict, dict[str, bytes], dict]:
        coding_device(device)
        x, layout = canonical(data, batch)
        if min(x.shape) == 0:
            raise InputError(f"pc: empty image (shape {np.asarray(data).shape})")
        if model is None:
            model, why = auto_model(x.shape)
            chosen = "auto"
        else:
            why, chosen = "given", "given"
        pcm = load_model(model)
        if isinstance(pcm, PhotoModel):
            words, modes = photo.encode_images(pcm, np.ascontiguousarray(x), progress)
            extra = {"photo_modes": modes}
        else:
            circ = coding.choose_circuit(pcm, x.shape[3])
            lay = coding.make_layout(x.shape, circ)
            patches, mask = coding.to_patches(np.ascontiguousarray(x), lay)
            words = coding.encode_patches(circ, patches, mask, PRECISION, progress)
            extra = {"circuit_channels": lay.circuit_channels, "patches": lay.num_patches}
        if isinstance(model, (PCModel, PhotoModel)):
            ref = model.name
        elif isinstance(model, str) and model in BUILTIN_MODELS:
            ref = pcm.name
        else:
            ref = Path(str(model)).name
        header = {"shape": list(np.asarray(data).shape), "dtype": "uint8", "layout": layout, "model": ref,
                  "model_hash": pcm.short_digest, "prec": PRECISION}
        key = _compact_key(model, pcm, header["shape"], layout)
        coded_bpd = len(words) * 8 / x.size
        report = {"model": ref, "model_choice": chosen, "model_reason": why, "model_hash": pcm.short_digest,
                  **extra, "coded_bytes": len(words), "coded_bpd": coded_bpd, "raw": False, "lz": False,
                  "lz_bytes": None}
        if len(words) > x.size:
            # the model fits this data worse than 8 bits per pixel (noise, unseen content): store
            # the pixels as they are, so a file is never much larger than the raw image
            header["raw"] = True
            report.update(raw=True, mode="raw", mode_reason=f"model '{ref}' would spend {coded_bpd:.2f} bpd (> 8)")
            report["note"] = (f"stored raw pixels (8 bpd): model '{ref}' would have spent {coded_bpd:.2f} bpd "
                              "on this input")
            return _final(header, key, report), {"px": np.ascontiguousarray(x).tobytes()}, report
        if coded_bpd >= LZ_TRY_BPD:
            report.update(mode="circuit", mode_reason=f"model '{ref}' at {coded_bpd:.2f} bpd (lz is tried below "
                                                      f"{LZ_TRY_BPD:g} bpd)")
            return _final(header, key, report), {"px": words}, report
        packed = lz.compress(_lz_rows(x))
        report["lz_bytes"] = len(packed)
        if len(packed) + _LZ_FLAG >= len(words):
            report.update(mode="circuit", mode_reason=f"model '{ref}' at {coded_bpd:.2f} bpd: {len(words)} bytes, "
                                                      f"lz {len(packed)}")
            return _final(header, key, report), {"px": words}, report
        header["lz"] = True
        report.update(lz=True, mode="lz", mode_reason=f"lz {len(packed)} bytes, model '{ref}' {len(words)} "
                                                      f"({coded_bpd:.2f} bpd)")
        report["note"] = (f"coded with lz (row filters + LZMA, {len(packed) * 8 / x.size:.3f} bpd): {len(packed)} "
                          f"bytes against {len(words)} by model '{ref}'; exact repeats pay more than prediction here")
        return _final(header, key, report), {"lz": packed}, report

    @classmethod
    def full_header(cls, header: Mapping[str, Any]) -> Mapping[str, Any]:
        """A compact header's implied fields filled in (:func:`expand_header`): what ``info`` reads
        the shape (and so the rate) from. Anything else is returned as it is (decoding checks it)."""
        key = header.get("m")
        if isinstance(key, str) and key in COMPACT and (COMPACT[key][2] is not None or "shape" in header):
            return expand_header(dict(header))
        return header  # not a usable compact header: no implied fields (decoding reports what is wrong)

    @declared("options")
    def decompress(self, header: dict, sections: Mapping[str, bytes], *,
                   model: str | Path | PCModel | PhotoModel | None,
                   device: str, max_values: int | None) -> np.ndarray:
        coding_device(device)
        h = expand_header(header)  # passed SCHEMA under max_values at the decompress gate (Codec.check_header)
        shape, layout, ref, want = tuple(h["shape"]), h["layout"], h["model"], h["model_hash"]
        n4 = {"hw": (1, *shape, 1), "hwc": (1, *shape), "nhw": (*shape, 1), "nhwc": shape}[layout]
        if h.get("raw"):  # the schema checked the section's size against the shape
            return np.frombuffer(sections["px"], dtype=np.uint8).reshape(shape).copy()
        if h.get("lz"):  # needs no model; lz.decompress never inflates past the shape (limit checked)
            return lz.decompress(sections["lz"], (n4[0] * n4[1], n4[2], n4[3])).reshape(shape)
        if model is None:
            if ref not in BUILTIN_MODELS:
                raise UsageError(f"this file was coded with the pc model '{ref}': pass it with model=PATH")
            pcm = load_shipped(ref, want)
            if want != pcm.short_digest:  # a v1 file records the v1 array hash: find the model it names
                pcm = next((m for m in (load_shipped(n, h) for (n, h) in RETIRED if n == ref)
                            if v1_model_hash(m) == want), pcm)
        else:
            pcm = load_model(model)
        if isinstance(pcm, PhotoModel):
            if want != pcm.short_digest:
                raise UsageError(f"pc: the file needs model {ref!r} with hash {want}, but the given model has hash "
                                 f"{pcm.short_digest}: decoding with another model would give garbage")
            return photo.decode_images(pcm, sections["px"], n4).reshape(shape)
        # v2 files record the model file's digest, v1 files the v1 array hash (same parameters, same
        # hash); either identifies the parameters, so accepting both cannot pick a wrong model
        if want != pcm.short_digest and want != v1_model_hash(pcm):
            raise UsageError(f"pc: the file needs model {ref!r} with hash {want}, but the given model has hash "
                             f"{pcm.short_digest}: decoding with another model would give garbage")
        circ = coding.choose_circuit(pcm, n4[3])
        lay = coding.make_layout(n4, circ)
        mask = coding.patch_mask(lay)
        patches = coding.decode_patches(circ, sections["px"], mask, PRECISION, False)
        return coding.from_patches(patches, lay).reshape(shape)


__all__ = ["COMPACT", "PCCodec", "PCModel", "SCHEMA", "auto_model", "canonical", "coding_device", "default_layout",
           "expand_header"]
