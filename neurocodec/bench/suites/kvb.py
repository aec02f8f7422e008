"""Class-incremental benchmark of the discrete key-value bottleneck (issue 6).

5 tasks of 2 classes (0/1, 2/3, ...), no task ids, the same number of epochs per task, on sklearn
digits and MNIST 5k (``datasets.mnist_5k_split()``), over several seeds. Methods (one JSON each,
``<results>/kvb/<dataset>/<method>.json``):

* ``kvb``: the KV bottleneck (random projections, EMA k-means keys, learned values, key masking)
* ``naive-linear``: a linear head on the same frozen encoder features, fine-tuned task after task
* ``vq-linear``: the same frozen keys, their concatenated selected keys fed to a linear decoder
* ``pq-kvb``: product-quantization codes (splitter="chunk") with the same value decoder
* ``iid``: the KV bottleneck trained on all tasks shuffled together (upper bound); ``iid-linear``
  the linear head likewise
* ``kvb-conv_ae``: the KV bottleneck on the shipped conv autoencoder (pretrained on letters)
* ``kvb-sweep``: the KV bottleneck over a grid of (C, K), one RD point each (plus a PNG plot)

Bits per sample: ``bits_fixed`` = C*log2(K) for index codes (32 bits per float for the linear head
on raw features), ``bits_coded`` = the actual ``kvb`` codec stream of the test set (entropy coded
with tables learned from the training codes), container overhead excluded.

Usage: ``neurocodec bench kvb [--quick] [--data digits mnist] [--seeds 0 1 2]``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UsageError
from ..results import default_results_dir, write_results
from ._shared import parser, split_names, torch_threads

if TYPE_CHECKING:  # the wing is imported inside the functions: importing this suite needs no torch
    import torch

    from neurocodec.codecs.kvb import KVBottleneck

METHODS = ("kvb", "naive-linear", "vq-linear", "pq-kvb", "iid", "iid-linear", "kvb-conv_ae")

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
# per dataset: encoder, main bottleneck, product-quantization bottleneck, sweep grid
CONFIG = {
    "digits": {
        "encoder": ("pca", {"dim": 32}),
        "kvb": {"num_codebooks": 64, "num_keys": 128, "key_dim": 8},
        "pq": {"num_codebooks": 8, "num_keys": 256, "splitter": "chunk"},
        "sweep": [(1, 256), (4, 64), (16, 16), (16, 256), (64, 16), (64, 128), (256, 128), (128, 512)],
        "quick_sweep": [(4, 64), (16, 256), (64, 128)],
    },
    "mnist": {
        "encoder": ("pca", {"dim": 32}),
        # the shipped `mnist` model's bottleneck (train_default.MODELS), so the table is the shipped model's
        "kvb": {"num_codebooks": 64, "num_keys": 256, "key_dim": 8},
        "pq": {"num_codebooks": 8, "num_keys": 256, "splitter": "chunk"},
        "sweep": [(1, 256), (4, 64), (16, 16), (16, 256), (64, 16), (64, 128), (64, 256), (128, 512)],
        "quick_sweep": [],
        # quick (CI) mode: a smaller bottleneck and only the methods that carry the claim
        "quick_kvb": {"num_codebooks": 64, "num_keys": 256, "key_dim": 8},
        "quick_methods": ["kvb", "naive-linear", "pq-kvb"],
    },
}


def load(name: str) -> Any:
    if name == "digits":
        from neurocodec.codecs.kvb.data import digits_split

        return digits_split()
    if name == "mnist":
        from neurocodec import datasets

        return datasets.mnist_5k_split()
    raise UsageError(f"kvb: unknown dataset '{name}' (known: {', '.join(CONFIG)})")


def task_accuracy(pred: np.ndarray, y: np.ndarray) -> list[float]:
    """Accuracy on each task's classes."""
    return [float((pred[np.isin(y, t)] == y[np.isin(y, t)]).mean()) for t in TASKS]


def summarise(matrix: list[list[float]], after: list[float]) -> dict:
    """R[i][j]: accuracy on task j after task i. Forgetting: mean over j < T-1 of the best earlier
    accuracy on task j minus the final one."""
    R = np.array(matrix)
    T = len(R)
    forgetting = float(np.mean([R[j:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)])) if T > 1 else 0.0
    return {"final_accuracy": after[-1], "accuracy_after_task": after, "task_matrix": R.tolist(), "forgetting": forgetting}


def coded_bits(kvb: KVBottleneck, x: np.ndarray, mask: bool = True) -> float:
    from neurocodec.codecs.kvb.codec import KVBCodec

    sections = KVBCodec().compress(x, model=kvb, mask=mask)[1]  # (header, sections[, report])
    return 8 * len(sections["indices"]) / len(x)


def make_kvb(cfg: dict, enc: tuple, seed: int, device: torch.device) -> KVBottleneck:
    from neurocodec.codecs.kvb import KVBottleneck, make_encoder

    return KVBottleneck(make_encoder(enc[0], **enc[1]), seed=seed, device=device, **cfg)


def run_kvb(cfg, enc, data, seed, epochs, device, iid=False) -> dict:
    (xtr, ytr), (xte, yte) = data
    t0 = time.perf_counter()
    kvb = make_kvb(cfg, enc, seed, device)
    kvb.init_keys(xtr)  # unlabelled: the labels are not used
    matrix, after = [], []
    if iid:
        kvb.partial_fit(xtr, ytr, epochs=epochs)
        pred = kvb.predict(xte)
        matrix, after = [task_accuracy(pred, yte)], [float((pred == yte).mean())]
    else:
        for t in TASKS:
            sel = np.isin(ytr, t)
            kvb.partial_fit(xtr[sel], ytr[sel], epochs=epochs)
            pred = kvb.predict(xte)
            matrix.append(task_accuracy(pred, yte))
            after.append(float((pred == yte).mean()))
    out = summarise(matrix, after)
    out["train_time"] = time.perf_counter() - t0
    out["bits_fixed"] = kvb.fixed_bits
    out["bits_coded"] = coded_bits(kvb, xte)
    out["bits_model"] = kvb.model_bits(kvb.indices(xte).cpu().numpy())
    out["keys_used"] = float((kvb.counts > 0).float().mean())
    return out


def run_linear(cfg, enc, data, seed, epochs, device, vq=False, iid=False) -> dict:
    """Linear head on encoder features (naive) or on the concatenated frozen keys (vq)."""
    import torch

    from neurocodec.codecs.kvb.baselines import LinearHead

    (xtr, ytr), (xte, yte) = data
    t0 = time.perf_counter()
    kvb = make_kvb(cfg, enc, seed, device)
    kvb.init_keys(xtr)

    def rep(x):
        if not vq:
            return kvb.features(x)
        idx = kvb.indices(x, mask=False)
        return kvb.keys[torch.arange(kvb.num_codebooks, device=kvb.device)[None, :], idx].flatten(1)

    ztr, zte = rep(xtr), rep(xte)
    ytr_t = torch.from_numpy(ytr).to(kvb.device)
    head = LinearHead(10, seed=seed).init(ztr)
    matrix, after = [], []
    tasks = [tuple(range(10))] if iid else TASKS
    for t in tasks:
        sel = torch.from_numpy(np.isin(ytr, t)).to(kvb.device)
        head.partial_fit(ztr[sel], ytr_t[sel], epochs=epochs)
        pred = head.predict(zte).cpu().numpy()
        matrix.append(task_accuracy(pred, yte))
        after.append(float((pred == yte).mean()))
    out = summarise(matrix, after)
    out["train_time"] = time.perf_counter() - t0
    if vq:
        out["bits_fixed"] = kvb.fixed_bits
        # the same indices as the bottleneck's (unmasked), coded under tables from the key init
        out["bits_coded"] = coded_bits(kvb, xte, mask=False)
    else:
        out["bits_fixed"] = out["bits_coded"] = 32.0 * ztr.shape[1]  # float32 features
    return out


def aggregate(runs: list[dict]) -> dict:
    mean = lambda k: float(np.mean([r[k] for r in runs]))  # noqa: E731
    std = lambda k: float(np.std([r[k] for r in runs]))  # noqa: E731
    return {
        "accuracy": [mean("final_accuracy")],
        "accuracy_std": [std("final_accuracy")],
        "forgetting": [mean("forgetting")],
        "bits_per_sample": [mean("bits_coded")],
        "bits_per_sample_fixed": [mean("bits_fixed")],
        "train_time": [mean("train_time")],
    }


def main(argv: list[str] | None = None) -> int:
    ap = parser("kvb", __doc__)
    ap.add_argument("--quick", action="store_true",
                    help="CI mode: 1 seed, 100 epochs per task, small sweep, fewer MNIST methods (< 3 min)")
    ap.add_argument("--datasets", "--data", dest="datasets", nargs="+", default=["digits", "mnist"])
    ap.add_argument("--codecs", nargs="+", help=f"only these methods ({', '.join(METHODS)}; space- or comma-separated)")
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--epochs", type=int, help="epochs per task (default 500; quick 100)")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--out", type=Path, help="results folder (default: see neurocodec.bench.results.default_results_dir)")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON already under --out")
    args = ap.parse_args(argv)
    args.codecs = split_names(args.codecs)
    if args.codecs and set(args.codecs) - set(METHODS):
        ap.error(f"unknown methods {sorted(set(args.codecs) - set(METHODS))}; known: {', '.join(METHODS)}")
    args.datasets = split_names(args.datasets)
    if set(args.datasets) - set(CONFIG):
        ap.error(f"unknown datasets {sorted(set(args.datasets) - set(CONFIG))}; known: {', '.join(CONFIG)}")
    args.out = args.out or default_results_dir(args.quick)
    if args.plot_only:
        return replot(args.out, args.datasets, args.quick)
    with torch_threads(1):  # shared 2-core machines; the work is small per step (restored afterwards)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from neurocodec.runtime import resolve_device

    device = resolve_device("auto")
    epochs = args.epochs or (100 if args.quick else 500)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    t_start = time.perf_counter()
    summary_rows = []
    sweep_points: dict[str, list[dict]] = {}
    for name in args.datasets:
        cfg = dict(CONFIG[name])
        if args.quick and "quick_kvb" in cfg:
            cfg["kvb"] = cfg["quick_kvb"]
        data = load(name)
        enc = cfg["encoder"]
        methods = {
            "kvb": lambda s: run_kvb(cfg["kvb"], enc, data, s, epochs, device),
            "naive-linear": lambda s: run_linear(cfg["kvb"], enc, data, s, epochs, device),
            "vq-linear": lambda s: run_linear(cfg["kvb"], enc, data, s, epochs, device, vq=True),
            "pq-kvb": lambda s: run_kvb(cfg["pq"], enc, data, s, epochs, device),
            "iid": lambda s: run_kvb(cfg["kvb"], enc, data, s, epochs, device, iid=True),
            "iid-linear": lambda s: run_linear(cfg["kvb"], enc, data, s, epochs, device, iid=True),
            # the shipped conv autoencoder (pretrained on letters, no digits) as the frozen encoder
            "kvb-conv_ae": lambda s: run_kvb(cfg["kvb"], ("conv_ae", {}), data, s, epochs, device),
        }
        main_runs: list[dict] = []
        for method, fn in methods.items():
            if args.quick and method not in cfg.get("quick_methods", methods):
                continue
            if args.codecs and method not in args.codecs:
                continue
            runs = []
            for s in seeds:
                r = fn(s)
                runs.append(r)
                print(f"[{time.perf_counter() - t_start:6.0f}s] {name:6s} {method:12s} seed {s}: final {r['final_accuracy']:.4f} "
                      f"forgetting {r['forgetting']:.4f} bits {r['bits_coded']:.1f}/{r['bits_fixed']:.1f}", flush=True)
            if method == "kvb":
                main_runs = runs
            res = aggregate(runs)
            params = cfg["kvb"] if method in ("kvb", "iid", "vq-linear", "kvb-conv_ae") else cfg["pq"] if method == "pq-kvb" else {}
            encoder = "conv_ae (shipped, pretrained on letters)" if method == "kvb-conv_ae" else f"{enc[0]} {enc[1]}"
            desc = (f"{method} on {name}: class-incremental {len(TASKS)} tasks x 2 classes, {epochs} epochs/task, "
                    f"no task ids, seeds {seeds}, encoder {encoder}, bottleneck {params}")
            if method.startswith("iid"):
                desc = f"{method} on {name}: all classes shuffled together, {epochs} epochs, seeds {seeds}, encoder {enc[0]} {enc[1]}"
            write_results("kvb", name, method, res, description=desc, quick=args.quick, out_dir=args.out,
                          extra={"per_seed": runs, "seeds": seeds, "epochs_per_task": epochs, "params": params,
                                 "encoder": {"name": "conv_ae"} if method == "kvb-conv_ae" else {"name": enc[0], **enc[1]},
                                 "device": str(device)})
            summary_rows.append((name, method, res))
        grid = [] if args.no_sweep else (cfg["quick_sweep"] if args.quick else cfg["sweep"])
        if grid:
            points = []
            for C, K in grid:
                point = {"num_codebooks": C, "num_keys": K, "key_dim": 8}
                if point == cfg["kvb"] and main_runs:
                    r = dict(main_runs[0])  # the main configuration, seed seeds[0]: already measured
                else:
                    r = run_kvb(point, enc, data, seeds[0], epochs, device)
                r.update(num_codebooks=C, num_keys=K)
                points.append(r)
                print(f"[{time.perf_counter() - t_start:6.0f}s] {name:6s} sweep C={C:<4d} K={K:<5d}: final {r['final_accuracy']:.4f} "
                      f"bits {r['bits_coded']:.1f}/{r['bits_fixed']:.1f}", flush=True)
            res = {
                "accuracy": [p["final_accuracy"] for p in points],
                "forgetting": [p["forgetting"] for p in points],
                "bits_per_sample": [p["bits_coded"] for p in points],
                "bits_per_sample_fixed": [p["bits_fixed"] for p in points],
                "num_codebooks": [p["num_codebooks"] for p in points],
                "num_keys": [p["num_keys"] for p in points],
                "train_time": [p["train_time"] for p in points],
            }
            write_results("kvb", name, "kvb-sweep", res, quick=args.quick, out_dir=args.out,
                          description=f"kvb rate-accuracy sweep over (C, K) on {name}, d_k=8, seed {seeds[0]}, {epochs} epochs/task",
                          extra={"per_point": points, "epochs_per_task": epochs, "encoder": {"name": enc[0], **enc[1]}})
            sweep_points[name] = points
    plot(sweep_points, summary_rows, args.out / "kvb" / ("rate_accuracy_quick.png" if args.quick else "rate_accuracy.png"))
    print("\n dataset method        final acc   forgetting  bits coded / fixed")
    for name, method, res in summary_rows:
        print(f" {name:7s} {method:12s}  {res['accuracy'][0]:.4f}±{res['accuracy_std'][0]:.4f}  {res['forgetting'][0]:8.4f}"
              f"   {res['bits_per_sample'][0]:8.1f} / {res['bits_per_sample_fixed'][0]:.1f}")
    print(f"total {time.perf_counter() - t_start:.0f} s on {device}")
    return 0


def replot(out: Path, names: list[str], quick: bool) -> int:
    from neurocodec.bench.results import read_results, result_path

    sweeps, rows = {}, []
    for name in names:
        sweep = result_path("kvb", name, "kvb-sweep", out)
        if sweep.exists():
            sweeps[name] = read_results(sweep)["extra"]["per_point"]
        for method in ("kvb", "naive-linear", "vq-linear", "pq-kvb", "iid"):
            path = result_path("kvb", name, method, out)
            if path.exists():
                rows.append((name, method, read_results(path)["results"]))
    plot(sweeps, rows, out / "kvb" / ("rate_accuracy_quick.png" if quick else "rate_accuracy.png"))
    return 0


def plot(sweeps: dict[str, list[dict]], rows: list, path: Path) -> None:
    """The rate-accuracy figure (bench.plot.kvb_figure, which benchmarks/report.py also redraws)."""
    from ..plot import kvb_figure, save_figure

    if not sweeps and not rows:
        return
    save_figure(kvb_figure(sweeps, rows), path)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
