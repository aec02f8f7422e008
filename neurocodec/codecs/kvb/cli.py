"""``neurocodec kvb ...``: fit a key-value bottleneck, learn further tasks, predict.

* ``neurocodec kvb fit DATA --labels Y -o model.ncx``: keys by EMA k-means on the unlabelled
  images (``--unlabelled``, default DATA itself without its labels), then the first task.
* ``neurocodec kvb learn model.ncx DATA --labels Y``: one more task (in place, or ``-o``).
* ``neurocodec kvb predict model.ncx DATA [-o pred.npy] [--labels Y]``: class ids (+ accuracy);
  MODEL may also be a built-in name (``digits``, ``mnist``).

DATA is a ``.npy`` array (``N, ...``), or a folder of images. Labels come from ``--labels``
(``.npy`` or a text file of integers, one per sample, in DATA order; for a folder, the sorted file
order) or, for a folder without ``--labels``, from integer-named class subfolders
(``DATA/3/*.png`` -> label 3). Encoding and decoding go through ``neurocodec encode --codec kvb
-p model=model.ncx`` and ``neurocodec decode``.

Model files are ``model:kvb`` ``.ncx`` files (``model.py``); ``fit``/``learn`` print their digest.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, UsageError


def _read_labels(path: str, n: int) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such labels file: {p}")
    try:
        if p.suffix.lower() == ".npy":
            y = np.load(p, allow_pickle=False)
        else:
            y = np.loadtxt(p, dtype=np.float64, delimiter="," if p.suffix.lower() == ".csv" else None, ndmin=1)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a readable labels file ({exc})") from None
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise InputError(f"{p}: labels must be integers")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise InputError(f"{p}: labels must be integers, got {y.dtype}")
    if y.size != n:
        raise InputError(f"{p} holds {y.size} labels for {n} samples")
    return y.astype(np.int64)


def read_data(path: str, labels: str | None, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """DATA (+ labels) as described in the module docstring."""
    from ...io import IMAGE_EXTENSIONS, read_any, read_image

    p = Path(path)
    if p.is_dir() and labels is None and need_labels:
        classes = sorted((d for d in p.iterdir() if d.is_dir()), key=lambda d: d.name)
        if not classes or not all(d.name.isdigit() for d in classes):
            raise InputError(
                f"{p}: give --labels, or put the images in integer-named class folders ({p}/0/, {p}/1/, ...)"
            )
        images, ys = [], []
        for d in classes:
            files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            images += [read_image(f) for f in files]
            ys += [int(d.name)] * len(files)
        if not images:
            raise InputError(f"{p}: the class folders hold no images")
        if len({im.shape for im in images}) != 1:
            raise InputError(f"images in {p} differ in size")
        return np.stack(images), np.array(ys, dtype=np.int64)
    x = read_any(p)
    if x.ndim < 2:
        raise InputError(f"{p}: expected a batch of samples (N, ...), got shape {x.shape}")
    if x.ndim == 2 and p.suffix.lower() != ".npy" and not p.is_dir():
        x = x[None]  # one grey image
    y = _read_labels(labels, len(x)) if labels is not None else None
    if need_labels and y is None:
        raise UsageError("--labels is required for this input")
    return x, y


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def cmd_fit(args: argparse.Namespace) -> int:
    from .encoders import make_encoder
    from .model import KVBottleneck

    x, y = read_data(args.data, args.labels, need_labels=True)
    unl = read_data(args.unlabelled, None, need_labels=False)[0] if args.unlabelled else x
    opts: dict[str, Any] = {}
    if args.encoder in ("pca", "random_relu") and args.encoder_dim is not None:
        opts["dim"] = args.encoder_dim
    if args.encoder == "random_relu":
        opts["seed"] = args.seed
    kvb = KVBottleneck(make_encoder(args.encoder, **opts), num_codebooks=args.codebooks, num_keys=args.keys,
                       key_dim=args.key_dim, value_dim=args.classes, splitter=args.splitter, seed=args.seed,
                       device=args.device)
    t0 = time.perf_counter()
    kvb.init_keys(unl, epochs=args.init_epochs, progress=not args.quiet)
    kvb.partial_fit(x, y, epochs=args.epochs, progress=not args.quiet)
    kvb.save(args.output)
    _say(args, f"{args.output}: {kvb!r}, digest {kvb.short_digest}, train accuracy {kvb.score(x, y):.4f}, "
               f"{kvb.fixed_bits:.0f} bits/sample fixed ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from .model import KVBottleneck

    kvb = KVBottleneck.load(args.model, device=args.device)
    x, y = read_data(args.data, args.labels, need_labels=True)
    t0 = time.perf_counter()
    kvb.partial_fit(x, y, epochs=args.epochs, progress=not args.quiet)
    out = args.output or args.model
    kvb.save(out)
    _say(args, f"{out}: {kvb!r}, digest {kvb.short_digest}, accuracy on this task {kvb.score(x, y):.4f} "
               f"({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ...io import write_bytes_atomic
    from .codec import resolve_model

    kvb = resolve_model(args.model, device=args.device)
    x, y = read_data(args.data, args.labels, need_labels=False)
    pred = kvb.predict(x)
    if args.output:
        import io

        buf = io.BytesIO()
        np.save(buf, pred, allow_pickle=False)
        write_bytes_atomic(args.output, buf.getvalue())
    else:
        print("\n".join(map(str, pred)))
    if y is not None:
        _say(args, f"accuracy {float((pred == y).mean()):.4f} on {len(y)} samples")
    return 0


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("neurocodec kvb needs an action: fit, learn or predict")


def add_commands(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    parents = [common] if common is not None else []
    kvb = subparsers.add_parser("kvb", parents=parents, help="discrete key-value bottleneck: fit, learn, predict")
    sub = kvb.add_subparsers(dest="kvb_command", metavar="ACTION", parser_class=type(kvb))
    kvb.set_defaults(func=_no_action)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("data", help=".npy array (N, ...) or a folder of images (class subfolders 0/, 1/, ... "
                                    "give labels)")
        p.add_argument("--labels", help=".npy or text file of integer labels, one per sample")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: cuda when available)")

    p = sub.add_parser("fit", parents=parents, help="initialise keys on unlabelled data, then learn the first task")
    data_args(p)
    p.add_argument("-o", "--output", required=True, help="bottleneck model file to write (.ncx)")
    p.add_argument("--unlabelled", help="data for the key initialisation (default: DATA without labels)")
    p.add_argument("--encoder", default="pca", choices=["pca", "random_relu", "conv_ae", "identity"])
    p.add_argument("--encoder-dim", type=int, help="output size of pca / random_relu (default 32 / 256)")
    p.add_argument("--codebooks", type=int, default=64, help="C (default 64)")
    p.add_argument("--keys", type=int, default=128, help="K keys per codebook (default 128)")
    p.add_argument("--key-dim", type=int, help="d_k (default 8; chunk: feature size / C)")
    p.add_argument("--splitter", default="random", choices=["random", "chunk"])
    p.add_argument("--classes", type=int, default=10, help="number of classes (value_dim, default 10)")
    p.add_argument("--epochs", type=int, default=500, help="epochs on this task (default 500)")
    p.add_argument("--init-epochs", type=int, default=10, help="EMA k-means epochs (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("learn", parents=parents, help="learn one more task (values only, no forgetting)")
    p.add_argument("model", help="bottleneck file from `kvb fit`")
    data_args(p)
    p.add_argument("-o", "--output", help="write here instead of updating MODEL in place")
    p.add_argument("--epochs", type=int, default=500)
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser("predict", parents=parents, help="class ids for DATA (accuracy if --labels is given)")
    p.add_argument("model", help="bottleneck file or built-in name")
    data_args(p)
    p.add_argument("-o", "--output", help=".npy file for the predictions (default: print them)")
    p.set_defaults(func=cmd_predict)
