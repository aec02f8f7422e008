"""HNeRV and NeRV networks, their architecture description, and the size planner.

HNeRV (Chen et al., CVPR 2023): a ConvNeXt encoder turns each frame into a tiny embedding
(``embed_ch x h0 x w0``); a decoder of blocks ``conv(k_i) -> PixelShuffle(s_i) -> GELU`` grows it
back to the frame. Kernel sizes grow toward the output (1, 3, 5, 5, ...) and widths shrink by
``reduce`` (1.2) per stage with a floor (``lower_width``, 12): the parameters sit where the
resolution is, which is what HNeRV changes with respect to NeRV.

NeRV (Chen et al., NeurIPS 2021): the frame index goes through a positional encoding
(``base^l * pi * t``, sin and cos) and an MLP to a small feature map, then the same kind of decoder
with 3x3 kernels everywhere and widths halved per stage: most parameters sit in the MLP.

:class:`Arch` holds everything needed to rebuild the decoder; it travels as JSON in the header.
The encoder is not transmitted (only its output, the embeddings).

No global RNG: a fresh :class:`Model` takes its initial weights from a ``torch.Generator`` it is
given (the same values ``torch.manual_seed(seed)`` and PyTorch's default initialisation give, so
seeds keep their meaning), and :func:`build_decoder` makes a decoder from transmitted tensors
without drawing any random number. Both build the layers on the ``meta`` device first (no storage,
no initialisation), then allocate them: that is how an ``nn.Module`` is made without touching
torch's process-wide generator.

This module is what decoding needs; it never imports the training code.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ...errors import CorruptStreamError, UsageError

_FACTORS = (5, 4, 3, 2)
#: decoder stage kinds: the paper's ``conv(k) -> PixelShuffle -> GELU``, or the same with the k x k conv
#: factored into a depth-wise k x k and a 1x1 (about k^2 times fewer weights per stage at equal widths)
BLOCKS = ("conv", "dw")


# ------------------------------------------------------------------------------- architecture
@dataclass
class Arch:
    """Decoder description (and encoder hyperparameters, which are not needed to decode)."""

    kind: str  # "hnerv" | "nerv"
    frames: int  # T
    height: int  # original H, W (output is cropped to this)
    width: int
    strides: list[int]  # decoder up-sampling factors, input to output
    width0: int  # HNeRV: c2 (first decoder width); NeRV: feature-map channels after the MLP
    embed_ch: int = 16  # HNeRV embedding channels
    ks_min: int = 1  # HNeRV kernel schedule: k_i = min(ks_min + 2 i, ks_max)
    ks_max: int = 5
    reduce: float = 1.2
    lower_width: int = 12
    enc_width: int = 32  # encoder width (not transmitted; only kept for resume checks)
    pe_base: float = 1.25  # NeRV positional encoding
    pe_levels: int = 80
    mlp_hidden: int = 0  # NeRV: 0 = one linear layer (official HNeRV code), else a hidden layer
    block: str = "conv"  # HNeRV stage: "conv" (the paper's k x k conv) or "dw" (depth-wise k x k, then 1x1)

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    @property
    def grid(self) -> tuple[int, int]:
        p = self.total_stride
        return -(-self.height // p), -(-self.width // p)

    @property
    def padded(self) -> tuple[int, int]:
        h0, w0 = self.grid
        p = self.total_stride
        return h0 * p, w0 * p

    def kernel(self, i: int) -> int:
        if self.kind == "nerv":
            return 3
        return min(self.ks_min + 2 * i, self.ks_max)

    def factored(self, i: int) -> bool:
        """Whether stage ``i`` is a depth-wise k x k + 1x1 pair (``block="dw"``; a 1x1 stage stays one conv)."""
        return self.block == "dw" and self.kernel(i) > 1

    def stage_weights(self, i: int) -> int:
        """Weights of decoder stage ``i`` (biases excluded), which are also its multiply-adds per
        input position: every conv of a stage runs at the stage's input resolution."""
        widths, k, s = self.widths(), self.kernel(i), self.strides[i]
        cin, cout = widths[i], widths[i + 1] * s * s
        return cin * k * k + cin * cout if self.factored(i) else cin * cout * k * k

    def stage_biases(self, i: int) -> int:
        widths = self.widths()
        return (widths[i] if self.factored(i) else 0) + widths[i + 1] * self.strides[i] ** 2

    def widths(self) -> list[int]:
        """Input width of each decoder stage, then the width going into the head."""
        out = [self.width0]
        floor = min(self.lower_width, self.width0)  # tiny models shrink the floor too
        for _ in self.strides:
            out.append(max(int(round(out[-1] / self.reduce)), floor))
        return out

    def embed_shape(self) -> tuple[int, int, int, int]:
        h0, w0 = self.grid
        return (self.frames, self.embed_ch, h0, w0)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Arch":
        return cls.from_dict(d, CorruptStreamError)

    # -------------------------------------------------------------- compact form (header v3)
    def to_compact(self, wbits: int, ebits: int) -> str:
        """The decoder's description and the bit depths as one terse string (bitstream version 3):
        ``"h s5.4.2 w12 e4 k1.5 r1.2 l12 b8.6"`` (HNeRV) or ``"n s5.4.2 w8 r2.0 l12 p1.25.80 m0 b8.6"``
        (NeRV). Frames and frame size come from the header's ``shape``; the encoder width is not
        needed to decode, so it is not sent. About 40 bytes where the JSON form took about 300."""
        tok = [self.kind[0], "s" + ".".join(str(int(s)) for s in self.strides), f"w{self.width0}"]
        if self.kind == "hnerv":
            tok += [f"e{self.embed_ch}", f"k{self.ks_min}.{self.ks_max}"]
        tok += [f"r{float(self.reduce)!r}", f"l{self.lower_width}"]
        if self.block != "conv":  # absent: the paper's block (every file written before "dw" existed)
            tok.append(f"x{self.block}")
        if self.kind == "nerv":
            tok += [f"p{float(self.pe_base)!r}.{self.pe_levels}", f"m{self.mlp_hidden}"]
        tok.append(f"b{int(wbits)}.{int(ebits)}")
        return " ".join(tok)

    @classmethod
    def from_compact(cls, text: Any, frames: int, height: int, width: int) -> tuple["Arch", int, int]:
        """Inverse of :meth:`to_compact`: ``(arch, wbits, ebits)``; anything malformed is a
        :class:`CorruptStreamError` (never a KeyError/ValueError from deep inside)."""
        def bad(why: str) -> CorruptStreamError:
            return CorruptStreamError(f"bad architecture in header ({why})")

        if not isinstance(text, str) or not 0 < len(text) <= 200:
            raise bad("not a short string")
        parts = text.split(" ")
        kinds = {"h": "hnerv", "n": "nerv"}
        if parts[0] not in kinds:
            raise bad(f"unknown model kind {parts[0][:8]!r}")
        kind = kinds[parts[0]]
        need = ("s", "w", "r", "l", "b") + (("e", "k") if kind == "hnerv" else ("p", "m"))
        optional = ("x",) if kind == "hnerv" else ()
        fields: dict[str, str] = {}
        for t in parts[1:]:
            if not t or t[0] not in need + optional or t[0] in fields:
                raise bad(f"unexpected field {t[:8]!r}")
            fields[t[0]] = t[1:]
        if set(fields) - set(optional) != set(need):
            raise bad(f"missing fields {sorted(set(need) - set(fields))}")

        def ints(v: str, n: int | None = None) -> list[int]:
            xs = v.split(".")
            if (n is not None and len(xs) != n) or not all(x.isdigit() and len(x) <= 7 for x in xs):
                raise bad(f"{v[:12]!r} is not a list of integers")
            return [int(x) for x in xs]

        def num(v: str) -> float:
            try:
                out = float(v)
            except ValueError:
                raise bad(f"{v[:12]!r} is not a number") from None
            if not math.isfinite(out):
                raise bad("non-finite number")
            return out

        kw: dict[str, Any] = dict(kind=kind, frames=frames, height=height, width=width, strides=ints(fields["s"]),
                                  width0=ints(fields["w"], 1)[0], reduce=num(fields["r"]),
                                  lower_width=ints(fields["l"], 1)[0])
        if kind == "hnerv":
            kw["embed_ch"] = ints(fields["e"], 1)[0]
            kw["ks_min"], kw["ks_max"] = ints(fields["k"], 2)
            if "x" in fields:
                if fields["x"] not in BLOCKS[1:]:
                    raise bad(f"unknown block {fields['x'][:8]!r}")
                kw["block"] = fields["x"]
        else:
            base, _, levels = fields["p"].rpartition(".")
            kw["pe_base"], kw["pe_levels"] = num(base), ints(levels, 1)[0]
            kw["mlp_hidden"] = ints(fields["m"], 1)[0]
        wbits, ebits = ints(fields["b"], 2)
        arch = cls(**kw)
        arch.validate(CorruptStreamError)
        return arch, wbits, ebits

    @classmethod
    def from_dict(cls, d: Any, err: type[Exception] = CorruptStreamError) -> "Arch":
        """An architecture from its JSON form (bitstream versions 1-2, checkpoints), every field's
        type checked first so a forged header gives ``err``, never a TypeError/ValueError."""
        if not isinstance(d, dict):
            raise err("bad architecture in header (not an object)")
        known = {f: t for f, t in cls.__annotations__.items()}
        for k, v in d.items():
            if k not in known:
                raise err(f"bad architecture in header (unknown field {str(k)[:20]!r})")
            t = known[k]
            ok = (isinstance(v, str) if t == "str" else
                  isinstance(v, int) and not isinstance(v, bool) if t == "int" else
                  isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) if t == "float" else
                  isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
            if not ok:
                raise err(f"bad architecture in header (field {k} = {str(v)[:20]!r})")
        try:
            arch = cls(**d)
        except TypeError as exc:
            raise err(f"bad architecture in header: {exc}") from None
        arch.validate(err)
        return arch

    def validate(self, err: type[Exception] = UsageError) -> None:
        if self.kind not in ("hnerv", "nerv"):
            raise err(f"unknown model kind {self.kind!r}")
        if self.block not in BLOCKS or (self.kind == "nerv" and self.block != "conv"):
            raise err(f"unknown decoder block {self.block!r} for {self.kind} (known: {', '.join(BLOCKS)}; nerv: conv)")
        if not (1 <= len(self.strides) <= 8) or any(not 1 <= int(s) <= 8 for s in self.strides):
            raise err(f"strides must be 1..8 values in 1..8, got {self.strides}")
        for name in ("frames", "height", "width", "width0", "embed_ch", "lower_width", "enc_width", "pe_levels", "mlp_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "mlp_hidden" else 1) or v > 1 << 20:
                raise err(f"architecture field {name}={v!r} out of range")
        if not (1.0 <= float(self.reduce) <= 8.0) or not (1 <= self.ks_min <= 9 and self.ks_min <= self.ks_max <= 9):
            raise err("architecture kernel/reduce fields out of range")
        if self.width0 > 4096 or self.embed_ch > 256 or self.mlp_hidden > 8192 or self.pe_levels > 256:
            raise err("architecture widths out of range")
        if not (1.0 <= float(self.pe_base) <= 16.0):
            raise err(f"architecture field pe_base={self.pe_base!r} out of range")
        # what a decoder would allocate: refuse absurd sizes before any memory is taken
        if self.frames * self.height * self.width > 1 << 34 or decoder_params(self) > 1 << 27:
            raise err("architecture too large (frames x size or decoder parameters out of range)")


def choose_strides(height: int, width: int, *, max_positions: int = 24, min_side: int = 2) -> list[int]:
    """Decoder strides for a frame size: the total stride P (a product of 2..5) that pads the frame
    least while leaving an embedding grid of at least ``min_side`` rows and columns and at most
    ``max_positions`` positions (HNeRV's 2x4 grid idea, scaled to small frames); ties go to the
    larger P. Returned largest first, as in the paper (5, 4, 4, 2, 2)."""
    best: tuple[float, int, list[int]] | None = None
    for n in range(1, 6):
        for combo in _combos(n):
            p = math.prod(combo)
            h0, w0 = -(-height // p), -(-width // p)
            if min(h0, w0) < min_side or h0 * w0 > max_positions:
                continue
            waste = (h0 * w0 * p * p) / (height * width)
            key = (round(waste, 6), -p, -n)
            if best is None or key < best[:3]:  # type: ignore[operator]
                best = (*key, sorted(combo, reverse=True))  # type: ignore[assignment]
    if best is None:  # tiny frames: one stride-2 stage, the grid is what it is
        return [2] if min(height, width) >= 2 else [1]
    return best[3]  # type: ignore[index]


def _combos(n: int) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for _ in range(n):
        out = [c + (f,) for c in out for f in _FACTORS if not c or f <= c[-1]]
    return out


# ------------------------------------------------------------------------------------ modules
def pe_freqs(arch: Arch) -> torch.Tensor:
    """NeRV's positional-encoding frequencies ``base^l * pi`` (computed in float64, kept in float32)."""
    return ((arch.pe_base ** torch.arange(arch.pe_levels, dtype=torch.float64)) * math.pi).to(torch.float32)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an N,C,H,W tensor."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(ch, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depth-wise 7x7 -> LayerNorm -> 4x MLP with GELU -> layer scale (1e-6), residual."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(ch, ch, 7, padding=3, groups=ch)
        self.norm = nn.LayerNorm(ch, eps=1e-6)
        self.fc1 = nn.Linear(ch, 4 * ch)
        self.fc2 = nn.Linear(4 * ch, ch)
        self.gamma = nn.Parameter(torch.full((ch,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class Encoder(nn.Module):
    """ConvNeXt encoder: per stage a strided conv (kernel = stride) + LayerNorm + one ConvNeXt
    block; the decoder's strides reversed; a 1x1 conv to ``embed_ch`` at the end."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for s in reversed(arch.strides):
            layers += [nn.Conv2d(cin, arch.enc_width, s, stride=s), LayerNorm2d(arch.enc_width), ConvNeXtBlock(arch.enc_width)]
            cin = arch.enc_width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(cin, arch.embed_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class Decoder(nn.Module):
    """Stem -> [conv(k_i) -> PixelShuffle(s_i) -> GELU] per stride -> 3x3 head -> tanh/2 + 1/2.

    Made by :class:`Model` (seeded weights) or :func:`build_decoder` (transmitted weights); built
    directly, like any ``nn.Module``, it would draw its initial weights from torch's global RNG."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        h0, w0 = arch.grid
        widths = arch.widths()
        if arch.kind == "hnerv":
            self.stem = nn.Sequential(nn.Conv2d(arch.embed_ch, widths[0], 1), nn.GELU())
        else:
            # official HNeRV code's NeRV: one linear layer from the encoding to the feature map
            # (mlp_hidden = 0); mlp_hidden > 0 inserts a hidden layer (the original NeRV's stem)
            dims = [2 * arch.pe_levels] + ([arch.mlp_hidden] if arch.mlp_hidden else []) + [widths[0] * h0 * w0]
            layers: list[nn.Module] = []
            for a, b in zip(dims, dims[1:]):
                layers += [nn.Linear(a, b), nn.GELU()]
            self.stem = nn.Sequential(*layers)
            self.register_buffer("freqs", pe_freqs(arch), persistent=False)
        blocks = []
        for i, s in enumerate(arch.strides):
            k, cin, cout = arch.kernel(i), widths[i], widths[i + 1] * s * s
            if arch.factored(i):
                convs: list[nn.Module] = [nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin), nn.Conv2d(cin, cout, 1)]
            else:
                convs = [nn.Conv2d(cin, cout, k, padding=k // 2)]
            blocks.append(nn.Sequential(*convs, nn.PixelShuffle(s), nn.GELU()))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def reset_buffers(self) -> None:
        """Recompute the (untransmitted) buffers after the layers were allocated with ``to_empty``."""
        if self.arch.kind == "nerv":
            with torch.no_grad():
                self.freqs.copy_(pe_freqs(self.arch))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """HNeRV: ``z`` is N,embed_ch,h0,w0. NeRV: ``z`` is N normalised frame times in [0, 1]."""
        if self.arch.kind == "hnerv":
            return self.stem(z)
        h0, w0 = self.arch.grid
        t = z.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        pe = torch.cat([torch.sin(t), torch.cos(t)], dim=1)
        return self.stem(pe).reshape(-1, self.arch.width0, h0, w0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.features(z)))
        x = torch.tanh(x) * 0.5 + 0.5
        return x[:, :, : self.arch.height, : self.arch.width]  # crop the padding


class Model(nn.Module):
    """Encoder (HNeRV only) + decoder; ``forward(frames or times) -> N,3,H,W in [0, 1]``.

    Initial weights come from ``generator`` (a fresh ``torch.Generator().manual_seed(0)`` when none
    is given), never from torch's global generator; the model is built on the CPU."""

    def __init__(self, arch: Arch, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        arch.validate()
        self.arch = arch
        with torch.device("meta"):  # layers without storage: nothing is drawn from the global RNG
            self.encoder = Encoder(arch) if arch.kind == "hnerv" else None
            self.decoder = Decoder(arch)
        self.to_empty(device="cpu")
        self.decoder.reset_buffers()
        init_parameters(self, torch.Generator().manual_seed(0) if generator is None else generator)
        # HNeRV: one embedding per frame as free parameters (T,C,h0,w0, zeros until a fit fills them
        # from the encoder and then optimises them directly: decoder-only steps, see .train)
        self.latents = nn.Parameter(torch.zeros(arch.embed_shape())) if arch.kind == "hnerv" else None

    @torch.no_grad()
    def fill_latents(self, frames: torch.Tensor, batch: int = 8) -> None:
        """Set :attr:`latents` to the encoder's embeddings of ``frames`` (T,3,H,W uint8, on the
        model's device): the start of a fit's latent phase."""
        assert self.latents is not None
        for i in range(0, frames.shape[0], batch):
            self.latents[i : i + batch] = self.embed(frames[i : i + batch].float().div_(255.0))

    def decode_latents(self, index: torch.Tensor) -> torch.Tensor:
        """Frames ``index`` from the free embeddings (the latent phase's forward pass)."""
        assert self.latents is not None
        return self.decoder(self.latents[index])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """N,3,H,W in [0,1] -> embeddings (edge-padded to a multiple of the total stride)."""
        assert self.encoder is not None
        ph, pw = self.arch.padded
        x = F.pad(x, (0, pw - x.shape[3], 0, ph - x.shape[2]), mode="replicate")
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x) if self.arch.kind == "hnerv" else x
        return self.decoder(z)


def frame_times(index: torch.Tensor, frames: int) -> torch.Tensor:
    """NeRV's input: frame index normalised to [0, 1]."""
    return index.to(torch.float32) / max(frames - 1, 1)


# ------------------------------------------------------------------- building without the RNG
@torch.no_grad()
def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every layer, drawn from ``generator``.

    The layers are visited in construction order and each draws what its ``reset_parameters``
    would (Conv2d/Linear: Kaiming-uniform weight with a=sqrt(5), then a uniform bias in
    +-1/sqrt(fan_in)), so a generator seeded with ``s`` gives the weights that
    ``torch.manual_seed(s)`` followed by ``Model(arch)`` used to give."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()  # ones and zeros: no random numbers
        elif isinstance(m, ConvNeXtBlock):
            m.gamma.fill_(1e-6)
        elif isinstance(m, Model):
            pass  # its own parameter is the latents, zeros until a fit fills them
        elif any(True for _ in m.parameters(recurse=False)):  # a new layer type: say so, never leave garbage
            raise TypeError(f"init_parameters does not know how to initialise {type(m).__name__}")


def decoder_tensors(arch: Arch) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the decoder's tensors in ``state_dict`` order (the stream order),
    from the architecture alone (built on the meta device: no memory, no random numbers)."""
    with torch.device("meta"):
        dec = Decoder(arch)
    return [(k, tuple(v.shape)) for k, v in dec.state_dict().items()]


def build_decoder(arch: Arch, state: dict[str, Any], device: torch.device | str = "cpu") -> Decoder:
    """A decoder on ``device`` holding ``state`` (numpy arrays or tensors by ``state_dict`` name),
    in eval mode. Nothing is initialised at random first (the tensors overwrite every weight)."""
    with torch.device("meta"):
        dec = Decoder(arch)
    dec = dec.to_empty(device=device)
    dec.reset_buffers()
    tensors = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    dec.load_state_dict(tensors, strict=True)
    return dec.eval()


@torch.no_grad()
def embeddings(model: Model, frames: np.ndarray, batch: int = 8) -> np.ndarray:
    """HNeRV embeddings of every frame (float32, T,C,h0,w0), computed on the model's device."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, frames.shape[0], batch):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).to(device).permute(0, 3, 1, 2).float() / 255.0
        out.append(model.embed(x).float().cpu())
    return torch.cat(out).numpy()


# ---------------------------------------------------------------------------- size planning
def decoder_params(arch: Arch) -> int:
    """Number of decoder parameters (weights and biases), computed without building the model."""
    widths = arch.widths()
    h0, w0 = arch.grid
    if arch.kind == "hnerv":
        n = arch.embed_ch * widths[0] + widths[0]
    else:
        dims = [2 * arch.pe_levels] + ([arch.mlp_hidden] if arch.mlp_hidden else []) + [widths[0] * h0 * w0]
        n = sum(a * b + b for a, b in zip(dims, dims[1:]))
    n += sum(arch.stage_weights(i) + arch.stage_biases(i) for i in range(len(arch.strides)))
    n += widths[-1] * 3 * 9 + 3
    return n


def embed_values(arch: Arch) -> int:
    return math.prod(arch.embed_shape()) if arch.kind == "hnerv" else 0


def model_values(arch: Arch) -> int:
    """Values the bitstream carries: decoder parameters + embeddings (HNeRV's "model size")."""
    return decoder_params(arch) + embed_values(arch)


@dataclass
class Budget:
    """Estimated coded size of a model, for rate control (bits per value after 8/6-bit
    quantization and arithmetic coding, measured on fitted models; see codec.py)."""

    weight_bits: float = 7.2
    embed_bits: float = 5.8
    overhead_bytes: int = 700  # container + JSON header + count tables + fp16 scales (rough)
    fields: dict = field(default_factory=dict)

    def bytes(self, arch: Arch) -> float:
        return self.overhead_bytes + (decoder_params(arch) * self.weight_bits + embed_values(arch) * self.embed_bits) / 8


def solve_width(arch: Arch, target_bytes: float, budget: Budget, *, lo: int = 4, hi: int = 1024) -> Arch:
    """The largest first width whose estimated size fits ``target_bytes`` (at least ``lo``).
    Sizes grow with the width, so the choice is monotone in ``target_bytes``."""
    best = _with_width(arch, lo)
    for w in range(lo + 1, hi + 1):
        cand = _with_width(arch, w)
        if budget.bytes(cand) > target_bytes:
            break
        best = cand
    return best


def _with_width(arch: Arch, w: int) -> Arch:
    d = arch.to_json()
    d["width0"] = w
    return Arch(**d)
