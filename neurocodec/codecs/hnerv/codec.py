"""The ``hnerv`` and ``nerv`` codecs: a clip becomes a small network, the network becomes bits.

Encode = plan the model size (rate control) -> refuse a target below the smallest reachable rate
(before any training) -> fit (:mod:`.train`, imported only by an encode: encoding is training here,
decoding never is; HNeRV's embeddings become free parameters after the first ``encoder_share`` of
the epochs, so most steps skip the encoder) -> prune + a quantization-aware fine-tune (straight-through
steps at the planned bit depths) -> quantize the decoder (symmetric, per channel where
channels are large enough, else per tensor, so pruned weights stay exactly 0) and, for HNeRV, the
embeddings (affine per embedding channel) -> arithmetic-code weights and embeddings with two
separate empirical tables (:func:`neurocodec.entropy.encode_symbols`).

Rate control (``quality``, ``target_bpp``, ``target_bytes``) lands in two steps. Before training,
:func:`plan` picks the largest first width (and, for HNeRV, the embedding channels) whose
*estimated* file fits the target at ``PLAN_BITS`` (6-bit weights, 5-bit embeddings) (bits per value measured on
fitted models; container, header, scales and count tables counted exactly or bounded). After the
fit, :func:`choose_precision` measures the real file for every weight depth in ``WBITS`` and
embedding depth in ``EBITS`` (quantization + entropy coding are cheap next to training) and keeps,
among the files within ``-RATE_TOLERANCE .. +SELECT_ABOVE`` of the target, the one with the best
PSNR on a few frames: that is the re-plan, and it absorbs what the estimate cannot know (how
peaked the trained weights are). ``weight_bits`` / ``embed_bits`` given explicitly are kept.

Bitstream (version 3), inside the ``.ncx`` container:

* header (JSON, about 90 bytes): ``shape``, ``dtype``, ``fps`` and ``a``, the decoder description
  and bit depths as one terse string (:meth:`.model.Arch.to_compact`, e.g.
  ``"h s4.3.2 w23 e3 k1.5 r1.2 l12 b8.6"``). Version 2 carried the same as a JSON ``arch`` object
  plus ``wbits``/``ebits`` (about 400 bytes); version 1 also held the encoder's report (``fit``).
  Both still decode. Training telemetry never enters the file: it is the report that
  :meth:`~neurocodec.codec.Codec.encode_with_report` returns.
* section ``ws``: float16 scales of every decoder tensor, in ``state_dict`` order; which tensors
  are per channel follows from their shapes (:func:`neurocodec.quant.choose_axis`).
* section ``w``: the quantized decoder tensors, concatenated in the same order, one symbol stream.
* sections ``es`` / ``e`` (HNeRV only): float16 scale and offset per embedding channel, and the
  quantized embeddings ``T,C,h0,w0`` as one symbol stream.

Every header field is type- and range-checked before anything is decoded (:func:`check_header`:
the shared :mod:`neurocodec.schema` fields and ``max_values`` size limit first, then the architecture):
a forged header is a :class:`CorruptStreamError`. Decoding rebuilds the decoder from the header
alone and runs it in float32 (deterministic on CPU for a given batch size; the encoder measures
its PSNR with exactly that computation).

Reproducibility: the same clip, parameters and ``seed`` give the same bytes on the same device
(training draws from its own seeded generators; the whole encode runs at ``threads`` torch threads
through :func:`.train.torch_threads`, which restores the caller's count), except with
``time_budget``, where the number of epochs follows the machine's speed.
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
from ...params import Param, declared
from ...quant import choose_axis, dequantize, quantize, scales_from_bytes, scales_to_bytes
from ...runtime import resolve_device
from ...runtime import threads as house_threads
from ...schema import Field, Schema
from .model import (BLOCKS, Arch, Budget, build_decoder, choose_strides, decoder_params, decoder_tensors, embed_values,
                    embeddings, frame_times, model_values)

if TYPE_CHECKING:  # the training code is imported by an encode only, never by decoding
    from .train import FitResult

#: ``quality`` presets: target bits per pixel of the whole file (the planner picks the model size)
QUALITY_BPP: dict[int, float] = {1: 0.02, 2: 0.035, 3: 0.05, 4: 0.08, 5: 0.12, 6: 0.18, 7: 0.27, 8: 0.4}
DEFAULT_QUALITY = 4
#: (weight, embedding) bit depths the planner sizes the model for, and the quantization-aware
#: fine-tune trains at, unless ``weight_bits`` / ``embed_bits`` are given. 6/5 rather than the
#: official 8/6: on carphone (120 frames, 0.1 bpp, 60 epochs) planning at 6/5 gave a 57.5k-value
#: model at 0.1007 bpp and 30.84 dB, planning at 8/6 a 36.8k-value one at 0.0847 bpp and 30.22 dB
#: (+0.62 dB for +19 % bits, about twice the curve's slope there)
PLAN_BITS = (6, 5)
#: bit depths of a file without a byte target (``width0`` or ``target_params``), unless given
FIXED_BITS = (8, 6)
#: fraction of the budget HNeRV spends on embeddings when ``embed_ch`` is not given
EMBED_SHARE = 0.12
#: bit depths the precision search may use (weights, embeddings); explicit values may go outside
WBITS = tuple(range(5, 13))
EBITS = tuple(range(4, 11))
#: a rate target is met when the file is within this fraction of it
RATE_TOLERANCE = 0.10
#: files up to this fraction above the target compete on PSNR (keeps clear of the +10 % edge)
SELECT_ABOVE = 0.03
#: frames (evenly spaced) on which the precision search compares candidates
SEARCH_FRAMES = 8
#: smallest first width the planner uses
MIN_WIDTH = 4
#: measured bits per coded value at 8-bit weights / 6-bit embeddings after training and 10 %
#: pruning (carphone and bunny RD points: 7.0-7.2 and 5.8-5.9); other depths shift by one per bit
_BITS_PER_WEIGHT_AT_8 = 7.1
_BITS_PER_EMBED_AT_6 = 5.85


# --------------------------------------------------------------------------------- headers
def make_header(shape: tuple[int, ...], fps: float, arch: Arch, wbits: int, ebits: int) -> dict[str, Any]:
    """The version-3 header: shape, dtype, fps and the compact decoder description."""
    return {"shape": [int(v) for v in shape], "dtype": "uint8", "fps": float(fps), "a": arch.to_compact(wbits, ebits)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def decode_work(arch: Arch, frames: int | None = None) -> int:
    """Multiply-adds the decoder runs for ``frames`` frames (all by default): stem, every
    conv + pixel-shuffle stage at its input resolution, and the 3x3 head at the padded frame size.
    Why: the work of a decode follows from the header's architecture, not from the output size
    alone (a 16x16 clip may name a decoder of 2**27 weights), so the schema bounds it separately."""
    widths = arch.widths()
    h0, w0 = arch.grid
    if arch.kind == "hnerv":
        n = arch.embed_ch * widths[0] * h0 * w0
    else:
        dims = [2 * arch.pe_levels] + ([arch.mlp_hidden] if arch.mlp_hidden else []) + [widths[0] * h0 * w0]
        n = sum(a * b for a, b in zip(dims, dims[1:]))
    positions = h0 * w0
    for i, s in enumerate(arch.strides):
        n += arch.stage_weights(i) * positions
        positions *= s * s
    n += widths[-1] * 3 * 9 * positions
    return n * (arch.frames if frames is None else frames)


def _header_arch(h: dict) -> tuple[Arch, Any, Any]:
    """(arch, wbits, ebits) of a header whose shape the schema has checked: version 3's compact
    ``a`` or versions 1-2's ``arch`` object; a :class:`CorruptStreamError` otherwise."""
    T, H, W = h["shape"][:3]
    if "a" in h:  # version 3
        return Arch.from_compact(h["a"], T, H, W)
    if not isinstance(h.get("arch"), dict):
        raise CorruptStreamError("header has no architecture")
    arch = Arch.from_dict(h["arch"])
    if [arch.frames, arch.height, arch.width] != [T, H, W]:
        raise CorruptStreamError(f"header shape {h['shape']} does not match the architecture")
    return arch, h.get("wbits"), h.get("ebits")


def _arch_check(h: dict, sections: Mapping[str, bytes]) -> str | None:
    if h["shape"][3] != 3:
        return f"shape {h['shape']} is not [frames, height, width, 3]"
    _, wbits, ebits = _header_arch(h)  # raises, naming what is wrong
    if not (_is_int(wbits) and 2 <= wbits <= 16 and _is_int(ebits) and 2 <= ebits <= 16):
        return "bad quantization bit depths"
    return None


def _schema(name: str) -> Schema:
    """The header schema (:mod:`neurocodec.schema`) of every version: the shared fields, the
    architecture (parsed and range-checked), the decoded size (frames x height x width x 3)
    against ``max_values`` and the decoder's multiply-adds (:func:`decode_work`) against ``max_work``."""
    return Schema(name, fields={"shape": Field("ints", length=4, lo=1, hi=1 << 20),
                                "dtype": Field("str", choices=("uint8",), required=False),
                                "fps": Field("float", lo=1e-3, hi=1000, required=False)},
                  checks=(_arch_check,),
                  decoded=lambda h: math.prod(h["shape"]),
                  work=lambda h: decode_work(_header_arch(h)[0]))


SCHEMAS = {"hnerv": _schema("hnerv"), "nerv": _schema("nerv")}


def check_header(header: Any, name: str = "hnerv", max_values: int | None = None,
                 max_work: int | None = None) -> tuple[Arch, int, int]:
    """Validate an hnerv/nerv header of any version before anything is decoded: ``(arch, wbits,
    ebits)``, or a :class:`CorruptStreamError` naming the bad field (an honest but huge claim, in
    values or in decoding work: an :class:`InputError` from the schema's limits)."""
    SCHEMAS.get(name, SCHEMAS["hnerv"]).check(header, None, max_values=max_values, max_work=max_work)
    # shape (4 ints, 3 channels), dtype, fps and the architecture passed the schema
    arch, wbits, ebits = _header_arch(header)
    if not (_is_int(wbits) and 2 <= wbits <= 16 and _is_int(ebits) and 2 <= ebits <= 16):
        raise CorruptStreamError("header has bad quantization bit depths")
    return arch, int(wbits), int(ebits)


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


def _uvarint_len(n: int) -> int:
    return max(1, (max(int(n), 1).bit_length() + 6) // 7)


def _stream_bytes(n: int, bits: int, per_value: float) -> float:
    """Estimated size of :func:`encode_symbols` of ``n`` symbols of a ``bits``-bit alphabet at
    ``per_value`` bits each: length, offset, alphabet size, one count per symbol value (at most
    3 bytes each, about 2 on fitted models), the coded words (32-bit granularity)."""
    if n == 0:
        return 1.0
    alphabet = min((1 << bits) - 1, n)
    return 6 + 2.0 * alphabet + 4 * math.ceil(n * per_value / 32) + 4


def estimate_bytes(arch: Arch, wbits: int, ebits: int, fps: float = 25.0, *, upper: bool = False) -> float:
    """The file's size for ``arch`` at ``wbits``/``ebits``: container, header and scale sections
    exactly, symbol streams estimated (``upper``: bounded, at the full bit depth per value and 3
    bytes per count, which no fitted model exceeds)."""
    tensors = decoder_tensors(arch)
    n_scales = sum(shape[0] if choose_axis(shape) else 1 for _, shape in tensors)
    n_w, n_e = decoder_params(arch), embed_values(arch)
    if upper:
        w = 6 + 3.0 * min((1 << wbits) - 1, n_w) + 4 * math.ceil(n_w * wbits / 32) + 4
        e = 6 + 3.0 * min((1 << ebits) - 1, n_e) + 4 * math.ceil(n_e * ebits / 32) + 4 if n_e else 0.0
    else:
        w = _stream_bytes(n_w, wbits, max(_BITS_PER_WEIGHT_AT_8 + (wbits - 8), 1.0))
        e = _stream_bytes(n_e, ebits, max(_BITS_PER_EMBED_AT_6 + (ebits - 6), 1.0)) if n_e else 0.0
    sections = {"ws": 2 * n_scales, "w": w}
    if arch.kind == "hnerv":
        sections.update({"es": 4 * arch.embed_ch, "e": e})
    header = make_header((arch.frames, arch.height, arch.width, 3), fps, arch, wbits, ebits)
    head = len(ncx.pack(ncx.Container(arch.kind, _NeuralVideoCodec.version, header,
                                      {k: b"" for k in sections})))
    return head + sum(_uvarint_len(int(v)) - 1 + v for v in sections.values())


def smallest_reachable(kind: str, shape: tuple[int, ...], fps: float = 25.0, **arch_fields: Any) -> float:
    """Bytes of the smallest file the planner can promise for this clip: the smallest model at the
    lowest depths of the precision search, with the size bounded from above."""
    arch = _base_arch(kind, shape, arch_fields.pop("strides", None), **arch_fields)
    arch.width0 = MIN_WIDTH
    if kind == "hnerv" and arch_fields.get("embed_ch") is None:
        arch.embed_ch = 1
    return estimate_bytes(arch, WBITS[0], EBITS[0], fps, upper=True)


def _base_arch(kind: str, shape: tuple[int, ...], strides: list[int] | None, embed_ch: int | None = None,
               **arch_fields: Any) -> Arch:
    T, H, W = (int(v) for v in shape[:3])
    strides = [int(s) for s in (choose_strides(H, W) if strides is None else strides)]
    arch = Arch(kind=kind, frames=T, height=H, width=W, strides=strides, width0=MIN_WIDTH, embed_ch=embed_ch or 1,
                **arch_fields)
    arch.validate()
    return arch


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
    fps: float = 25.0,
    bits: tuple[int, int] | None = None,
    **arch_fields: Any,
) -> Arch:
    """The architecture for a clip of ``shape`` (T,H,W[,3]) under the given rate control.

    ``target_params`` (decoder parameters + embedding values, HNeRV's "model size") overrides the
    byte targets; it is how equal-size HNeRV/NeRV comparisons are made. An explicit ``width0``
    overrides all targets. ``budget`` (bits per value) replaces the calibrated file estimate."""
    T = int(shape[0])
    arch = _base_arch(kind, shape, strides, embed_ch, **arch_fields)
    h0, w0 = arch.grid
    if target_params is not None:
        if not target_params > 0:
            raise UsageError(f"target_params must be > 0, got {target_params}")
        size_of = lambda a: float(model_values(a))  # noqa: E731
        nbytes = float(target_params)
        embed_bits = 8.0
    else:
        nbytes = target_size(shape, quality, target_bpp, target_bytes)
        if budget is not None:
            size_of = budget.bytes
            embed_bits = budget.embed_bits
        else:
            wb, eb = bits or PLAN_BITS
            size_of = lambda a: estimate_bytes(a, wb, eb, fps)  # noqa: E731
            embed_bits = max(_BITS_PER_EMBED_AT_6 + (eb - 6), 1.0)
    if kind == "hnerv" and embed_ch is None:
        share = EMBED_SHARE * nbytes * 8 / (embed_bits * T * h0 * w0)
        arch.embed_ch = int(min(16, max(1, round(share))))
    if width0 is not None:
        arch.width0 = int(width0)
        arch.validate()
        return arch
    return _solve_width(arch, nbytes, size_of)


def _solve_width(arch: Arch, target: float, size_of: Any, hi: int = 1024) -> Arch:
    """The largest first width whose size fits ``target`` (at least ``MIN_WIDTH``); sizes grow
    with the width, so a bisection finds it and the choice is monotone in the target."""
    def at(w: int) -> Arch:
        return Arch(**{**arch.to_json(), "width0": w})

    lo, top = MIN_WIDTH, hi
    if size_of(at(lo)) > target:
        return at(lo)
    while lo < top:  # invariant: size(lo) <= target
        mid = (lo + top + 1) // 2
        if size_of(at(mid)) <= target:
            lo = mid
        else:
            top = mid - 1
    return at(lo)


# ------------------------------------------------------------------------- quantized model
class QuantizedModel:
    """A decoder with dequantized weights (+ dequantized embeddings for HNeRV): exactly what a
    decoder of the ``.ncx`` holds, whether built by the encoder or read from the stream."""

    def __init__(self, arch: Arch, state: dict[str, np.ndarray], embed: np.ndarray | None) -> None:
        self.arch = arch
        self.state = state
        self.embed = embed

    @torch.no_grad()
    def render(self, frames: tuple[int, int] | None = None, *, batch: int | None = None, device: str = "cpu",
               indices: np.ndarray | None = None) -> np.ndarray:
        """Decode frames ``a..b-1`` (all by default), or the frames ``indices``, to uint8 ``N,H,W,3``,
        ``batch`` at a time (default: :func:`render_batch`). The pixels do not depend on ``batch``."""
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise UsageError(f"batch must be a positive integer, got {batch!r}")
        if indices is None:
            a, b = _frame_range(frames, self.arch.frames)
            indices = np.arange(a, b)
        dev = resolve_device(device)
        if batch is None:
            batch = render_batch(self.arch, dev)
        dec = build_decoder(self.arch, self.state, dev)
        if dev.type == "cpu":
            # oneDNN's convolutions on these thin layers (12-48 channels) run 1.4-2.3x faster in
            # NHWC than in NCHW (perf suite, hnerv rows); the pixels stay those of the NCHW path up
            # to float rounding, and identical at every thread count
            dec = dec.to(memory_format=torch.channels_last)
        out = np.empty((len(indices), self.arch.height, self.arch.width, 3), dtype=np.uint8)
        with house_threads():  # the house policy (cores not already busy); the pixels do not depend on it
            self._render_into(out, dec, indices, batch, dev)
        return out

    def _render_into(self, out: np.ndarray, dec: torch.nn.Module, indices: np.ndarray, batch: int,
                     dev: Any) -> None:
        for i in range(0, len(indices), batch):
            idx = indices[i : i + batch]
            if self.arch.kind == "hnerv":
                assert self.embed is not None
                z = torch.from_numpy(np.ascontiguousarray(self.embed[idx])).to(dev)
                if dev.type == "cpu":
                    z = z.contiguous(memory_format=torch.channels_last)
            else:
                z = frame_times(torch.from_numpy(np.asarray(idx)), self.arch.frames).to(dev)
            y = dec(z).float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            out[i : i + len(idx)] = y.permute(0, 2, 3, 1).cpu().numpy()


#: CPU decode: frames per decoder call are chosen so that the largest activation of one call stays
#: within this many bytes. On the bunny models (3-4 MiB per frame at 320x180) one frame per call ran
#: 1.0-1.4x faster than eight at two threads: the layers' tensors stay in the core's cache between
#: the convolution, the pixel shuffle and the GELU.
_CPU_BATCH_BYTES = 4 << 20


def render_batch(arch: Arch, device: Any) -> int:
    """Frames per decoder call: 8 on an accelerator, on the CPU as many as fit :data:`_CPU_BATCH_BYTES`
    (at least one)."""
    if getattr(device, "type", device) != "cpu":
        return 8
    h, w = arch.grid
    widths = arch.widths()
    largest = 0
    for i, s in enumerate(arch.strides):  # conv output (before the pixel shuffle) = shuffled size
        h, w = h * s, w * s
        largest = max(largest, widths[i + 1] * h * w * 4)
    return int(min(8, max(1, _CPU_BATCH_BYTES // max(largest, 1))))


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


def _quantize_weights(sd: Mapping[str, np.ndarray], arch: Arch, wbits: int) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    syms, scales, state = [], [], {}
    for name, shape in decoder_tensors(arch):
        qt = quantize(sd[name], wbits, per_channel=choose_axis(shape), symmetric=True)
        syms.append(qt.q.reshape(-1))
        scales.append(qt.scale)
        state[name] = qt.dequantize().reshape(shape)
    return state, {"ws": scales_to_bytes(scales), "w": encode_symbols(np.concatenate(syms))}


def _quantize_embed(embed: np.ndarray, ebits: int) -> tuple[np.ndarray, dict[str, bytes]]:
    ct = np.ascontiguousarray(embed.transpose(1, 0, 2, 3))  # per embedding channel
    qt = quantize(ct, ebits, per_channel=True, symmetric=False)
    sections = {"es": scales_to_bytes([qt.scale, qt.offset]), "e": encode_symbols(qt.q)}
    return np.ascontiguousarray(qt.dequantize().transpose(1, 0, 2, 3)), sections


def _decoder_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in model.decoder.state_dict().items()}


def quantize_model(model: torch.nn.Module, arch: Arch, embed: np.ndarray | None, wbits: int,
                   ebits: int) -> tuple[QuantizedModel, dict[str, bytes]]:
    """Quantize a fitted model (e.g. ``train.fit(...).model``) and its embeddings: returns the
    model a decoder of the stream holds and the stream's sections."""
    state, sections = _quantize_weights(_decoder_state(model), arch, wbits)
    deq_embed = None
    if embed is not None:
        deq_embed, esec = _quantize_embed(embed, ebits)
        sections.update(esec)
    return QuantizedModel(arch, state, deq_embed), sections


def choose_precision(model: torch.nn.Module, arch: Arch, embed: np.ndarray | None, frames: np.ndarray,
                     target: float | None, wbits: int | None, ebits: int | None, make_file: Any
                     ) -> tuple[QuantizedModel, dict[str, bytes], int, int, dict[str, Any]]:
    """Measure the real file at every weight/embedding depth allowed (``wbits``/``ebits`` fixed
    when given) and keep the best-PSNR one (on ``SEARCH_FRAMES`` frames) among those within
    ``-RATE_TOLERANCE .. +SELECT_ABOVE`` of ``target``; without any, the one closest to the target
    in ratio. ``make_file(wbits, ebits, sections) -> bytes`` is the file the encode would write.
    Without a target: ``FIXED_BITS`` (or the given ones)."""
    if target is None:
        wl, el = [FIXED_BITS[0] if wbits is None else wbits], [FIXED_BITS[1] if ebits is None else ebits]
    else:
        wl = list(WBITS) if wbits is None else [wbits]
        el = list(EBITS) if ebits is None else [ebits]
    if embed is None:
        el = el[:1] if ebits is not None or target is None else [6]
    sd = _decoder_state(model)
    wq = {b: _quantize_weights(sd, arch, b) for b in wl}
    eq = {b: _quantize_embed(embed, b) for b in el} if embed is not None else {b: (None, {}) for b in el}
    sizes = {(w, e): len(make_file(w, e, {**wq[w][1], **eq[e][1]})) for w in wl for e in el}
    info: dict[str, Any] = {"candidates": len(sizes)}
    if target is None or len(sizes) == 1:
        w, e = next(iter(sizes))
    else:
        window = [k for k, v in sizes.items() if (1 - RATE_TOLERANCE) * target <= v <= (1 + SELECT_ABOVE) * target]
        if window:
            idx = np.unique(np.linspace(0, arch.frames - 1, min(SEARCH_FRAMES, arch.frames)).round().astype(np.int64))
            ref = frames[idx]
            scores = {k: psnr_of(ref, QuantizedModel(arch, wq[k[0]][0], eq[k[1]][0]).render(indices=idx)) for k in window}
            w, e = max(window, key=lambda k: (round(scores[k], 6), -sizes[k]))
            info["search_psnr"] = round(scores[(w, e)], 4)
        else:
            w, e = min(sizes, key=lambda k: (abs(math.log(sizes[k] / target)), -k[0]))
        info["window"] = len(window)
    qmodel = QuantizedModel(arch, wq[w][0], eq[e][0])
    return qmodel, {**wq[w][1], **eq[e][1]}, w, e, info


def read_model(header: Mapping[str, Any], sections: Mapping[str, bytes], name: str = "hnerv",
               max_values: int | None = None, max_work: int | None = None, *, checked: bool = False) -> QuantizedModel:
    """Rebuild the quantized model from a header and sections (the decoder side); the header is
    validated first (:func:`check_header`), or only parsed when ``checked`` (the codec's gated
    ``decompress`` has run the schema already)."""
    if checked:
        arch, wbits, ebits = _header_arch(header)
    else:
        arch, wbits, ebits = check_header(header, name, max_values, max_work)
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


#: parameters both codecs take (rate control, training, quantization)
_COMMON: tuple[Param, ...] = (
    Param("quality", "int", None, f"quality preset 1..8 (target bpp {QUALITY_BPP}); none: {DEFAULT_QUALITY} "
          "unless another rate control is given", lo=1, hi=8, nullable=True),
    Param("target_bpp", "float", None, "target bits per pixel of the whole file", lo=1e-6, nullable=True),
    Param("target_bytes", "int", None, "target size of the whole file in bytes", lo=1, nullable=True),
    Param("target_params", "int", None, "model size in values (decoder parameters + embeddings; "
          "equal-size comparisons)", lo=1, nullable=True),
    Param("epochs", "int", 300, "training epochs (the most, under time_budget)", lo=1, hi=1_000_000),
    Param("time_budget", "float", None, "wall-clock seconds for the whole encode (training, pruning, "
          "fine-tune, quantization); none: no limit", lo=0.001, nullable=True),
    Param("lr", "float", None, "Adam learning rate; none: chosen from the planned iterations and model size",
          lo=1e-7, hi=10.0, nullable=True),
    Param("batch", "int", 2, "frames per training step", lo=1, hi=4096),
    Param("prune", "float", 0.1, "fraction of decoder weights pruned before the fine-tune", lo=0.0, hi=0.99),
    Param("finetune_epochs", "int", None, "fine-tune epochs after pruning; none: epochs // 10", lo=0,
          nullable=True),
    Param("qat", "bool", True, "quantization-aware fine-tune (straight-through steps at weight_bits / embed_bits, "
          "or 8 / 6) after pruning"),
    Param("qat_share", "float", 0.0, "last fraction of the training epochs that are quantization-aware as well "
          "(0: the fine-tune only)", lo=0.0, hi=1.0),
    Param("rate_weight", "float", 0.0, "weight of the rate term in the training loss (relative: at 1, 1 % fewer "
          "estimated bits is worth 1 % more squared error); 0: distortion only", lo=0.0, hi=100.0),
    Param("latent_ramp", "int", 5, "HNeRV: epochs over which the step rises to the latent phase's larger one "
          "after the embeddings become free parameters (0: at once)", lo=0, hi=10_000),
    Param("seed", "int", 0, "seed of the initial weights and batch order", lo=0, hi=2**62),
    Param("checkpoint", "path", None, "checkpoint file: written every epoch, resumed from when it exists",
          nullable=True),
    Param("device", "str", "auto", "training device: auto, cpu, cuda, cuda:N"),
    Param("threads", "int", None, "torch threads for the encode; none: OMP_NUM_THREADS if set, else 1 "
          "(restored afterwards)", lo=1, hi=256, nullable=True),
    Param("weight_bits", "int", None, "weight bit depth; none: 8, or searched 5..12 to land a rate target",
          lo=2, hi=16, nullable=True),
    Param("embed_bits", "int", None, "embedding bit depth (hnerv); none: 6, or searched 4..10 to land a rate "
          "target", lo=2, hi=16, nullable=True),
    Param("fps", "float", 25.0, "frame rate stored in the header", lo=0.001, hi=1000),
    Param("strides", "ints", None, "decoder up-sampling factors; none: chosen from the frame size", lo=1, hi=8,
          nullable=True),
    Param("width0", "int", None, "first decoder width (overrides the rate control)", lo=1, hi=4096, nullable=True),
)


class _NeuralVideoCodec(Codec):
    kind: ClassVar[str] = "video"
    #: 3: compact header (<= 150 bytes); 2: the encoder's report left the header; 1 is still decoded
    version: ClassVar[int] = 3
    min_version: ClassVar[int] = 1
    model_kind: ClassVar[str]

    def _compress(self, data: Any, progress: bool, values: dict[str, Any], arch_keys: tuple[str, ...]
                  ) -> tuple[dict, dict[str, bytes], dict[str, Any]]:
        from .train import FitConfig, fit, resolve_threads, torch_threads  # encoding is training

        t0 = time.monotonic()
        frames = check_video(data)
        v = values
        threads = resolve_threads(v["threads"])
        rate = {k: v[k] for k in ("quality", "target_bpp", "target_bytes", "target_params", "strides", "width0")}
        arch_fields = {k: v[k] for k in arch_keys if v[k] is not None}
        if self.model_kind == "hnerv":
            rate["embed_ch"] = v["embed_ch"]
        fps = float(v["fps"])
        target = None
        if v["width0"] is None and v["target_params"] is None:
            target = target_size(frames.shape, v["quality"], v["target_bpp"], v["target_bytes"])
            floor = smallest_reachable(self.model_kind, frames.shape, fps, strides=v["strides"],
                                       **({"embed_ch": v["embed_ch"]} if self.model_kind == "hnerv" else {}),
                                       **arch_fields)
            if target * (1 + RATE_TOLERANCE) < floor:
                pixels = frames.shape[0] * frames.shape[1] * frames.shape[2]
                raise UsageError(
                    f"{self.name} cannot make a file of {target:.0f} bytes ({target * 8 / pixels:.4f} bpp) for this "
                    f"{frames.shape[0]}x{frames.shape[1]}x{frames.shape[2]} clip: the smallest reachable rate is "
                    f"{floor * 8 / pixels:.4f} bpp ({floor:.0f} bytes); ask for at least that, or give more frames")
        default_bits = PLAN_BITS if target is not None else FIXED_BITS  # what the file will use
        bits = (v["weight_bits"] or default_bits[0], v["embed_bits"] or default_bits[1])
        arch = plan(self.model_kind, frames.shape, fps=fps, bits=bits, **rate, **arch_fields)
        cfg = FitConfig(progress=progress, threads=threads,
                        **{k: v[k] for k in ("epochs", "time_budget", "lr", "batch", "prune", "finetune_epochs",
                                             "seed", "checkpoint", "device", "rate_weight", "qat_share",
                                             "latent_ramp")},
                        qat_bits=bits if v["qat"] else None,
                        **({"encoder_share": v["encoder_share"]} if v.get("encoder_share") is not None else {}))
        with torch_threads(threads):  # the whole encode, so the bytes never depend on the caller's count
            cfg.time_reserve = time.monotonic() - t0
            result = fit(frames, arch, cfg)
            model = result.model.cpu().float()  # this encode's own model: moving it touches nobody else's
            if arch.kind != "hnerv":
                embed = None
            else:  # the latents the fit optimised, or (no latent phase) the encoder's output
                embed = result.latents if result.latents is not None else embeddings(model, frames)

            def make_file(wb: int, eb: int, sections: dict[str, bytes]) -> bytes:
                return ncx.pack(ncx.Container(self.name, self.version, make_header(frames.shape, fps, arch, wb, eb),
                                              sections))

            qmodel, sections, wbits, ebits, search = choose_precision(
                model, arch, embed, frames, target, v["weight_bits"], v["embed_bits"], make_file)
            recon = qmodel.render(device="cpu")  # exactly what decode(device="cpu") returns
        header = make_header(frames.shape, fps, arch, wbits, ebits)
        size = len(make_file(wbits, ebits, sections))  # what encode() writes
        # progress is the training's tqdm bar; the summary is the caller's to print, from the report
        report = self._report(frames, recon, arch, result, cfg, sections, size, time.monotonic() - t0)
        report.update({"weight_bits": wbits, "embed_bits": ebits, "header_bytes": len(ncx.pack(ncx.Container(
            self.name, self.version, header, {}))), "precision_search": search})
        if target is not None:
            report["target_bytes"] = round(target, 1)
            report["rate_error"] = round(size / target - 1, 4)
            if abs(size / target - 1) > RATE_TOLERANCE:
                report["warnings"].append(f"the file is {size} bytes, {100 * (size / target - 1):+.1f} % from the "
                                          f"target {target:.0f}: outside the +-{100 * RATE_TOLERANCE:.0f} % "
                                          "the rate control promises")
        if v["time_budget"] is not None and report["seconds"] > 1.1 * v["time_budget"]:
            report["warnings"].append(f"the encode took {report['seconds']:.1f} s for a {v['time_budget']:g} s budget")
        return header, sections, report

    @staticmethod
    def _report(frames: np.ndarray, recon: np.ndarray, arch: Arch, result: "FitResult", cfg: Any,
                sections: Mapping[str, bytes], size: int, seconds: float) -> dict[str, Any]:
        """The encode's statistics (never part of the file): size, PSNR, model, training."""
        pixels = frames.shape[0] * frames.shape[1] * frames.shape[2]
        stats = result.stats()
        return {
            "bpp": round(size * 8 / pixels, 6), "bytes": size, "psnr": round(psnr_of(frames, recon), 4),
            "psnr_float": stats["psnr_float"], "baseline_psnr": stats["baseline_psnr"],
            "params": decoder_params(arch), "embed_values": embed_values(arch),
            "model_values": model_values(arch), "width0": arch.width0, "embed_ch": arch.embed_ch if arch.kind == "hnerv" else 0,
            "epochs": stats["epochs"], "finetune_epochs": stats["finetune_epochs"],
            "encoder_epochs": stats["encoder_epochs"],
            "prune": cfg.prune, "lr": stats["lr"], "lr_auto": stats["lr_auto"], "threads": stats["threads"],
            "restarts": stats["restarts"], "warnings": stats["warnings"],
            "seconds": round(seconds, 2), "fit_seconds": stats["seconds"],
            "sections": {k: len(v) for k, v in sections.items()}, "history": stats["history"],
        }

    @classmethod
    def schema(cls) -> Schema:
        return SCHEMAS[cls.name]

    def decompress(self, header: dict, sections: Mapping[str, bytes], *, frames: tuple[int, int] | None = None,
                   batch: int | None = None, device: str = "auto", max_values: int | None = None,
                   max_work: int | None = None) -> np.ndarray:
        """Decode to uint8 ``T,H,W,3``; ``frames=(a, b)`` decodes frames a..b-1 only; ``max_values`` /
        ``max_work``: refuse a file claiming more decoded values / decoder multiply-adds (of the
        whole clip; see :mod:`neurocodec.schema`)."""
        model = read_model(header, sections, self.name, checked=True)  # the gate ran check_header
        if model.arch.kind != self.model_kind:
            raise CorruptStreamError(f"stream holds a {model.arch.kind} model, not {self.model_kind}")
        return model.render(frames, batch=batch, device=device)


class HNeRVCodec(_NeuralVideoCodec):
    """HNeRV: ConvNeXt-encoded per-frame embeddings + a decoder network, both in the stream."""

    name: ClassVar[str] = "hnerv"
    description: ClassVar[str] = "HNeRV (CVPR 2023): video as embeddings + a fitted decoder network"
    model_kind: ClassVar[str] = "hnerv"
    params: ClassVar[tuple[Param, ...]] = _COMMON + (
        Param("embed_ch", "int", None, "embedding channels; none: about 12 % of the budget", lo=1, hi=256,
              nullable=True),
        Param("enc_width", "int", 32, "encoder width (not transmitted)", lo=1, hi=1024),
        Param("encoder_share", "float", None, "fraction of the training epochs run through the encoder; after "
              "them the embeddings are optimised directly (decoder-only steps, about 3x cheaper); 1: always "
              "the encoder; none: the screened default (train.ENCODER_SHARE)", lo=0.001, hi=1.0, nullable=True),
        Param("ks_min", "int", 1, "first decoder kernel size", lo=1, hi=9),
        Param("ks_max", "int", 5, "largest decoder kernel size", lo=1, hi=9),
        Param("reduce", "float", 1.2, "width divisor per decoder stage", lo=1.0, hi=8.0),
        Param("lower_width", "int", 12, "smallest decoder width", lo=1, hi=4096),
        Param("block", "str", "conv", "decoder stage: conv (the paper's k x k conv) or dw (a depth-wise k x k "
              "and a 1x1: about k^2 fewer weights per stage, so wider stages at the same size)", choices=BLOCKS),
    )

    @declared()
    def compress(self, data: Any, *, progress: bool = False, **values: Any) -> tuple[dict, dict[str, bytes], dict[str, Any]]:
        """Fit HNeRV to a ``T,H,W,3`` uint8 clip. Rate: one of ``quality`` (1..8), ``target_bpp``,
        ``target_bytes``, ``target_params`` (or an explicit ``width0``). ``checkpoint``: a path
        where training is checkpointed every epoch and resumed from. Returns the header, the
        sections and the report (bytes, bpp, PSNR after quantization, epochs, lr, restarts,
        warnings, times, loss curve)."""
        return self._compress(data, progress, values, ("enc_width", "ks_min", "ks_max", "reduce", "lower_width",
                                                         "block"))


class NeRVCodec(_NeuralVideoCodec):
    """NeRV: positional encoding of the frame index -> MLP -> the same kind of decoder."""

    name: ClassVar[str] = "nerv"
    description: ClassVar[str] = "NeRV (NeurIPS 2021): video as a network of the frame index"
    model_kind: ClassVar[str] = "nerv"
    params: ClassVar[tuple[Param, ...]] = _COMMON + (
        Param("reduce", "float", 2.0, "width divisor per decoder stage", lo=1.0, hi=8.0),
        Param("lower_width", "int", 12, "smallest decoder width", lo=1, hi=4096),
        Param("pe_base", "float", 1.25, "positional-encoding base", lo=1.0, hi=16.0),
        Param("pe_levels", "int", 80, "positional-encoding frequencies", lo=1, hi=256),
        Param("mlp_hidden", "int", None, "hidden MLP width; none: one linear layer (as the official code)", lo=0,
              hi=8192, nullable=True),
    )

    @declared()
    def compress(self, data: Any, *, progress: bool = False, **values: Any) -> tuple[dict, dict[str, bytes], dict[str, Any]]:
        """Fit NeRV to a ``T,H,W,3`` uint8 clip (same rate controls, checkpoint and report as ``hnerv``)."""
        return self._compress(data, progress, values, ("reduce", "lower_width", "pe_base", "pe_levels", "mlp_hidden"))
