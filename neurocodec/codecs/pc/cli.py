"""``neurocodec pc ...``: the pc wing's commands.

* ``neurocodec pc fit DATA -o model.ncx``: train a probabilistic-circuit model file for ``--codec pc``
  (use it with ``-p model=model.ncx`` to encode and to decode);
* ``neurocodec pc convert OLD.ncpc -o NEW.ncx``: turn a model of the old ``.ncpc`` format into a model
  file with the same parameters.

Training code is imported inside the command that trains, so ``neurocodec --help`` stays light.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ...errors import InputError, UsageError


def _load_training_data(spec: str) -> np.ndarray | list[np.ndarray]:
    """A dataset name (``mnist_5k``: its train split; a photo or clip name), a ``.npy``/``.npz``
    array, an image file, or a folder of images (of any sizes)."""
    from ... import datasets, io as nio

    if spec == "mnist_5k":
        (x, _), _ = datasets.mnist_5k_split()
        return x
    p = Path(spec)
    if not p.exists():
        if spec in datasets.names():
            return datasets.load(spec)
        raise InputError(f"training data '{spec}' is neither a file, a folder nor a dataset name")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in nio.IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"folder '{p}' holds no images")
        return [nio.read_image(f) for f in files]
    if p.suffix.lower() == ".npz":
        with np.load(p) as z:
            if not z.files:
                raise InputError(f"'{p}' holds no arrays")
            return z[z.files[0]]
    return nio.read_any(p)


def _fit(args: argparse.Namespace) -> int:
    from .train import fit_model
    from .train_em import EMConfig

    if args.states < 1 or args.epochs < 1 or args.pseudocount < 0 or args.basis < 0:
        raise UsageError("states and epochs must be >= 1, basis and pseudocount >= 0")
    data = _load_training_data(args.data)
    cfg = EMConfig(states=args.states, epochs=args.epochs, pseudocount=args.pseudocount, basis=args.basis,
                   batch_size=args.batch_size, seed=args.seed)
    patch = None if args.patch is None else int(args.patch)
    say = None if args.quiet else (lambda s: print(s, file=sys.stderr))
    model = fit_model(data, patch=patch, config=cfg, max_patches=args.max_patches, name=Path(args.output).stem,
                      progress=not args.quiet, log=say)
    digest = model.save(args.output)
    if not args.quiet:
        print(f"wrote {args.output} (model digest {digest[:16]})", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .legacy import convert

    _, digest = convert(args.model, args.output)
    if not args.quiet:
        print(f"wrote {args.output} (model digest {digest[:16]})", file=sys.stderr)
    return 0


def add_commands(subparsers, common: argparse.ArgumentParser | None = None) -> None:
    parents = [common] if common is not None else []
    pc = subparsers.add_parser("pc", parents=parents, help="probabilistic-circuit codec tools")
    sub = pc.add_subparsers(dest="pc_command", metavar="SUBCOMMAND", parser_class=type(pc))
    p = sub.add_parser("fit", parents=parents, help="train a pc model file (use it with --param model=PATH)")
    p.add_argument("data", help="folder of images, image, .npy/.npz array, or dataset name (mnist_5k)")
    p.add_argument("-o", "--output", required=True, help="output model file (.ncx)")
    p.add_argument("--states", type=int, default=16, help="hidden states per pixel, M (default 16)")
    p.add_argument("--basis", type=int, default=16, help="shared leaf value distributions, 0 = full leaves")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--pseudocount", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--patch", type=int, help="square patch side (default: whole images up to 32x32, else 8)")
    p.add_argument("--max-patches", type=int, default=20000, help="random patches drawn per channel count")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_fit)
    p = sub.add_parser("convert", parents=parents, help="convert an old .ncpc model to a pc model file (.ncx)")
    p.add_argument("model", help="the .ncpc file")
    p.add_argument("-o", "--output", required=True, help="output model file (.ncx)")
    p.set_defaults(func=_convert)
    pc.set_defaults(func=lambda args: (pc.print_help(sys.stderr), 2)[1])
