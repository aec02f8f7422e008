"""``ldm`` image codec: f=2 autoencoder + factorized entropy model, decoded at any size by LIIF.

Bitstream (version 1): header ``{"shape", "dtype", "mode", "quality", "latent": [c, h, w],
"weights": <hash of ae.pt>, "coding": one letter per channel}``. Channel ``i`` (``h*w`` symbols, i.i.d.)
is coded either (``p``) under the shipped integer table of (quality, channel), all such channels in
order in section ``latent``, or (``e``) with :func:`neurocodec.entropy.encode_symbols` (the image's
own histogram, stored) in section ``ch<i>``, whichever is shorter.

Determinism: the decoder never derives coding parameters from float network outputs. The tables are
integers, computed once (in float64, then :func:`neurocodec.entropy.quantize_pmf`) when the model was
exported, stored in the weights file, and read identically by encoder and decoder.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ...codec import Codec
from ...entropy import SequentialDecoder, SequentialEncoder, decode_symbols, encode_symbols
from ...errors import CorruptStreamError, InputError, UsageError
from . import api
from .autoencoder import to_uint8, to_unit

QUALITIES = (1, 2, 3, 4)


class LDMCodec(Codec):
    name = "ldm"
    version = 1
    kind = "image"
    description = "learned f=2 autoencoder with a LIIF decoder: decodes at any size (Kim & Kim 2024 / LIIF)"

    def __init__(self, weights_dir: str | Path | None = None) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None

    def _ae(self):
        ae, blob = api.models(self.weights_dir, need=("ae",))["ae"]
        folder = self.weights_dir if self.weights_dir is not None else api.WEIGHTS_DIR
        return ae, blob, api.weights_id(folder / "ae.pt")

    @torch.no_grad()
    def compress(
        self, data: np.ndarray, *, progress: bool = False, quality: int = 3, tile: int = 64
    ) -> tuple[dict, dict[str, bytes]]:
        """``data``: ``H,W,3`` uint8 (``H,W`` grey and ``H,W,4`` are accepted; alpha is dropped)."""
        if quality not in QUALITIES:
            raise UsageError(f"quality must be one of {QUALITIES}, got {quality!r}")
        rgb, mode, _ = api.split_channels(data)
        if mode == "RGBA":
            raise InputError("the ldm codec does not code an alpha channel; drop it first")
        ae, blob, wid = self._ae()
        h, w = rgb.shape[:2]
        sym = self.latent_symbols(rgb, quality, tile=tile)
        tables = np.asarray(blob["tables"])[quality - 1]
        enc = SequentialEncoder()
        coding, sections = "", {}
        for c in range(sym.shape[0]):
            flat = sym[c].reshape(-1)
            # the shipped prior, or this image's own histogram (its table travels in the stream) when
            # that is shorter: a noise-trained prior overestimates near-constant channels
            alone = SequentialEncoder()
            alone.push_iid(flat, tables[c])
            own = encode_symbols(flat)
            if len(own) < len(alone.finish()):
                coding += "e"
                sections[f"ch{c}"] = own
            else:
                coding += "p"
                enc.push_iid(flat, tables[c])
        sections["latent"] = enc.finish()
        header = {
            "shape": [h, w] if mode == "L" else [h, w, 3],
            "dtype": "uint8",
            "mode": mode,
            "quality": quality,
            "latent": list(sym.shape),
            "weights": wid,
            "coding": coding,
        }
        return header, sections

    @torch.no_grad()
    def latent_symbols(self, rgb: np.ndarray, quality: int, *, tile: int | None = 64) -> np.ndarray:
        """The coded integers ``(c, h, w)`` (offset by the table radius, so all >= 0) of an RGB image."""
        ae, blob, _ = self._ae()
        dev = next(ae.parameters()).device
        y = api.encode_tiled(ae, to_unit(api.pad_to(rgb, ae.factor)).to(dev), rows=tile).cpu()
        gain = torch.exp(ae.log_gain[quality - 1].detach().cpu())[None, :, None, None]
        radius = int(blob["table_radius"])
        return torch.clamp(torch.round(y * gain), -radius, radius).to(torch.int64)[0].numpy() + radius

    def decode_latent(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        """The integers ``(c, h, w)`` stored in a stream (inverse of the entropy coding only)."""
        ae, blob, wid = self._ae()
        _, _, _, quality, (c, lh, lw), data = self._parse(header, sections, ae, blob, wid)
        coding = header.get("coding")
        if not isinstance(coding, str) or len(coding) != c or set(coding) - {"p", "e"}:
            raise CorruptStreamError("ldm header has an invalid 'coding' field")
        tables = np.asarray(blob["tables"])[quality - 1]
        dec = SequentialDecoder(data)
        rows = []
        for i, mode in enumerate(coding):
            if mode == "p":
                rows.append(dec.pull_iid(tables[i], lh * lw))
                continue
            if f"ch{i}" not in sections:
                raise CorruptStreamError(f"ldm stream lacks section ch{i}")
            row = decode_symbols(sections[f"ch{i}"], max_symbols=lh * lw)
            if row.size != lh * lw or row.min() < 0 or row.max() >= tables.shape[1]:
                raise CorruptStreamError(f"ldm section ch{i} holds the wrong symbols")
            rows.append(row)
        return np.stack(rows).reshape(c, lh, lw)

    def _parse(self, header: dict, sections: Mapping[str, bytes], ae, blob, wid: str):
        try:
            shape = [int(v) for v in header["shape"]]
            quality = int(header["quality"])
            c, lh, lw = (int(v) for v in header["latent"])
            mode = str(header.get("mode", "RGB"))
            data = sections.get("latent", b"")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStreamError(f"ldm header is damaged ({exc})") from None
        if header.get("weights") != wid:
            raise InputError(
                f"this file was made with ldm weights {header.get('weights')}, these are {wid}: decode with the same weights"
            )
        h, w = shape[0], shape[1]
        if quality not in QUALITIES or c != ae.latent or mode not in ("L", "RGB") or h < 1 or w < 1:
            raise CorruptStreamError("ldm header has invalid values")
        if lh != -(-h // ae.factor) or lw != -(-w // ae.factor) or lh * lw > api.MAX_OUTPUT_PIXELS:
            raise CorruptStreamError("ldm latent shape does not match the image shape")
        return h, w, mode, quality, (c, lh, lw), data

    @torch.no_grad()
    def decompress(
        self,
        header: dict,
        sections: Mapping[str, bytes],
        *,
        scale: float | None = None,
        size: tuple[int, int] | None = None,
        tile: int | None = 256,
    ) -> np.ndarray:
        """Decode at the original size, at ``scale`` x it, or at ``size=(width, height)``."""
        ae, blob, wid = self._ae()
        h, w, mode, quality, (c, lh, lw), data = self._parse(header, sections, ae, blob, wid)
        out_h, out_w = api.target_size(h, w, scale, size)
        radius = int(blob["table_radius"])
        sym = self.decode_latent(header, sections)[None]
        gain = torch.exp(ae.log_gain[quality - 1].detach().cpu())[None, :, None, None]
        dev = api._device()
        z = (torch.from_numpy(sym - radius).float() / gain).to(dev)
        # the latent covers the padded image; render only its real part
        extent = (h / (lh * ae.factor), w / (lw * ae.factor))
        out = to_uint8(ae.to(dev).render(z, out_h, out_w, extent, tile=tile))
        return api.merge_channels(out, mode, None)
