"""``ldm`` image codec: f=2 autoencoder + factorized entropy model, decoded at any size by LIIF.

Bitstream (version 2): header ``{"shape", "dtype", "mode", "quality", "latent": [c, h, w],
"model": <short digest of the ae model file>, "coding": one letter per channel}``. Channel ``i``
(``h*w`` symbols, i.i.d.) is coded either (``p``) under the shipped integer table of (quality,
channel), all such channels in order in section ``latent``, or (``e``) with
:func:`neurocodec.entropy.encode_symbols` (the image's own histogram, stored) in section ``ch<i>``,
whichever is shorter.

Version 1 recorded the hash of the pickled ``ae.pt`` in a ``"weights"`` field. Version 2 records the
digest of the ``ae.ncx`` model file (a different file, so a different hash: hence the new field and
version). Version-1 streams made with the shipped ``ae.pt`` still decode: ``ae.ncx`` holds the same
parameters and tables, bit for bit (:data:`LEGACY_AE`).

Determinism: the decoder never derives coding parameters from float network outputs. The tables are
integers, computed once (in float64, then :func:`neurocodec.entropy.quantize_pmf`) when the model was
saved, stored in the model file, and read identically by encoder and decoder. The encoder's network
always runs on the CPU, whatever device a decode used before: the latent it rounds decides every
coded symbol and which table each channel uses, so the same image gives the same bytes on every
machine. Decoding renders on ``device`` (default: CUDA when available); only the pixels, never the
parsing, depend on it.

No state: the codec instance holds only its ``weights_dir``; the networks are built per device by
:func:`neurocodec.weights.build` and shared read-only, never moved.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ...codec import Codec
from ...entropy import SequentialDecoder, SequentialEncoder, decode_symbols, encode_symbols
from ...errors import CorruptStreamError, InputError, UsageError
from ...weights import ModelFile
from . import model
from .autoencoder import CodecAE, encode_tiled, to_uint8, to_unit
from .image import MAX_OUTPUT_PIXELS, merge_channels, pad_to, split_channels, target_size

QUALITIES = (1, 2, 3, 4)
#: version-1 streams name their ae by the short SHA-256 of the pickled file; the shipped one's
#: parameters and tables are exactly those of the shipped ae.ncx (checked when it was converted)
LEGACY_AE: Mapping[str, str] = {"ec146acf1bc8e343": model.SHIPPED["ae"]}


class LDMCodec(Codec):
    name = "ldm"
    version = 2
    min_version = 1
    kind = "image"
    description = "learned f=2 autoencoder with a LIIF decoder: decodes at any size (Kim & Kim 2024 / LIIF)"

    def __init__(self, weights_dir: str | Path | None = None) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None

    def _ae(self, device: str | torch.device = "cpu") -> tuple[CodecAE, ModelFile]:
        # weights.load caches by path/size/mtime: the file is read and hashed once per process
        mf = model.load("ae", self.weights_dir)
        return model.network(mf, device), mf

    @torch.no_grad()
    def compress(
        self, data: np.ndarray, *, progress: bool = False, quality: int = 3, tile: int = 64
    ) -> tuple[dict, dict[str, bytes], dict]:
        """``data``: ``H,W,3`` uint8 (``H,W`` grey is accepted; alpha is refused). The encoder runs
        on the CPU (see the module docstring: that keeps the bytes machine-independent)."""
        if quality not in QUALITIES:
            raise UsageError(f"quality must be one of {QUALITIES}, got {quality!r}")
        rgb, mode, _ = split_channels(data)
        if mode == "RGBA":
            raise InputError("the ldm codec does not code an alpha channel; drop it first")
        _, mf = self._ae()
        h, w = rgb.shape[:2]
        sym = self.latent_symbols(rgb, quality, tile=tile)
        tables = model.tables(mf)[quality - 1]
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
            "model": mf.short_digest,
            "coding": coding,
        }
        return header, sections, {"model": mf.short_digest, "own_histogram_channels": coding.count("e")}

    @torch.no_grad()
    def latent_symbols(self, rgb: np.ndarray, quality: int, *, tile: int | None = 64) -> np.ndarray:
        """The coded integers ``(c, h, w)`` (offset by the table radius, so all >= 0) of an RGB image,
        computed on the CPU."""
        ae, mf = self._ae("cpu")
        y = encode_tiled(ae, to_unit(pad_to(rgb, ae.factor)), rows=tile)
        gain = torch.exp(ae.log_gain[quality - 1])[None, :, None, None]
        radius = int(mf.config["table_radius"])
        return torch.clamp(torch.round(y * gain), -radius, radius).to(torch.int64)[0].numpy() + radius

    def decode_latent(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        """The integers ``(c, h, w)`` stored in a stream (inverse of the entropy coding only)."""
        mf = model.load("ae", self.weights_dir)
        return self._symbols(header, sections, mf, self._parse(header, sections, mf))

    def _symbols(self, header: dict, sections: Mapping[str, bytes], mf: ModelFile, parsed: tuple) -> np.ndarray:
        _, _, _, quality, (c, lh, lw), data = parsed
        coding = header.get("coding")
        if not isinstance(coding, str) or len(coding) != c or set(coding) - {"p", "e"}:
            raise CorruptStreamError("ldm header has an invalid 'coding' field")
        tables = model.tables(mf)[quality - 1]
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

    @staticmethod
    def _check_model(header: dict, mf: ModelFile) -> None:
        """The stream must come from this ae: by its digest (v2) or, for v1, the shipped ae.pt's hash."""
        if "model" in header:
            made, ok = header["model"], header["model"] == mf.short_digest
        else:
            made = header.get("weights")
            ok = isinstance(made, str) and LEGACY_AE.get(made) == mf.digest
        if not ok:
            raise InputError(
                f"this file was made with ldm model {made}, this ae model is {mf.short_digest}: "
                f"decode with the same model")

    def _parse(self, header: dict, sections: Mapping[str, bytes], mf: ModelFile):
        try:
            shape = [int(v) for v in header["shape"]]
            quality = int(header["quality"])
            c, lh, lw = (int(v) for v in header["latent"])
            mode = str(header.get("mode", "RGB"))
            data = sections.get("latent", b"")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStreamError(f"ldm header is damaged ({exc})") from None
        self._check_model(header, mf)
        args = mf.config["args"]
        factor = CodecAE.factor
        h, w = shape[0], shape[1]
        if quality not in QUALITIES or c != args["latent"] or mode not in ("L", "RGB") or h < 1 or w < 1:
            raise CorruptStreamError("ldm header has invalid values")
        if lh != -(-h // factor) or lw != -(-w // factor) or lh * lw > MAX_OUTPUT_PIXELS:
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
        device: str = "auto",
    ) -> np.ndarray:
        """Decode at the original size, at ``scale`` x it, or at ``size=(width, height)``, rendering
        on ``device`` (``auto``: CUDA when available)."""
        ae, mf = self._ae(device)
        parsed = self._parse(header, sections, mf)
        h, w, mode, quality, (c, lh, lw), _ = parsed
        out_h, out_w = target_size(h, w, scale, size)
        radius = int(mf.config["table_radius"])
        sym = self._symbols(header, sections, mf, parsed)[None]
        gain = torch.exp(ae.log_gain[quality - 1].cpu())[None, :, None, None]
        z = (torch.from_numpy(sym - radius).float() / gain).to(ae.log_gain.device)
        # the latent covers the padded image; render only its real part
        extent = (h / (lh * ae.factor), w / (lw * ae.factor))
        out = to_uint8(ae.render(z, out_h, out_w, extent, tile=tile))
        return merge_channels(out, mode, None)
