"""The ``hnerv`` and ``nerv`` codecs: a clip becomes a small network, the network becomes bits.

Encode = plan the model size (rate control) -> fit (:mod:`.train`, imported only by an encode:
encoding is training here, decoding never is) -> prune + fine-tune -> quantize the decoder
(8 bits, per channel where channels are large enough, else per tensor; symmetric so pruned
weights stay exactly 0) and, for HNeRV, the embeddings (6 bits, affine per embedding channel) ->
arithmetic-code weights and embeddings with two separate empirical tables
(:func:`neurocodec.entropy.encode_symbols`; the paper used one Huffman table for everything).

Bitstream (version 2), inside the ``.ncx`` container:

* header (JSON): ``shape``, ``dtype``, ``fps``, ``arch`` (everything needed to rebuild the decoder),
  ``wbits``, ``ebits``. Version 1 also held ``fit``, the encoder's report (bpp, PSNR, epochs and
  wall-clock seconds): it made two encodes of the same clip differ, so it now travels in the report
  that :meth:`~neurocodec.codec.Codec.encode_with_report` returns, never in the file. Version 1
  files decode unchanged (the decoder never read ``fit``).
* section ``ws``: float16 scales of every decoder tensor, in ``state_dict`` order; which tensors
  are per channel follows from their shapes (:func:`neurocodec.quant.choose_axis`).
* section ``w``: the quantized decoder tensors, concatenated in the same order, one symbol stream.
* sections ``es`` / ``e`` (HNeRV only): float16 scale and offset per embedding channel, and the
  quantized embeddings ``T,C,h0,w0`` as one symbol stream.

Decoding rebuilds the decoder from the header alone and runs it in float32 (deterministic on
CPU for a given batch size; the encoder measures its PSNR with exactly that computation).

Reproducibility: the same clip, parameters and ``seed`` give the same bytes on the same device and
torch thread count (training draws from its own seeded generators; nothing global is read or
changed), except with ``time_budget``, where the number of epochs follows the machine's speed.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ... import container as ncx
from ...codec import Codec
from ...entropy import decode_symbols, encode_symbols
from ...errors import CorruptStreamError, UsageError
from ...io import check_video
from ...quant import choose_axis, dequantize, quantize, scales_from_bytes, scales_to_bytes
from ...runtime import resolve_device
from .model import (Arch, Budget, build_decoder, choose_strides, decoder_params, decoder_tensors, embed_values,
                    embeddings, frame_times, model_values, solve_width)

if TYPE_CHECKING:  # the training code is imported by an encode only, never by decoding
    from .train import FitResult

#: ``quality`` presets: target bits per pixel of the whole file (the planner picks the model size)
QUALITY_BPP: dict[int, float] = {1: 0.02, 2: 0.035, 3: 0.05, 4: 0.08, 5: 0.12, 6: 0.18, 7: 0.27, 8: 0.4}
DEFAULT_QUALITY = 4
#: fraction of the budget HNeRV spends on embeddings when ``embed_ch`` is not given
EMBED_SHARE = 0.12


# --------------------------------------------------------------------------------- planning
def target_size(shape: tuple[int, ...], quality: int | None, target_bpp: float | None, target_bytes: int | None) -> float:
    """Bytes the whole file may use, from exactly one of the three rate controls."""
    given = [n for n, v in (("quality", quality), ("target_bpp", target_bpp), ("target_bytes", target_bytes)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"give only one of quality, target_bpp, target_bytes (got {', '.join(given)})")
    pixels = shape[0] * shape[1] * shape[2]
    if target_bytes is not None:
        if not target_bytes > 0:
            raise UsageError(f"target_bytes must be > 0, got {target_bytes}")
        return float(target_bytes)
    if target_bpp is not None:
        if not target_bpp > 0:
            raise UsageError(f"target_bpp must be > 0, got {target_bpp}")
        return target_bpp * pixels / 8
    q = DEFAULT_QUALITY if quality is None else quality
    if q not in QUALITY_BPP:
        raise UsageError(f"quality must be an integer 1..8, got {quality!r}")
    return QUALITY_BPP[q] * pixels / 8


def plan(
    kind: str,
    shape: tuple[int, ...],
    *,
    quality: int | None = None,
    target_bpp: float | None = None,
    target_bytes: int | None = None,
    target_params: int | None = None,
    strides: list[int] | None = None,
    width0: int | None = None,
    embed_ch: int | None = None,
    budget: Budget | None = None,
    **arch_fields: Any,
) -> Arch:
    """The architecture for a clip of ``shape`` (T,H,W[,3]) under the given rate control.

    ``target_params`` (decoder parameters + embedding values, HNeRV's "model size") overrides the
    byte targets; it is how equal-size HNeRV/NeRV comparisons are made. An explicit ``width0``
    overrides all targets."""
    T, H, W = (int(v) for v in shape[:3])
    budget = budget or Budget()
    if strides is None:
        strides = choose_strides(H, W)
    strides = [int(s) for s in strides]
    arch = Arch(kind=kind, frames=T, height=H, width=W, strides=strides, width0=4, embed_ch=embed_ch or 1, **arch_fields)
    arch.validate()
    h0, w0 = arch.grid
    if target_params is not None:
        if not target_params > 0:
            raise UsageError(f"target_params must be > 0, got {target_params}")
        # express the value count as bytes with one bit-cost per value, then solve as usual
        flat = Budget(weight_bits=8.0, embed_bits=8.0, overhead_bytes=0)
        nbytes, budget = float(target_params), flat
    else:
        nbytes = target_size((T, H, W), quality, target_bpp, target_bytes)
    if kind == "hnerv" and embed_ch is None:
        share = EMBED_SHARE * nbytes * 8 / (budget.embed_bits * T * h0 * w0)
        arch.embed_ch = int(min(16, max(1, round(share))))
    if width0 is not None:
        arch.width0 = int(width0)
        arch.validate()
        return arch
    return solve_width(arch, nbytes, budget)


# ------------------------------------------------------------------------- quantized model
class QuantizedModel:
    """A decoder with dequantized weights (+ dequantized embeddings for HNeRV): exactly what a
    decoder of the ``.ncx`` holds, whether built by the encoder or read from the stream."""

    def __init__(self, arch: Arch, state: dict[str, np.ndarray], embed: np.ndarray | None) -> None:
        self.arch = arch
        self.state = state
        self.embed = embed

    @torch.no_grad()
    def render(self, frames: tuple[int, int] | None = None, *, batch: int = 8, device: str = "cpu") -> np.ndarray:
        """Decode frames ``a..b-1`` (all by default) to uint8 ``N,H,W,3``, ``batch`` at a time."""
        a, b = _frame_range(frames, self.arch.frames)
        if not isinstance(batch, int) or batch < 1:
            raise UsageError(f"batch must be a positive integer, got {batch!r}")
        dev = resolve_device(device)
        dec = build_decoder(self.arch, self.state, dev)
        out = np.empty((b - a, self.arch.height, self.arch.width, 3), dtype=np.uint8)
        for i in range(a, b, batch):
            j = min(i + batch, b)
            if self.arch.kind == "hnerv":
                assert self.embed is not None
                z = torch.from_numpy(self.embed[i:j]).to(dev)
            else:
                z = frame_times(torch.arange(i, j), self.arch.frames).to(dev)
            y = dec(z).float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            out[i - a : j - a] = y.permute(0, 2, 3, 1).cpu().numpy()
        return out


def _frame_range(frames: Any, total: int) -> tuple[int, int]:
    if frames is None:
        return 0, total
    # (a, b) with either side None (the CLI's --frames a: or :b), negative values from the end
    try:
        a, b = frames
        a = 0 if a is None else int(a)
        b = total if b is None else int(b)
    except (TypeError, ValueError):
        raise UsageError(f"frames must be a pair (a, b), got {frames!r}") from None
    if a < 0:
        a += total
    if b < 0:
        b += total
    if not 0 <= a < b <= total:
        raise UsageError(f"frame range {a}:{b} is outside 0:{total} or empty")
    return a, b


def quantize_model(model: torch.nn.Module, arch: Arch, embed: np.ndarray | None, wbits: int,
                   ebits: int) -> tuple[QuantizedModel, dict[str, bytes]]:
    """Quantize a fitted model (e.g. ``train.fit(...).model``) and its embeddings: returns the
    model a decoder of the stream holds and the stream's sections."""
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.decoder.state_dict().items()}
    syms, scales, state = [], [], {}
    for name, shape in decoder_tensors(arch):
        qt = quantize(sd[name], wbits, per_channel=choose_axis(shape), symmetric=True)
        syms.append(qt.q.reshape(-1))
        scales.append(qt.scale)
        state[name] = qt.dequantize().reshape(shape)
    sections = {"ws": scales_to_bytes(scales), "w": encode_symbols(np.concatenate(syms))}
    deq_embed = None
    if embed is not None:
        ct = np.ascontiguousarray(embed.transpose(1, 0, 2, 3))  # per embedding channel
        qt = quantize(ct, ebits, per_channel=True, symmetric=False)
        sections["es"] = scales_to_bytes([qt.scale, qt.offset])
        sections["e"] = encode_symbols(qt.q)
        deq_embed = np.ascontiguousarray(qt.dequantize().transpose(1, 0, 2, 3))
    return QuantizedModel(arch, state, deq_embed), sections


def read_model(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> QuantizedModel:
    """Rebuild the quantized model from a header and sections (the decoder side)."""
    if not isinstance(header.get("arch"), dict):
        raise CorruptStreamError("header has no architecture")
    arch = Arch.from_json(header["arch"])
    wbits, ebits = header.get("wbits"), header.get("ebits")
    if not isinstance(wbits, int) or not 2 <= wbits <= 16 or not isinstance(ebits, int) or not 2 <= ebits <= 16:
        raise CorruptStreamError("header has bad quantization bit depths")
    for name in ("ws", "w") + (("es", "e") if arch.kind == "hnerv" else ()):
        if name not in sections:
            raise CorruptStreamError(f"stream has no '{name}' section")
    tensors = decoder_tensors(arch)
    counts = [shape[0] if choose_axis(shape) else 1 for _, shape in tensors]
    scales = scales_from_bytes(sections["ws"], counts, "weight scales")
    total = sum(math.prod(s) for _, s in tensors)
    q = decode_symbols(sections["w"], count=total)
    qmax = (1 << (wbits - 1)) - 1
    if q.size != total or (np.abs(q) > qmax).any():
        raise CorruptStreamError(f"weight stream has {q.size} symbols (expected {total}) or values out of range")
    state, pos = {}, 0
    for (name, shape), scale in zip(tensors, scales):
        n = math.prod(shape)
        state[name] = dequantize(q[pos : pos + n].reshape(shape), scale, None, choose_axis(shape))
        pos += n
    embed = None
    if arch.kind == "hnerv":
        T, C, h0, w0 = arch.embed_shape()
        scale, offset = scales_from_bytes(sections["es"], [C, C], "embedding scales")
        n = T * C * h0 * w0
        eq = decode_symbols(sections["e"], count=n)
        if eq.size != n or eq.min() < 0 or eq.max() >= (1 << ebits):
            raise CorruptStreamError("embedding stream has the wrong size or values out of range")
        embed = np.ascontiguousarray(dequantize(eq.reshape(C, T, h0, w0), scale, offset, True).transpose(1, 0, 2, 3))
    return QuantizedModel(arch, state, embed)


# ---------------------------------------------------------------------------------- codecs
def psnr_of(frames: np.ndarray, recon: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR (8-bit RGB), what the encoder reports."""
    err = np.mean((recon.astype(np.float64) - frames.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(err, 1e-10))))


class _NeuralVideoCodec(Codec):
    kind: ClassVar[str] = "video"
    #: 2: the encoder's report left the header (reproducible files); 1 is still decoded
    version: ClassVar[int] = 2
    min_version: ClassVar[int] = 1
    model_kind: ClassVar[str]

    def _compress(self, data: Any, progress: bool, *, rate: dict, train: dict, arch_fields: dict,
                  wbits: int, ebits: int, fps: float) -> tuple[dict, dict[str, bytes], dict[str, Any]]:
        from .train import FitConfig, fit  # encoding is training; decoding never gets here

        frames = check_video(data)
        if not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise UsageError(f"fps must be a number in (0, 1000], got {fps!r}")
        for name, v in (("weight_bits", wbits), ("embed_bits", ebits)):
            if not isinstance(v, int) or not 2 <= v <= 16:
                raise UsageError(f"{name} must be an integer in 2..16, got {v!r}")
        arch = plan(self.model_kind, frames.shape, **rate, **arch_fields)
        cfg = FitConfig(progress=progress, **train)
        t0 = time.monotonic()
        result = fit(frames, arch, cfg)
        model = result.model.cpu().float()  # this encode's own model: moving it touches nobody else's
        embed = embeddings(model, frames) if arch.kind == "hnerv" else None
        qmodel, sections = quantize_model(model, arch, embed, wbits, ebits)
        recon = qmodel.render(batch=8, device="cpu")  # exactly what decode(device="cpu") returns
        header = {"shape": list(frames.shape), "dtype": "uint8", "arch": arch.to_json(), "wbits": wbits, "ebits": ebits,
                  "fps": float(fps)}
        size = len(ncx.pack(ncx.Container(self.name, self.version, header, sections)))  # what encode() writes
        # progress is the training's tqdm bar; the summary is the caller's to print, from the report
        report = self._report(frames, recon, arch, result, cfg, sections, size, time.monotonic() - t0)
        return header, sections, report

    @staticmethod
    def _report(frames: np.ndarray, recon: np.ndarray, arch: Arch, result: "FitResult", cfg: Any,
                sections: Mapping[str, bytes], size: int, seconds: float) -> dict[str, Any]:
        """What used to be the header's ``fit`` (same keys), plus the loss curve and fit time."""
        pixels = frames.shape[0] * frames.shape[1] * frames.shape[2]
        stats = result.stats()
        return {
            "bpp": round(size * 8 / pixels, 6), "bytes": size, "psnr": round(psnr_of(frames, recon), 4),
            "psnr_float": stats["psnr_float"], "params": decoder_params(arch), "embed_values": embed_values(arch),
            "model_values": model_values(arch), "epochs": stats["epochs"], "finetune_epochs": stats["finetune_epochs"],
            "prune": cfg.prune, "lr": stats["lr"], "seconds": round(seconds, 2), "fit_seconds": stats["seconds"],
            "sections": {k: len(v) for k, v in sections.items()}, "history": stats["history"],
        }

    def decompress(self, header: dict, sections: Mapping[str, bytes], *, frames: tuple[int, int] | None = None,
                   batch: int = 8, device: str = "auto") -> np.ndarray:
        """Decode to uint8 ``T,H,W,3``; ``frames=(a, b)`` decodes frames a..b-1 only."""
        model = read_model(header, sections)
        if model.arch.kind != self.model_kind:
            raise CorruptStreamError(f"stream holds a {model.arch.kind} model, not {self.model_kind}")
        shape = header.get("shape")
        if list(shape or []) != [model.arch.frames, model.arch.height, model.arch.width, 3]:
            raise CorruptStreamError(f"header shape {shape} does not match the architecture")
        return model.render(frames, batch=batch, device=device)


class HNeRVCodec(_NeuralVideoCodec):
    """HNeRV: ConvNeXt-encoded per-frame embeddings + a decoder network, both in the stream."""

    name: ClassVar[str] = "hnerv"
    description: ClassVar[str] = "HNeRV (CVPR 2023): video as embeddings + a fitted decoder network"
    model_kind: ClassVar[str] = "hnerv"

    def compress(self, data: Any, *, progress: bool = False,
                 quality: int | None = None, target_bpp: float | None = None, target_bytes: int | None = None,
                 target_params: int | None = None,
                 epochs: int = 300, time_budget: float | None = None, lr: float = 1e-3, batch: int = 2,
                 prune: float = 0.1, finetune_epochs: int | None = None, seed: int = 0,
                 checkpoint: str | None = None, device: str = "auto",
                 weight_bits: int = 8, embed_bits: int = 6, fps: float = 25.0,
                 strides: list[int] | None = None, width0: int | None = None, embed_ch: int | None = None,
                 enc_width: int = 32, ks_min: int = 1, ks_max: int = 5, reduce: float = 1.2,
                 lower_width: int = 12) -> tuple[dict, dict[str, bytes], dict[str, Any]]:
        """Fit HNeRV to a ``T,H,W,3`` uint8 clip. Rate: one of ``quality`` (1..8), ``target_bpp``,
        ``target_bytes``, ``target_params`` (or an explicit ``width0``). ``checkpoint``: a path
        where training is checkpointed every epoch and resumed from. Returns the header, the
        sections and the report (bytes, bpp, PSNR after quantization, epochs, lr, times, loss curve)."""
        return self._compress(
            data, progress,
            rate=dict(quality=quality, target_bpp=target_bpp, target_bytes=target_bytes, target_params=target_params,
                      strides=strides, width0=width0, embed_ch=embed_ch),
            train=dict(epochs=epochs, time_budget=time_budget, lr=lr, batch=batch, prune=prune,
                       finetune_epochs=finetune_epochs, seed=seed, checkpoint=checkpoint, device=device),
            arch_fields=dict(enc_width=enc_width, ks_min=ks_min, ks_max=ks_max, reduce=reduce, lower_width=lower_width),
            wbits=weight_bits, ebits=embed_bits, fps=fps,
        )


class NeRVCodec(_NeuralVideoCodec):
    """NeRV: positional encoding of the frame index -> MLP -> the same kind of decoder."""

    name: ClassVar[str] = "nerv"
    description: ClassVar[str] = "NeRV (NeurIPS 2021): video as a network of the frame index"
    model_kind: ClassVar[str] = "nerv"

    def compress(self, data: Any, *, progress: bool = False,
                 quality: int | None = None, target_bpp: float | None = None, target_bytes: int | None = None,
                 target_params: int | None = None,
                 epochs: int = 300, time_budget: float | None = None, lr: float = 1e-3, batch: int = 2,
                 prune: float = 0.1, finetune_epochs: int | None = None, seed: int = 0,
                 checkpoint: str | None = None, device: str = "auto",
                 weight_bits: int = 8, embed_bits: int = 6, fps: float = 25.0,
                 strides: list[int] | None = None, width0: int | None = None,
                 reduce: float = 2.0, lower_width: int = 12, pe_base: float = 1.25, pe_levels: int = 80,
                 mlp_hidden: int | None = None) -> tuple[dict, dict[str, bytes], dict[str, Any]]:
        """Fit NeRV to a ``T,H,W,3`` uint8 clip (same rate controls, checkpoint and report as ``hnerv``)."""
        fields: dict[str, Any] = dict(reduce=reduce, lower_width=lower_width, pe_base=pe_base, pe_levels=pe_levels)
        if mlp_hidden is not None:
            fields["mlp_hidden"] = mlp_hidden
        return self._compress(
            data, progress,
            rate=dict(quality=quality, target_bpp=target_bpp, target_bytes=target_bytes, target_params=target_params,
                      strides=strides, width0=width0),
            train=dict(epochs=epochs, time_budget=time_budget, lr=lr, batch=batch, prune=prune,
                       finetune_epochs=finetune_epochs, seed=seed, checkpoint=checkpoint, device=device),
            arch_fields=fields, wbits=weight_bits, ebits=embed_bits, fps=fps,
        )
