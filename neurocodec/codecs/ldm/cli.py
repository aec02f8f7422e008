"""``neurocodec upsample``, ``neurocodec generate`` and ``neurocodec ldm train``.

Building the parser imports neither torch nor training code (every ``neurocodec`` command builds
it); the training modules are imported inside the ``train`` command only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import UsageError


def parse_size(text: str) -> tuple[int, int]:
    """``"1000x750"`` -> ``(1000, 750)`` (width, height)."""
    parts = str(text).lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"size must look like WIDTHxHEIGHT (e.g. 1000x750), got '{text}'") from None
    if w < 1 or h < 1:
        raise UsageError(f"size must be positive, got '{text}'")
    return w, h


def _upsample(args: argparse.Namespace) -> int:
    from ...io import read_image, write_image
    from .api import upsample

    if (args.scale is None) == (args.size is None):
        raise UsageError("give exactly one of --scale or --size")
    img = read_image(args.input)
    out = upsample(
        img,
        args.scale,
        size=parse_size(args.size) if args.size else None,
        method=args.method,
        steps=args.steps,
        seed=args.seed,
        **({} if args.strength is None else {"strength": args.strength}),
        tile=args.tile,
        weights_dir=args.weights,
        device=args.device,
        progress=not getattr(args, "quiet", False),
    )
    write_image(args.output, out)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from ...io import write_image
    from .api import generate

    w, h = parse_size(args.size)
    write_image(args.output, generate(w, h, seed=args.seed, steps=args.steps, tile=args.tile, weights_dir=args.weights,
                                      device=args.device, progress=not getattr(args, "quiet", False)))
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import run

    return run(args.stage, args.config, args.out, args.steps, getattr(args, "threads", None), args.section, args.device)


def add_commands(subparsers, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``upsample``, ``generate`` and ``ldm train``; ``common`` (--quiet/--debug) is their parent."""
    # paths and names only: model.py would import torch, so they are spelled out here
    weights_dir = Path(__file__).parent / "weights"
    stages = ("ae", "diffusion", "hpsr", "sr")

    parents = [common] if common is not None else []

    up = subparsers.add_parser("upsample", parents=parents, help="resize an image to any scale (LIIF or latent diffusion)")
    up.add_argument("input", help="input image (PNG, JPEG, ...)")
    up.add_argument("-o", "--output", required=True, help="output image")
    up.add_argument("--scale", type=float, default=None, help="output size = round(input size x SCALE)")
    up.add_argument("--size", default=None, help="output size WIDTHxHEIGHT instead of --scale")
    up.add_argument("--method", choices=("liif", "diffusion"), default="liif")
    up.add_argument("--steps", type=int, default=10, help="DDIM steps (diffusion)")
    up.add_argument("--seed", type=int, default=0, help="noise seed (diffusion)")
    up.add_argument("--strength", type=float, default=None,
                    help="diffusion: start noise level as a fraction of T (1 = pure noise; lower = closer to "
                         "bicubic; default: the shipped model's, see neurocodec.codecs.ldm.api.DEFAULT_STRENGTH)")
    up.add_argument("--tile", type=int, default=256, help="output tile side: bounds memory")
    up.add_argument("--weights", type=Path, default=None,
                    help="model folder with sr/ae/unet.ncx (default: the shipped models)")
    up.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    up.set_defaults(func=_upsample)

    gen = subparsers.add_parser("generate", parents=parents, help="sample an image from the latent diffusion model")
    gen.add_argument("--size", required=True, help="output size WIDTHxHEIGHT")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, default=20, help="DDIM steps")
    gen.add_argument("--tile", type=int, default=256)
    gen.add_argument("-o", "--output", required=True)
    gen.add_argument("--weights", type=Path, default=None,
                     help="model folder with ae/unet.ncx (default: the shipped models)")
    gen.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    gen.set_defaults(func=_generate)

    ldm = subparsers.add_parser("ldm", parents=parents, help="ldm model tools")
    sub = ldm.add_subparsers(dest="ldm_command", required=True)
    tr = sub.add_parser("train", parents=parents, help="train an ldm model (sr, ae, then diffusion)")
    tr.add_argument("--stage", required=True, choices=stages)
    tr.add_argument("--config", type=Path, default=weights_dir / "config.json",
                    help="JSON config (default: the shipped one)")
    tr.add_argument("--out", type=Path, default=Path("ldm_weights"),
                    help=f"folder for the weights and the log (the shipped ones are in {weights_dir})")
    tr.add_argument("--section", default=None,
                    help="config section to train with (default: the stage's name, e.g. diffusion_pretrain)")
    tr.add_argument("--steps", type=int, default=None, help="override the config's step count")
    # --threads comes from the common options: torch threads for the training (restored when it ends)
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    tr.set_defaults(func=_train)
