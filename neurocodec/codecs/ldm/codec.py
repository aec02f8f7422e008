"""``ldm`` image codec: f=2 autoencoder + factorized entropy model, decoded at any size by LIIF; and
(``model="hyperprior"``) a mean-scale hyperprior latent with integer-selected coding tables.

Version 3 (``"network": "hyperprior"`` in the header; see :mod:`.hpcoding`): the image is
edge-padded to a multiple of 64, ``y`` (1/16) and ``z`` (1/64) come from the hyperprior model file
whose short digest is ``"model"``; header ``{"shape", "dtype", "mode", "network", "quality" (1..8,
the gain index + 1), "model", "latent": [m, H/16, W/16], "hyper": [nz, H/64, W/64], "escapes":
[z count, y count]}``, sections ``z`` (per channel, the learned density's integer table), ``y``
(``round(y - mu)`` grouped by scale index, Gaussian integer tables; ``mu`` and the index from the
integer ``h_s``), and ``z_esc`` / ``y_esc`` when some value fell outside its table. Decoded at 1x by
``g_s`` and cropped. Other sizes: in a version-4 stream (written when the model has a head of its
own; otherwise identical to version 3) through the model's LIIF head on the 1x decode and the
synthesis features (``hpsr.ncx``, :class:`.autoencoder.SynthesisLIIF`); in a version-3 stream
(written before the head shipped, or by a model without one) through the pixel LIIF upsampler on
the 1x decode, so no file's decode changes. The decoder's header holds the flag as ``"sr": 1``
(what :meth:`LDMCodec.compress` returns); the file's header never does. Streams of the factorized ae keep
version 2 (the bytes are those an older neurocodec writes); version 1 and 2 streams still decode.

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

from ... import container as ncx
from ... import weights as wfiles
from ...codec import Codec, Encoded
from ...entropy import SequentialDecoder, SequentialEncoder, decode_symbols, encode_symbols
from ...errors import CorruptStreamError, InputError, UsageError
from ...runtime import resolve_device
from ...runtime import threads as runtime_threads
from ...params import Param, declared
from ...schema import Field, Schema, check_decoded_size, max_values_option
from ...weights import ModelFile
from . import hpcoding
from . import model as ldm_model
from .hyperprior import NETWORK as HP_NETWORK
from .hyperprior import from_model_file as _hp_network
from .autoencoder import CodecAE, encode_tiled, to_uint8, to_unit
from .api import DEFAULT_STRENGTH
from .image import MAX_OUTPUT_PIXELS, merge_channels, pad_to, split_channels, target_size

REFINES = ("none", "diffusion")
#: the smallest output/coded ratio of a generative decode (the denoiser was trained at 2..4x)
MIN_REFINE_RATIO = 2.0
QUALITIES = (1, 2, 3, 4)  # of the factorized ae (the hyperprior: 1..its number of gain vectors)
MODELS = ("ae", "hyperprior")
HP_FACTOR = 64  # y at 1/16, z at 1/64: the padded size is a multiple of 64
_HP_SECTIONS = {"z", "y", "z_esc", "y_esc"}
#: version-1 streams name their ae by the short SHA-256 of the pickled file; the shipped one's
#: parameters and tables are exactly those of the shipped ae.ncx (checked when it was converted)
LEGACY_AE: Mapping[str, str] = {"ec146acf1bc8e343": ldm_model.SHIPPED["ae"]}


class LDMCodec(Codec):
    name = "ldm"
    version = 4
    min_version = 1
    kind = "image"
    description = ("learned image codec decoded at any size (Kim & Kim 2024 / LIIF): f=2 factorized ae "
                   "(default) or a mean-scale hyperprior with integer table selection (model=hyperprior)")

    params = (
        Param("quality", "int", 3, "quality, higher is better: 1..4 (ae) or 1..8 (hyperprior)", lo=1, hi=8),
        Param("model", "str", "hyperprior", "latent: hyperprior (mean-scale, integer tables; the default) or "
              "ae (f=2, factorized; the first codec, decodes at any size through its own LIIF head)",
              choices=MODELS),
        Param("weights", "path", None, "hyperprior model file (.ncx, from train_hyperprior --export); "
              "none = the shipped one", nullable=True),
        Param("tile", "int", 64, "ae encoder tile rows (memory bound; same bytes)", lo=8),
        Param("effort", "int", 0, "hyperprior: steps of encoder-side latent refinement (0 = the analysis "
              "transform's symbols; more = fewer bits for the same quality, slower encode)", lo=0, hi=2000),
    )
    options = (
        Param("scale", "float", None, "output size = scale x original (none: original size)", nullable=True),
        Param("size", "ints", None, "output width,height (none: original size)", lo=1, nullable=True),
        Param("tile", "int", 256, "render tile (memory bound; same pixels); none = whole image", lo=8,
              nullable=True),
        Param("device", "str", "auto", "where to render: auto, cpu, cuda[:N]"),
        Param("weights", "path", None, "hyperprior model file the stream was made with (none: shipped)",
              nullable=True),
        Param("refine", "str", "none", "none, or diffusion: a generative decode at 2x or more (latent diffusion "
              "over the any-size decode adds the detail the bits do not hold: sharper, lower PSNR)",
              choices=REFINES),
        Param("steps", "int", 10, "refine=diffusion: DDIM steps", lo=1, hi=1000),
        Param("seed", "int", 0, "refine=diffusion: seed of the noise (the same seed, the same picture)", lo=0,
              hi=2**62),
        Param("strength", "float", DEFAULT_STRENGTH, "refine=diffusion: SDEdit strength in (0, 1] (1: from pure "
              "noise over the decoded condition; lower: closer to the plain decode)", lo=1e-3, hi=1.0),
        max_values_option(),
    )

    @classmethod
    def schema(cls) -> Schema:
        return SCHEMA

    def __init__(self, weights_dir: str | Path | None = None) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None

    def _ae(self, device: str | torch.device = "cpu") -> tuple[CodecAE, ModelFile]:
        # weights.load caches by path/size/mtime: the file is read and hashed once per process
        mf = ldm_model.load("ae", self.weights_dir)
        return ldm_model.network(mf, device), mf

    # ------------------------------------------------------------------------------ container
    def encode_with_report(self, data: np.ndarray, *, progress: bool = False, **params) -> Encoded:
        """As :meth:`Codec.encode_with_report`, but an ae stream is written as version 2 (its layout
        did not change, so older decoders keep reading it); a hyperprior stream is version 3, or 4
        when its model has an any-size head (``"sr": 1`` in what :meth:`compress` returns): the
        version carries that flag, so it costs the file no bytes."""
        header, sections, report = self.compress(data, progress=progress, **params)
        version = 2
        if header.get("network") == HP_NETWORK:
            version = 4 if header.pop("sr", None) == 1 else 3
        return Encoded(ncx.pack(ncx.Container(self.name, version, header, sections)), report)

    def decode(self, blob, **options):
        box = blob if isinstance(blob, ncx.Container) else ncx.unpack(blob)
        if box.codec == self.name:
            if (box.codec_version >= 3) != (box.header.get("network") == HP_NETWORK):
                raise CorruptStreamError(f"ldm version {box.codec_version} stream with a "
                                         f"{'hyperprior' if box.codec_version < 3 else 'non-hyperprior'} header")
            if "sr" in box.header:
                raise CorruptStreamError("ldm stream: a stored header never holds 'sr' (the version says it)")
            if box.codec_version == 4:  # the decoder's form of the flag (what compress returns)
                box = ncx.Container(box.codec, box.codec_version, {**box.header, "sr": 1}, box.sections)
        return super().decode(box, **options)

    @declared()
    @torch.no_grad()
    def compress(
        self, data: np.ndarray, *, progress: bool = False, quality: int, model: str, weights: str | None,
        tile: int, effort: int,
    ) -> tuple[dict, dict[str, bytes], dict]:
        """``data``: ``H,W,3`` uint8 (``H,W`` grey is accepted; alpha is refused). The encoder runs
        on the CPU (see the module docstring: that keeps the bytes machine-independent)."""
        rgb, mode, _ = split_channels(data)
        if mode == "RGBA":
            raise InputError("the ldm codec does not code an alpha channel; drop it first")
        if model == "hyperprior":
            return self._compress_hp(rgb, mode, quality, weights, effort, progress)
        if effort:
            raise UsageError("effort (latent refinement) is a hyperprior parameter; the ae model has none")
        if quality not in QUALITIES:
            raise UsageError(f"quality must be one of {QUALITIES} for the ae model, got {quality!r}")
        _, mf = self._ae()
        h, w = rgb.shape[:2]
        sym = self.latent_symbols(rgb, quality, tile=tile)
        tables = ldm_model.tables(mf)[quality - 1]
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
        mf = ldm_model.load("ae", self.weights_dir)
        return self._symbols(header, sections, mf, self._parse(header, sections, mf))

    def _symbols(self, header: dict, sections: Mapping[str, bytes], mf: ModelFile, parsed: tuple) -> np.ndarray:
        _, _, _, quality, (c, lh, lw), data = parsed
        coding = header.get("coding")
        if not isinstance(coding, str) or len(coding) != c or set(coding) - {"p", "e"}:
            raise CorruptStreamError("ldm header has an invalid 'coding' field")
        tables = ldm_model.tables(mf)[quality - 1]
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

    @declared("options")
    @torch.no_grad()
    def decompress(
        self,
        header: dict,
        sections: Mapping[str, bytes],
        *,
        scale: float | None,
        size: tuple[int, int] | None,
        tile: int | None,
        device: str,
        weights: str | None,
        max_values: int | None,
        refine: str,
        steps: int,
        seed: int,
        strength: float,
        progress: bool = False,
    ) -> np.ndarray:
        """Decode at the original size, at ``scale`` x it, or at ``size=(width, height)``, rendering
        on ``device`` (``auto``: CUDA when available). ``header`` has passed :data:`SCHEMA` under
        ``max_values`` by the time this body runs (:meth:`Codec.check_header`, the gate every
        ``decompress`` goes through, direct calls included); the output size chosen here is held to
        ``max_values`` too.

        ``refine="diffusion"``: the generative decode. The stream is drawn by its own any-size decoder
        at the denoiser's grid (the output, or 4x when the output is larger), and latent diffusion
        (:func:`.api.diffuse`, seeded) adds detail over it. It needs an output at least
        ``MIN_REFINE_RATIO`` times the coded size on both sides: at smaller ratios the bits already
        hold the detail, and the denoiser never saw them."""
        if size is not None:
            if len(size) != 2:
                raise UsageError(f"size must be width,height, got {size!r}")
            size = (int(size[0]), int(size[1]))
        shape = header["shape"]
        h, w = shape[0], shape[1]
        out_h, out_w = target_size(h, w, scale, size)
        check_decoded_size(self.name, out_h * out_w * (3 if header.get("mode", "RGB") == "RGB" else 1), max_values,
                           f"at {out_w}x{out_h}")
        if refine == "none":
            return self._render(header, sections, (out_w, out_h), tile, device, weights, progress)
        from .api import diffuse, diffusion_grid

        if min(out_h / h, out_w / w) < MIN_REFINE_RATIO:
            raise UsageError(f"refine=diffusion is a decode at {MIN_REFINE_RATIO:g}x or more (the denoiser was "
                             f"trained at 2-4x); {out_w}x{out_h} is {min(out_h / h, out_w / w):.2f}x this "
                             f"{w}x{h} image: decode it without refine")
        gh, gw = diffusion_grid(h, w, out_h, out_w)
        base = self._render(header, sections, (gw, gh), tile, device, weights, progress)
        rgb, mode, _ = split_channels(base)
        out = diffuse(rgb, out_h, out_w, steps=steps, seed=seed, strength=strength, tile=tile,
                      weights_dir=self.weights_dir, device=device, progress=progress)
        return merge_channels(out, mode, None)

    def _render(self, header: dict, sections: Mapping[str, bytes], size: tuple[int, int], tile: int | None,
                device: str, weights: str | None, progress: bool) -> np.ndarray:
        """The stream's own decode at ``size`` (width, height): no refinement."""
        if header.get("network") == HP_NETWORK:
            return self._decompress_hp(header, sections, size, tile, device, weights, progress)
        ae, mf = self._ae(device)
        parsed = self._parse(header, sections, mf)
        h, w, mode, quality, (c, lh, lw), _ = parsed
        out_h, out_w = target_size(h, w, None, size)
        radius = int(mf.config["table_radius"])
        sym = self._symbols(header, sections, mf, parsed)[None]
        gain = torch.exp(ae.log_gain[quality - 1].cpu())[None, :, None, None]
        z = (torch.from_numpy(sym - radius).float() / gain).to(ae.log_gain.device)
        # the latent covers the padded image; render only its real part
        extent = (h / (lh * ae.factor), w / (lw * ae.factor))
        out = to_uint8(ae.render(z, out_h, out_w, extent, tile=tile, progress=progress))
        return merge_channels(out, mode, None)

    # ------------------------------------------------------------------------- hyperprior (v3)
    def _hp_file(self, path: str | None, expect: str | None = None) -> ModelFile:
        """The hyperprior model file at ``path`` (or the shipped one, pinned by its digest), checked;
        ``expect``: the short digest a stream recorded (a decode), which picks among the shipped
        models the one the file was made with; without it (an encode) the newest shipped one."""
        pinned = None
        if path is None:
            shipped = shipped_hyperprior(expect)
            if shipped is None and expect is not None and shipped_hyperprior() is not None:
                raise InputError(f"this file was made with ldm model {expect}, which this neurocodec does not ship: "
                                 "decode with that model file (weights=PATH)")
            if shipped is None:
                raise UsageError("no hyperprior model is shipped yet: pass weights=PATH (a model file written "
                                 "by `python -m neurocodec.codecs.ldm.train_hyperprior --export PATH`)")
            path, pinned = str(shipped[0]), shipped[1]
        mf = wfiles.load(path, kind=ldm_model.KIND, versions=(2, 2), expect_digest=pinned)
        hpcoding.check_model_file(mf)
        if expect is not None and hpcoding.stream_digest(mf) != expect:
            raise InputError(f"this file was made with ldm model {expect}, the hyperprior model given is "
                             f"{hpcoding.stream_digest(mf)}: decode with the same model (weights=PATH)")
        return mf

    @staticmethod
    def _hp_tables(mf: ModelFile) -> hpcoding.Tables:
        return wfiles.build(mf, _build_tables, "cpu")

    def _compress_hp(self, rgb: np.ndarray, mode: str, quality: int, path: str | None, effort: int = 0,
                     progress: bool = False):
        # one torch thread: oneDNN's float32 sums in g_a depend on the thread count, and a flipped
        # rounding of y would change the bytes (the bitstream must not depend on the machine's load)
        with runtime_threads(1):
            return self._compress_hp_1t(rgb, mode, quality, path, effort, progress)

    def _compress_hp_1t(self, rgb: np.ndarray, mode: str, quality: int, path: str | None, effort: int,
                        progress: bool):
        mf = self._hp_file(path)
        if hpcoding.decode_only_of(mf) is not None:
            raise UsageError(f"hyperprior model {hpcoding.stream_digest(mf)} is a decode-only copy (a retired model, "
                             "kept to decode the files it wrote): encode with the shipped model or a full model file")
        net = wfiles.build(mf, _hp_network, "cpu")  # the encoder always runs on the CPU
        qualities = int(mf.config["args"]["qualities"])
        if not 1 <= quality <= qualities:
            raise UsageError(f"quality must be 1..{qualities} for this hyperprior model, got {quality!r}")
        tables = self._hp_tables(mf)
        h, w = rgb.shape[:2]
        padded = pad_to(rgb, HP_FACTOR)
        q = torch.tensor([quality - 1])
        y = net.analysis(to_unit(padded), q)
        z = torch.round(net.hyper_analysis(y))[0].numpy().astype(np.int64)
        mean, idx = tables.hs(z)
        sym = np.rint(y[0].double().numpy() - mean / float(1 << tables.mean_bits)).astype(np.int64)
        refined: dict = {}
        if effort:
            from .refine import refine_symbols

            lambdas = mf.config.get("train_config", {}).get("lambdas")
            mean_f = torch.from_numpy((mean / float(1 << tables.mean_bits)).astype(np.float32))[None]
            scale = torch.from_numpy(hpcoding.scale_table()[idx].astype(np.float32))[None]
            sym, refined = refine_symbols(net, to_unit(padded), quality - 1, y, mean_f, scale, (h, w), steps=effort,
                                          lam=None if lambdas is None else float(lambdas[quality - 1]),
                                          progress=progress)
        z_words, z_esc = tables.encode_z(z)
        y_words, y_esc = tables.encode_y(sym, idx)
        sections = {"z": z_words, "y": y_words}
        if z_esc.size:
            sections["z_esc"] = hpcoding.encode_escapes(z_esc)
        if y_esc.size:
            sections["y_esc"] = hpcoding.encode_escapes(y_esc)
        header = {
            "shape": [h, w] if mode == "L" else [h, w, 3], "dtype": "uint8", "mode": mode,
            "network": HP_NETWORK, "quality": quality, "model": mf.short_digest,
            "latent": list(sym.shape), "hyper": list(z.shape), "escapes": [int(z_esc.size), int(y_esc.size)],
        }
        if self._head_file(mf.short_digest) is not None:
            # other sizes are rendered by this model's own head: a version-4 stream (v3 files,
            # written before it shipped, keep the pixel upsampler: their decodes never change)
            header["sr"] = 1
        report = {"model": mf.short_digest, "network": HP_NETWORK, "bits_z": 8 * len(z_words),
                  "bits_y": 8 * len(y_words), "escapes": [int(z_esc.size), int(y_esc.size)], **refined}
        return header, sections, report

    def hp_latents(self, header: dict, sections: Mapping[str, bytes], weights: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(z, y symbols, integer mean, scale index) of a v3 stream: the entropy decoding and the
        integer ``h_s`` only (what must agree bit for bit on every machine)."""
        hdr = _check_hp_header(header, sections)
        return self._hp_latents(hdr, sections, self._hp_file(weights, expect=hdr["model"]))

    def _hp_latents(self, hdr: Mapping, sections: Mapping[str, bytes], mf: ModelFile
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`hp_latents` of a header already checked (:func:`_check_hp_header`, run by the
        schema) and the model file it names, already resolved."""
        args = mf.config["args"]
        if hdr["latent"][0] != args["m"] or hdr["hyper"][0] != args["nz"] or hdr["quality"] > args["qualities"]:
            raise CorruptStreamError("ldm header does not fit its hyperprior model (channels or quality)")
        tables = self._hp_tables(mf)
        nz_, zh, zw = hdr["hyper"]
        n_z, n_y = hdr["escapes"]
        z_esc = hpcoding.decode_escapes(sections.get("z_esc"), nz_ * zh * zw)
        y_esc = hpcoding.decode_escapes(sections.get("y_esc"), int(np.prod(hdr["latent"])))
        if z_esc.size != n_z or y_esc.size != n_y:
            raise CorruptStreamError("ldm stream: escape sections do not match the header")
        z = tables.decode_z(sections["z"], z_esc, (nz_, zh, zw))
        mean, idx = tables.hs(z)
        if mean.shape != tuple(hdr["latent"]):
            raise CorruptStreamError("ldm stream: latent shape does not match the hyper latent")
        sym = tables.decode_y(sections["y"], y_esc, idx)
        return z, sym, mean, idx

    def _decompress_hp(self, header: dict, sections: Mapping[str, bytes], size, tile, device, weights,
                       progress: bool = False):
        # on the CPU at one torch thread: g_s's float32 sums (oneDNN) depend on the thread count,
        # and decoding must be a pure function of the file (the fixtures check 1, 2 and 4 threads);
        # a 768x512 decode stays well under a second this way
        if resolve_device(device).type == "cpu":
            with runtime_threads(1):
                return self._decompress_hp_1t(header, sections, size, tile, device, weights, progress)
        return self._decompress_hp_1t(header, sections, size, tile, device, weights, progress)

    def _decompress_hp_1t(self, hdr: dict, sections: Mapping[str, bytes], size, tile, device, weights,
                          progress: bool):
        # hdr passed SCHEMA (whose checks run _check_hp_header) at the decompress gate: not again here
        mf = self._hp_file(weights, expect=hdr["model"])
        _, sym, mean, _ = self._hp_latents(hdr, sections, mf)
        h, w = hdr["shape"][0], hdr["shape"][1]
        out_h, out_w = target_size(h, w, None, size)
        net = wfiles.build(mf, _hp_network, str(resolve_device(device)))
        mean_bits = int(mf.config["coding"]["mean_bits"])
        y_hat = torch.from_numpy((sym + mean / float(1 << mean_bits)).astype(np.float32))[None]
        dev = next(net.parameters()).device
        feats = net.synthesis_features(y_hat.to(dev), torch.tensor([hdr["quality"] - 1], device=dev))
        rgb = to_uint8((net.g_s_out(feats)[:, :, :h, :w] + 1.0) * 0.5)  # == net.synthesis, cropped
        if (out_h, out_w) != (h, w):
            if hdr.get("sr") == 1:
                # any size: the model's own LIIF head on the 1x decode and the synthesis features
                head_file = self._head_file(hdr["model"])
                if head_file is None:
                    raise InputError(f"this file is drawn at other sizes by the any-size decoder made for ldm model "
                                     f"{hdr['model']} (hpsr.ncx), which the weights folder lacks; its 1x decode "
                                     "needs no such file")
                head = ldm_model.network(head_file, dev)
                src = head.source(to_unit(rgb).to(dev), feats)
                rgb = to_uint8(head.upsample(src, out_h, out_w, tile=tile, progress=progress))
            else:
                # a file from before its model had a head: the pixel LIIF upsampler on the 1x decode
                from .api import upsample

                rgb = upsample(rgb, size=(out_w, out_h), method="liif", tile=tile, weights_dir=self.weights_dir,
                               device=device, progress=progress)
        return merge_channels(rgb, hdr["mode"], None)

    def _head_file(self, stream_model: str) -> ModelFile | None:
        """The ``hpsr`` model file made for the hyperprior a stream names, or None when the weights
        folder has none for it (read and checked once per file: encodes only ask whether it exists,
        so they never build the network)."""
        path = ldm_model.model_path("hpsr", self.weights_dir)
        if not path.exists():
            return None
        mf = ldm_model.load("hpsr", self.weights_dir)
        return mf if mf.config["hyperprior"].startswith(str(stream_model).lower()) else None


def _v2_consistency(header: Mapping, sections: Mapping[str, bytes]) -> str | None:
    """Version 1/2 (factorized ae) header: shape against mode and latent, the coding letters
    against the latent channels and the sections present."""
    shape, mode, (c, lh, lw) = header["shape"], header.get("mode", "RGB"), header["latent"]
    if len(shape) != (2 if mode == "L" else 3) or (mode == "RGB" and shape[2] != 3):
        return f"shape {shape} does not fit mode {mode}"
    if header["quality"] not in QUALITIES:
        return f"quality {header['quality']} is not one of the ae's {QUALITIES}"
    if "model" not in header and not isinstance(header.get("weights"), str):
        return "names no model"
    if shape[0] * shape[1] > MAX_OUTPUT_PIXELS:
        return "image too large"
    factor = CodecAE.factor
    if (lh, lw) != (-(-shape[0] // factor), -(-shape[1] // factor)):
        return f"latent {header['latent']} does not match the image shape {shape}"
    if "sr" in header:
        return "an ae stream has no 'sr' field (it is the hyperprior's)"
    coding = header.get("coding")
    if not isinstance(coding, str) or len(coding) != c or set(coding) - {"p", "e"}:
        return "invalid 'coding' field"
    allowed = {"latent"} | {f"ch{i}" for i, letter in enumerate(coding) if letter == "e"}
    extra = sorted(set(sections) - allowed)
    if extra:
        return f"unexpected section {extra[0]}"
    return None


def _consistency(header: Mapping, sections: Mapping[str, bytes]) -> str | None:
    if header.get("network") == HP_NETWORK:
        try:
            _check_hp_header(header, sections)
        except CorruptStreamError as exc:
            return str(exc).removeprefix("ldm header: ")
        return None
    return _v2_consistency(header, sections)


#: every version's header (v1/v2: factorized ae; v3: ``network`` = hyperprior); the checks above
#: hold the shapes, qualities, coding letters and sections to each other
SCHEMA = Schema(
    "ldm",
    fields={
        "shape": Field("ints", length=(2, 3), lo=1, hi=1 << 20),
        "dtype": Field("str", choices=("uint8",)),
        "mode": Field("str", choices=("L", "RGB"), required=False),
        "quality": Field("int", lo=1, hi=64),
        "latent": Field("ints", length=3, lo=1, hi=1 << 20),
        "model": Field("str", pattern="[0-9a-f]{16}", required=False),
        "weights": Field("str", required=False),
        "coding": Field("str", required=False),
        "network": Field("str", choices=(HP_NETWORK,), required=False),
        "hyper": Field("ints", length=3, lo=1, hi=1 << 20, required=False),
        "escapes": Field("ints", length=2, lo=0, required=False),
        "sr": Field("int", lo=1, hi=1, required=False),  # v4 (as the decoder sees it): the model's hpsr head
    },
    section_pattern=r"latent|ch\d{1,4}|z|y|z_esc|y_esc",
    checks=(_consistency,),
    decoded=lambda h: h["shape"][0] * h["shape"][1] * (3 if h.get("mode", "RGB") == "RGB" else 1),
)


def shipped_hyperprior(short: str | None = None) -> tuple[Path, str] | None:
    """(path, pinned SHA-256 of the file) of the shipped hyperprior whose model digest (what its
    streams record) starts with ``short`` (a v3 stream's ``model``), or of the one new encodes use;
    ``None`` when there is no such file."""
    if short is None:
        name, digest = ldm_model.HYPERPRIOR_FILE, ldm_model.SHIPPED_HYPERPRIOR
    else:
        found = [(n, file) for n, (made, file) in ldm_model.HYPERPRIORS.items() if made.startswith(short.lower())]
        if not found:
            return None
        name, digest = found[0]
    path = ldm_model.WEIGHTS_DIR / name
    return (path, digest) if digest and path.exists() else None


def _build_tables(mf: ModelFile, device: str) -> hpcoding.Tables:
    return hpcoding.Tables(mf.arrays, mf.config["coding"])


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_hp_header(header: Mapping, sections: Mapping[str, bytes]) -> dict:
    """Validate a v3 header before anything is decoded: types, ranges, consistency of the shapes;
    a damaged field is a one-line CorruptStreamError."""
    def bad(what: str) -> CorruptStreamError:
        return CorruptStreamError(f"ldm header: {what}")

    need = ("shape", "dtype", "mode", "network", "quality", "model", "latent", "hyper", "escapes")
    missing = [k for k in need if k not in header]
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")
    shape, mode = header["shape"], header["mode"]
    if mode not in ("L", "RGB") or header["dtype"] != "uint8":
        raise bad("invalid mode or dtype")
    if not isinstance(shape, list) or len(shape) != (2 if mode == "L" else 3) or not all(map(_is_int, shape)) \
            or shape[0] < 1 or shape[1] < 1 or (mode == "RGB" and shape[2] != 3):
        raise bad(f"invalid shape {shape!r}")
    if shape[0] * shape[1] > MAX_OUTPUT_PIXELS:
        raise bad("image too large")
    q = header["quality"]
    if not _is_int(q) or not 1 <= q <= 64:
        raise bad(f"invalid quality {q!r}")
    digest = header["model"]
    if not isinstance(digest, str) or len(digest) != 16 or set(digest) - set("0123456789abcdef"):
        raise bad("invalid model digest")
    ph, pw = -(-shape[0] // HP_FACTOR), -(-shape[1] // HP_FACTOR)
    lat, hyp, esc = header["latent"], header["hyper"], header["escapes"]
    for name, v in (("latent", lat), ("hyper", hyp)):
        if not isinstance(v, list) or len(v) != 3 or not all(map(_is_int, v)) or not 1 <= v[0] <= 4096:
            raise bad(f"invalid {name} {v!r}")
    if lat[1:] != [4 * ph, 4 * pw] or hyp[1:] != [ph, pw]:
        raise bad("latent shapes do not match the image shape")
    if not isinstance(esc, list) or len(esc) != 2 or not all(map(_is_int, esc)) or min(esc) < 0 \
            or esc[0] > hyp[0] * ph * pw or esc[1] > lat[0] * 16 * ph * pw:
        raise bad(f"invalid escape counts {esc!r}")
    unknown = set(sections) - _HP_SECTIONS
    if unknown or "z" not in sections or "y" not in sections:
        raise CorruptStreamError(f"ldm stream: unexpected or missing sections ({', '.join(sorted(set(sections)))})")
    for key, n in (("z_esc", esc[0]), ("y_esc", esc[1])):
        if (key in sections) != (n > 0):
            raise CorruptStreamError(f"ldm stream: section {key} does not match the header's escape count")
    return {"shape": shape, "mode": mode, "quality": q, "model": digest, "latent": lat, "hyper": hyp, "escapes": esc}
