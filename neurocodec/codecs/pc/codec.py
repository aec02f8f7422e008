"""The ``pc`` codec: lossless image coding with a Hidden Chow-Liu Tree probabilistic circuit.

Bitstream (version 2): header ``{"shape", "dtype", "model", "model_hash", "layout", "prec"[, "raw"]}``
and one section ``px``: the range-coder words of every coded pixel (see :mod:`.coding` for the
order), or with ``"raw": true`` the pixels themselves (when coding would cost more than 8 bpd).
``model`` is the shipped model's name or the model file's name; ``model_hash`` is the model file's
:attr:`~neurocodec.weights.ModelFile.short_digest` (the first 16 hex of the SHA-256 of its bytes).
The decoder refuses a model whose hash differs from the one in the header.

Version 1 (before the shared model files) differs only in ``model_hash``: a hash of the stored
arrays (:func:`.legacy.v1_model_hash`). Such files are still decoded (``min_version = 1``): the
decoder accepts a model whose v1 hash matches; the shipped models kept their parameters, so v1
files made with them decode as before.

Coding runs on the CPU only (see :func:`coding_device`); the decoder imports no training code.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...codec import Codec
from ...errors import CorruptStreamError, InputError, UsageError
from ...runtime import check_device_name
from . import coding
from .legacy import v1_model_hash
from .model import BUILTIN_MODELS, PCModel, load_model

PRECISION = 24  # bits of the integer tables handed to the range coder


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


class PCCodec(Codec):
    name = "pc"
    version = 2
    min_version = 1  # v1 files name their model by the v1 array hash, still accepted
    kind = "image"
    description = "lossless 8-bit images with a probabilistic circuit (HCLT), Numba kernels, batched"

    def compress(self, data: Any, *, progress: bool = False, model: str | Path | PCModel = "mnist",
                 batch: bool | None = None, device: str = "auto") -> tuple[dict, dict[str, bytes], dict]:
        coding_device(device)
        x, layout = canonical(data, batch)
        if min(x.shape) == 0:
            raise InputError(f"pc: empty image (shape {np.asarray(data).shape})")
        pcm = load_model(model)
        circ = coding.choose_circuit(pcm, x.shape[3])
        lay = coding.make_layout(x.shape, circ)
        patches, mask = coding.to_patches(np.ascontiguousarray(x), lay)
        words = coding.encode_patches(circ, patches, mask, PRECISION, progress)
        if isinstance(model, PCModel):
            ref = model.name
        elif isinstance(model, str) and model in BUILTIN_MODELS:
            ref = pcm.name
        else:
            ref = Path(str(model)).name
        header = {"shape": list(np.asarray(data).shape), "dtype": "uint8", "layout": layout, "model": ref,
                  "model_hash": pcm.short_digest, "prec": PRECISION}
        report = {"model": ref, "model_hash": pcm.short_digest, "circuit_channels": lay.circuit_channels,
                  "patches": lay.num_patches, "coded_bytes": len(words), "raw": False}
        if len(words) > x.size:
            # the model fits this data worse than 8 bits per pixel (noise, unseen content): store
            # the pixels as they are, so a file is never much larger than the raw image
            header["raw"] = True
            report["raw"] = True
            return header, {"px": np.ascontiguousarray(x).tobytes()}, report
        return header, {"px": words}, report

    def decompress(self, header: dict, sections: Mapping[str, bytes], *, model: str | Path | PCModel | None = None,
                   device: str = "auto") -> np.ndarray:
        coding_device(device)
        try:
            shape = tuple(int(v) for v in header["shape"])
            layout, ref, want = header["layout"], str(header["model"]), str(header["model_hash"])
            prec = int(header["prec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStreamError(f"pc header is damaged ({exc})") from None
        if header.get("dtype") != "uint8" or prec != PRECISION or layout not in ("hw", "hwc", "nhw", "nhwc"):
            raise CorruptStreamError("pc header has unsupported dtype, precision or layout")
        if len(shape) != {"hw": 2, "hwc": 3, "nhw": 3, "nhwc": 4}[layout] or min(shape, default=0) <= 0 \
                or int(np.prod(shape)) > (1 << 31):
            raise CorruptStreamError(f"pc header has an invalid shape {shape}")
        if model is None:
            if ref not in BUILTIN_MODELS:
                raise UsageError(f"this file was coded with the pc model '{ref}': pass it with model=PATH")
            model = ref
        pcm = load_model(model)
        # v2 files record the model file's digest, v1 files the v1 array hash (same parameters, same
        # hash); either identifies the parameters, so accepting both cannot pick a wrong model
        if want != pcm.short_digest and want != v1_model_hash(pcm):
            raise UsageError(f"pc: the file needs model {ref!r} with hash {want}, but the given model has hash "
                             f"{pcm.short_digest}: decoding with another model would give garbage")
        n4 = {"hw": (1, *shape, 1), "hwc": (1, *shape), "nhw": (*shape, 1), "nhwc": shape}[layout]
        if header.get("raw"):
            px = sections.get("px", b"")
            if len(px) != int(np.prod(shape)):
                raise CorruptStreamError(f"pc raw section holds {len(px)} bytes, expected {int(np.prod(shape))}")
            return np.frombuffer(px, dtype=np.uint8).reshape(shape).copy()
        circ = coding.choose_circuit(pcm, n4[3])
        lay = coding.make_layout(n4, circ)
        mask = coding.patch_mask(lay)
        patches = coding.decode_patches(circ, sections.get("px", b""), mask, PRECISION, False)
        return coding.from_patches(patches, lay).reshape(shape)


__all__ = ["PCCodec", "PCModel", "canonical", "coding_device"]
