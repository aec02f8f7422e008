"""The ldm wing's learned objects and their files: ``sr`` (LIIF upsampler), ``ae`` (the codec's
autoencoder, also the diffusion latent space), ``unet`` (the latent denoiser) and ``hpsr`` (the
hyperprior codec's any-size decoder; its config names the hyperprior it was trained for).

Why here and not in ``train.py``: decoding has to build a network from a file, training has to
write one, and decoding must never import training code. This module is the meeting point; it
reads and writes through :mod:`neurocodec.weights` only, so no path through it opens a pickle.

File format: a :mod:`neurocodec.weights` model file of kind ``"ldm"``, format version 1. Config::

    {"network": "sr" | "ae" | "unet" | "hpsr",
     "args": {...},              # the network's constructor arguments (for unet: latent, ch, mult,
                                 # and its training parameterisation: prediction, schedule)
     "train": {...} | null,      # the recipe that made it (provenance; decoding never reads it)
     "step": int,                # optional: training steps done
     "table_radius": int,        # ae: latent symbols are clipped to [-r, r]
     "sigma": float, "res_sigma": float, "condition": "bicubic" | "liif",   # unet
     "hyperprior": str}          # hpsr: SHA-256 of the hyperprior model it decodes for

Arrays: ``state/<parameter>`` (floating parameters stored as float16: trained weights are rounded
once, when saved, and widened to float32 when built) and, for ``ae``, ``tables``: the integer
entropy-coding tables ``(qualities, latent, 2r+1)``, computed once from the stored (rounded)
parameters, so encoder and decoder read the same integers and never derive them from floats.

Identity: a model is its file's SHA-256 (:attr:`~neurocodec.weights.ModelFile.digest`); the shipped
files are pinned by :data:`SHIPPED`, a codec stream records the ``ae`` file's short digest.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ... import weights
from ...errors import InputError, UsageError
from ...runtime import resolve_device
from .autoencoder import CodecAE, LIIFUpsampler, SynthesisLIIF
from .diffusion import PREDICTIONS, SCHEDULES, UNet

KIND = "ldm"
FORMAT_VERSION = 1
VERSIONS = (1, FORMAT_VERSION)  # model-format versions this code reads

NETWORKS: Mapping[str, type[nn.Module]] = {"sr": LIIFUpsampler, "ae": CodecAE, "unet": UNet, "hpsr": SynthesisLIIF}
FILES: Mapping[str, str] = {name: f"{name}.ncx" for name in NETWORKS}
#: which network each training stage (``neurocodec ldm train --stage``) makes
STAGE_NETWORKS: Mapping[str, str] = {"sr": "sr", "ae": "ae", "diffusion": "unet", "hpsr": "hpsr"}
CONDITIONS = ("bicubic", "liif")  # how the diffusion condition brings the LR image onto the target grid

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: the recipe the shipped models were trained with
DEFAULT_CONFIG = WEIGHTS_DIR / "config.json"
TABLE_RADIUS = 127  # latent symbols are clipped to [-127, 127]

#: SHA-256 of the shipped model files: an edited or swapped file is refused, not silently used
SHIPPED: Mapping[str, str] = {
    "sr": "feef6acad6ba628fcc11163197e330cd41958a8ab34759361f36707cc16d7b22",
    "ae": "fecd3291b1b139a57f8d36db028e3466a93420e1f8636adf86b4503e533b3fa4",
    "unet": "938a919e1872700f10edadbe83c229af804fbd9fdb980b69e3f2ed41869e945d",
    # the any-size decoder of hyperprior-2 (config.json "hpsr", 6,000 steps from sr.ncx)
    "hpsr": "674eaaec48efe6df01ed4ceeecdd412d8ed5dd60becf4afaa65ff86359099f3f",
}

#: the shipped hyperpriors (bitstream v3; model files of their own format, read by the codec
#: through :mod:`.hpcoding`), pinned like the others: file name -> (SHA-256 of the model, which is
#: what its streams record; SHA-256 of the file shipped). A v3 stream records the short digest of
#: the model it was made with, so every model ever shipped stays here and every file it wrote keeps
#: decoding; new encodes use ``HYPERPRIOR_FILE``. A retired model ships as its decode-only copy
#: (:func:`.hpcoding.write_decode_only`: the synthesis, integer ``h_s`` and tables, under half the
#: bytes), which decodes its files bit for bit; the two digests then differ.
HYPERPRIORS: Mapping[str, tuple[str, str]] = {
    "hyperprior.ncx": (  # 9,824 steps; retired: decode-only
        "f9e1bd53146a1fbdf56fbe5a26df7a81270295ba454dcc1914022bc4d0c88674",
        "884f17f4c7cd555e16e8b9714672643503d4528ff87cee2646e1c203dfdc4e33"),
    "hyperprior-2.ncx": (  # + 11,056 steps
        "0af733c6910712365e052cb2290441c0471ee73957cb9fae467bc8bf07356161",
        "0af733c6910712365e052cb2290441c0471ee73957cb9fae467bc8bf07356161"),
}
HYPERPRIOR_FILE = "hyperprior-2.ncx"
SHIPPED_HYPERPRIOR = HYPERPRIORS[HYPERPRIOR_FILE][1]

_META = {"sr": (), "ae": (), "unet": ("sigma", "res_sigma", "condition"), "hpsr": ("hyperprior",)}


# ------------------------------------------------------------------------------------- reading
def load_file(path: str | Path, network: str, *, expect_digest: str | None = None) -> weights.ModelFile:
    """Read and check the ``network`` model file at ``path`` (cached per file by weights.load).

    A ``.pt`` file (this wing's old, pickled format) is refused without being opened: unpickling
    runs code, so a model file from a stranger would be a program."""
    _check_network(network)
    p = Path(path)
    if p.suffix == ".pt":
        raise InputError(f"'{p}' is an old pickled model file, which neurocodec never opens (it could run "
                         f"code): use the .ncx model files (`neurocodec ldm train` writes them)")
    mf = weights.load(p, kind=KIND, versions=VERSIONS, expect_digest=expect_digest)
    _check_config(mf, network, p)
    return mf


def model_path(network: str, weights_dir: str | Path | None = None) -> Path:
    """Where the ``network`` model file lives: the shipped folder, or ``weights_dir``."""
    _check_network(network)
    return (Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR) / FILES[network]


def load(network: str, weights_dir: str | Path | None = None) -> weights.ModelFile:
    """The ``network`` model file of ``weights_dir`` (default: the shipped one, pinned by :data:`SHIPPED`)."""
    path = model_path(network, weights_dir)
    if not path.exists():
        legacy = path.with_suffix(".pt")
        if legacy.exists():
            raise InputError(f"'{path.parent}' holds {legacy.name}, an old pickled model file, which neurocodec "
                             f"never opens (it could run code): retrain with `neurocodec ldm train`, which writes "
                             f"{path.name}")
        stage = next(s for s, n in STAGE_NETWORKS.items() if n == network)
        raise InputError(f"model file {path} is missing (train it with `neurocodec ldm train --stage {stage}`)")
    return load_file(path, network, expect_digest=SHIPPED[network] if weights_dir is None else None)


def network(mf: weights.ModelFile, device: Any = "cpu") -> nn.Module:
    """The network of ``mf`` on ``device``, built once per (file, device) and shared: read-only
    (no ``.to()``, no training, no attribute writes; :func:`instantiate` gives a private copy)."""
    return weights.build(mf, _build, str(resolve_device(device)))


def _build(mf: weights.ModelFile, device: str) -> nn.Module:
    net = instantiate(mf)
    net.requires_grad_(False)
    return net.to(device)  # a fresh module, not yet shared: moving it is fine


def instantiate(mf: weights.ModelFile) -> nn.Module:
    """A new float32 CPU module in eval mode with ``mf``'s parameters (private: may be trained)."""
    name = mf.config.get("network")
    _check_network(name)
    args = weights.thaw(mf.config.get("args"))
    if not isinstance(args, dict):
        raise InputError(f"ldm model file {mf.short_digest} has no constructor arguments")
    if name == "unet" and "mult" in args:
        args["mult"] = tuple(args["mult"])
    try:
        net = NETWORKS[name](**args)
    except (TypeError, ValueError) as exc:
        raise InputError(f"ldm {name} model file {mf.short_digest} has unusable arguments ({exc})") from None
    state = {key[len("state/"):]: torch.from_numpy(np.array(arr)) for key, arr in mf.arrays.items()
             if key.startswith("state/")}
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"ldm {name} model file {mf.short_digest} does not fit its network ({first})") from None
    return net.eval()


def tables(mf: weights.ModelFile) -> np.ndarray:
    """The ``ae`` file's integer coding tables ``(qualities, latent, 2r+1)`` (read-only)."""
    return mf.array("tables")


def _check_network(name: Any) -> None:
    if name not in NETWORKS:
        raise UsageError(f"unknown ldm network {name!r} (known: {', '.join(NETWORKS)})")


def _check_config(mf: weights.ModelFile, network: str, path: Path) -> None:
    """Refuse a well-formed container whose config the code cannot use, with one clear line."""
    cfg = mf.config
    what = f"model file '{path}'"
    if cfg.get("network") != network:
        raise InputError(f"{what} holds an ldm '{cfg.get('network')}' network, not '{network}'")
    if not isinstance(cfg.get("args"), Mapping):
        raise InputError(f"{what} has no constructor arguments")
    if network == "ae":
        r, t = cfg.get("table_radius"), mf.arrays.get("tables")
        args = cfg["args"]
        want = (args.get("qualities", 4), args.get("latent", 8), 2 * r + 1) if isinstance(r, int) and r > 0 else None
        if t is None or want is None or t.dtype.kind not in "iu" or t.shape != want or (t.size and t.min() < 1):
            raise InputError(f"{what} lacks valid coding tables")
    if network == "hpsr" and not _is_digest(cfg.get("hyperprior")):
        raise InputError(f"{what} does not say which hyperprior it decodes for")
    if network == "unet":
        args = cfg["args"]
        if args.get("prediction", "eps") not in PREDICTIONS or args.get("schedule", "linear") not in SCHEDULES:
            raise InputError(f"{what} has an unknown prediction or noise schedule")
        for key in ("sigma", "res_sigma"):
            v = cfg.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise InputError(f"{what} has no valid latent scale '{key}'")
        if cfg.get("condition") not in CONDITIONS:
            raise InputError(f"{what} has an unknown condition {cfg.get('condition')!r}")


def _is_digest(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


# ------------------------------------------------------------------------------------- writing
def save(net: nn.Module, network: str, folder: str | Path, *, train: Mapping[str, Any] | None = None,
         step: int | None = None, **meta: Any) -> Path:
    """Write ``net`` as ``folder/<network>.ncx`` (atomically) and return the path.

    Floating parameters are rounded to float16; for ``ae`` the coding tables are computed from the
    rounded parameters (on a private copy: ``net`` is not changed). ``unet`` needs ``sigma`` (the
    latent scale) and takes ``res_sigma`` (default ``sigma``) and ``condition`` (default bicubic)."""
    _check_network(network)
    if not isinstance(net, NETWORKS[network]):
        raise UsageError(f"an ldm {network} file holds a {NETWORKS[network].__name__}, got {type(net).__name__}")
    unknown = set(meta) - set(_META[network])
    if unknown:
        raise UsageError(f"an ldm {network} file has no field(s) {', '.join(sorted(unknown))}")
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    config: dict[str, Any] = {"network": network, "args": weights.thaw(net.config),
                              "train": weights.thaw(train) if train is not None else None}
    if step is not None:
        config["step"] = int(step)
    arrays: dict[str, Any] = {f"state/{k}": v for k, v in state.items()}
    if network == "ae":
        rounded = CodecAE(**net.config)
        rounded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        arrays["tables"] = rounded.prior_tables(TABLE_RADIUS)
        config["table_radius"] = TABLE_RADIUS
    if network == "hpsr":
        if not _is_digest(meta.get("hyperprior")):
            raise UsageError("an ldm hpsr file needs the model digest of the hyperprior it decodes for")
        config["hyperprior"] = meta["hyperprior"]
    if network == "unet":
        if "sigma" not in meta:
            raise UsageError("an ldm unet file needs its latent scale sigma")
        config["sigma"] = float(meta["sigma"])
        config["res_sigma"] = float(meta.get("res_sigma", meta["sigma"]))
        config["condition"] = str(meta.get("condition", "bicubic"))
        if config["condition"] not in CONDITIONS:
            raise UsageError(f"condition must be one of {', '.join(CONDITIONS)}, got {config['condition']!r}")
    path = Path(folder) / FILES[network]
    weights.save(path, KIND, FORMAT_VERSION, config, arrays)
    return path
