"""Video benchmark: HNeRV and NeRV against x264 / x265 / SVT-AV1 on carphone and bunny.

    neurocodec bench video [--quick] [--data carphone|bunny|all|CLIP ...] [--epochs N]
    neurocodec bench video --data clip.mp4 [--codecs x265,hnerv]   # your own clips (any file PyAV reads)
    neurocodec bench video --screen             # only the learning-rate screens

Every RD point runs in its own worker process (so its peak memory is its own, measured with
``wait4``): encode through ``neurocodec.encode`` (bits = the whole ``.ncx``), decode (timed, frames
per second), PSNR-RGB (mean over frames) and MS-SSIM-RGB against the source. Neural points use one
torch thread (the machine is shared); ffmpeg uses its defaults.

HNeRV points are rate targets (``target_bpp``); each NeRV point gets the same parameter count
(``target_params`` = the HNeRV point's decoder + embedding values) and the same epochs, which is the
paper's comparison. Results: ``<results>/video/<dataset>/<codec>.json`` (written after every
point, so an interrupted run leaves valid files; BD-rates and the HNeRV-NeRV pairs in
``hnerv.json``'s ``extra``), ``rd.png`` and ``table.md``. A clip given by path is the dataset named
after its file (``clip.mp4`` -> ``clip``; ``--quick``: its first 8 frames), with the carphone bpp
targets and a learning-rate screen at 0.1 bpp. Full runs cache points in ``--cache`` (default
/tmp/neurocodec_video_bench) so a rerun resumes; ``--quick`` uses a fresh temporary cache.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ...errors import InputError
from ._shared import parser, split_names

#: The module the RD-point workers run (``python -m``): this file, by its import name, since
#: ``__name__`` is ``__main__`` when it runs as a worker itself.
_WORKER_MODULE = "neurocodec.bench.suites.video"
BUILTIN = ("carphone", "bunny")
#: built-in clips that ``all`` leaves out: the paper's setting, for a GPU (``benchmarks/video/gpu.sh``)
GPU_CLIPS = ("bunny1280",)
CODECS = ("x264", "x265", "svtav1", "hnerv", "nerv")

CLASSICAL = {
    "x264": {"preset": "veryslow", "crf": [23, 28, 33, 38, 43, 48]},
    "x265": {"preset": "slow", "crf": [23, 28, 33, 38, 43, 48]},
    "svtav1": {"preset": "4", "crf": [35, 42, 49, 56, 63]},
}
FULL_BPP = {"carphone": [0.06, 0.1, 0.16, 0.25], "bunny": [0.03, 0.06, 0.1, 0.16],
            # about the paper's 0.35 / 0.75 / 1.5 / 3 M-parameter Bunny models at 132 frames of 1280x640
            "bunny1280": [0.025, 0.05, 0.1, 0.2]}
USER_BPP = FULL_BPP["carphone"]  # a clip given by path: the carphone targets
QUICK_BPP = [0.25, 0.5]  # --quick (8 frames): above the smallest reachable rate of both clips
#: Learning rates: each codec gets its own best of ``LR_GRID`` on each clip, from a screen at equal
#: size and ``SCREEN_EPOCHS`` epochs (``lr_screen``, run before the RD points; ``lr_screen.json``).
#: The official recipe's 1e-3 is tuned for 300 epochs; at the 20-40 epochs a CPU affords both codecs
#: gain several dB from larger steps, and the best step differs per codec and per clip.
LR_GRID = (0.004, 0.01, 0.015, 0.025, 0.04, 0.06)
SCREEN_EPOCHS = 20
SCREEN_PARAMS = {"carphone": 36773, "bunny": 63801}  # the second-smallest RD point of each clip
USER_SCREEN_BPP = 0.1  # a clip given by path: both codecs screened at this target_bpp (about equal size)


# ----------------------------------------------------------------------------------- data
def load_clip(name: str, quick: bool) -> np.ndarray:
    """A built-in clip (``carphone``, ``bunny``) or any video file PyAV reads, as ``T,H,W,3`` uint8
    (``quick``: the first 8 frames)."""
    from neurocodec import datasets

    if name not in BUILTIN + GPU_CLIPS:
        from neurocodec.io import read_video

        return np.ascontiguousarray(read_video(name, max_frames=8 if quick else None))
    if name == "carphone":
        clip = datasets.load("carphone")  # 120 x 144 x 176
    elif name == "bunny":
        from PIL import Image

        src = datasets.load("bunny")  # 132 x 720 x 1280 -> 180 x 320 (area resampling)
        clip = np.stack([np.asarray(Image.fromarray(f).resize((320, 180), Image.Resampling.BOX)) for f in src])
    elif name == "bunny1280":
        clip = datasets.load("bunny")[:, 40:680]  # 132 x 720 x 1280 -> the paper's centre crop, 640 x 1280
    return np.ascontiguousarray(clip[:8] if quick else clip)


# --------------------------------------------------------------------------------- worker
def worker(spec: dict) -> dict:
    """One RD point: encode, decode, measure. Runs in a child process."""
    import resource

    if spec["codec"] in ("hnerv", "nerv"):  # classical workers do not load torch (memory is measured)
        import torch

        torch.set_num_threads(1)
    import neurocodec
    from neurocodec import metrics

    clip = np.load(spec["clip"])
    t0 = time.perf_counter()
    encoded = neurocodec.encode_with_report(clip, codec=spec["codec"], **spec["params"])
    enc = time.perf_counter() - t0
    blob = encoded.blob
    t0 = time.perf_counter()
    rec = neurocodec.decode(blob, **spec.get("decode", {}))
    dec = time.perf_counter() - t0
    from neurocodec.container import unpack

    header = unpack(blob).header
    out = {
        "bpp": metrics.bpp(len(blob), clip.shape),
        "bytes": len(blob),
        "psnr-rgb": metrics.video_psnr(clip, rec),
        "ms-ssim-rgb": metrics.ms_ssim(clip, rec),
        "encoding_time": enc,
        "decoding_time": dec,
        "decode_fps": clip.shape[0] / dec,
        "params": spec["params"],
        # the neural codecs' fit report (model size, epochs, lr used, seconds): returned by the encode
        # (files of codec version 1 carried it in the header); the loss curve is left out
        "fit": ({k: v for k, v in encoded.report.items() if k != "history"} if encoded.report
                else header.get("fit")),
        # this process's peak, or that of a child it ran (ffmpeg), whichever is larger
        "vmhwm_mb": max(_vmhwm_mb() or 0.0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0) or None,
    }
    return out


def _vmhwm_mb() -> float | None:
    """Peak resident memory of this process since exec (``VmHWM``): unlike ``ru_maxrss``, it does
    not include the parent's memory copied at fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_point(spec: dict, cache: Path) -> dict | None:
    key = spec["codec"] + "_" + "_".join(f"{k}{v}" for k, v in sorted(spec["params"].items()) if k != "checkpoint")
    path = cache / f"{key}.json"
    if path.exists():
        res = json.loads(path.read_text())
        if res.get("vmhwm_mb") is not None:
            res["peak_memory_mb"] = res["vmhwm_mb"]
        return res
    t0 = time.time()
    # cwd = the folder holding this neurocodec package, so `-m` finds this very copy of it first
    # (an installed wheel or the checkout), whatever the caller's working directory holds
    import neurocodec

    proc = subprocess.Popen([sys.executable, "-m", _WORKER_MODULE, "--worker", json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=None, cwd=Path(neurocodec.__file__).resolve().parent.parent,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        print(f"!! worker failed for {spec['codec']} {spec['params']} (status {status}); point skipped", flush=True)
        return None
    res = json.loads(out.decode().strip().splitlines()[-1])
    # VmHWM of the worker where Linux reports it; wait4's maxrss counts the parent's pages at fork
    res["peak_memory_mb"] = res["vmhwm_mb"] if res.get("vmhwm_mb") is not None else usage.ru_maxrss / 1024.0
    res["wall_s"] = time.time() - t0
    path.write_text(json.dumps(res))
    return res


# ---------------------------------------------------------------------------------- report
KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "decode_fps", "peak_memory_mb")


def save(dataset: str, codec: str, points: list[dict], description: str, quick: bool, out_dir: Path | None,
         extra: dict | None = None) -> None:
    from neurocodec.bench.results import write_results

    pts = sorted(points, key=lambda p: p["bpp"])
    results = {k: [p[k] for p in pts] for k in KEYS}
    ex = {"points": [{"params": p["params"], "bytes": p["bytes"], "fit": p.get("fit")} for p in pts]}
    ex.update(extra or {})
    write_results("video", dataset, codec, results, description=description, quick=quick, extra=ex, out_dir=out_dir)


def bd_table(curves: dict[str, list[dict]]) -> dict:
    import warnings

    from neurocodec.metrics import bd_psnr, bd_rate

    out: dict = {}
    h = curves.get("hnerv", [])
    if len(h) < 4:
        return out
    hb, hp, hs = ([p[k] for p in sorted(h, key=lambda p: p["bpp"])] for k in ("bpp", "psnr-rgb", "ms-ssim-rgb"))
    for name, pts in curves.items():
        if name == "hnerv" or len(pts) < 4:
            continue
        pts = _overlapping_window(sorted(pts, key=lambda p: p["bpp"]), hp)
        ab, ap, as_ = ([p[k] for p in pts] for k in ("bpp", "psnr-rgb", "ms-ssim-rgb"))
        row = {"anchor_points": [p["params"].get("crf") for p in pts]}
        for label, fn, a_d, h_d in (("bd_rate_psnr_%", bd_rate, ap, hp), ("bd_psnr_db", bd_psnr, ap, hp),
                                     ("bd_rate_msssim_%", bd_rate, as_, hs)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # little overlap: the value is an extrapolation
                    row[label] = round(fn(ab, a_d, hb, h_d), 3)
            except Exception as exc:  # curves that do not overlap have no BD value
                row[label] = f"n/a ({type(exc).__name__})"
        out[f"hnerv_vs_{name}"] = row
    return out


def _overlapping_window(pts: list[dict], test_psnr: list[float]) -> list[dict]:
    """The run of consecutive anchor points, as many as the test curve has (the BD library wants
    equal counts), whose PSNR interval overlaps the test curve's the most."""
    n = len(test_psnr)
    if len(pts) <= n:
        return pts
    lo, hi = min(test_psnr), max(test_psnr)

    def overlap(win: list[dict]) -> float:
        a = [p["psnr-rgb"] for p in win]
        return min(hi, max(a)) - max(lo, min(a))

    return max((pts[i : i + n] for i in range(len(pts) - n + 1)), key=overlap)


def plot(dataset: str, curves: dict[str, list[dict]], path: Path) -> None:
    """PSNR and MS-SSIM against bpp, drawn the way every committed figure is (bench.plot)."""
    from ..plot import rd_figure, save_figure

    keys = ("bpp", "psnr-rgb", "psnr-yuv", "ms-ssim-rgb")
    docs = {name: {"results": {k: [p.get(k) for p in pts] for k in keys if all(k in p for p in pts)}}
            for name, pts in curves.items() if pts}
    ys = [y for y in keys[1:] if any(y in d["results"] for d in docs.values())]
    save_figure(rd_figure([(docs, "bpp", y, None) for y in ys], title=f"video: {dataset}"), path, dpi=100)


# ------------------------------------------------------------------------------ throughput
#: the throughput run: HNeRV at this many values (carphone's 0.1 bpp point), each way, and NeRV at
#: the same size; equal epochs
THROUGHPUT_VALUES = 36773
THROUGHPUT_EPOCHS = 30


def throughput(source: str, args: argparse.Namespace) -> dict:
    """Training throughput at equal model and epochs, in this process at one torch thread: HNeRV
    through the encoder every step (``encoder_share=1``), HNeRV with its latent phase (the default)
    and NeRV at the same size. Reports epochs per CPU-minute (``time.process_time``) and per
    wall-minute, and PSNR against seconds per epoch (the PSNR-against-wall-clock curve); writes
    ``throughput.json`` and ``psnr_vs_time.png`` beside the dataset's results."""
    import torch

    from neurocodec.bench.results import default_results_dir, environment
    from neurocodec.codecs.hnerv.codec import plan
    from neurocodec.codecs.hnerv.model import model_values
    from neurocodec.codecs.hnerv.train import FitConfig, fit

    dataset = clip_label(source)
    clip = load_clip(source, args.quick)
    epochs = 2 if args.quick else (args.epochs or THROUGHPUT_EPOCHS)
    size = 4000 if args.quick else THROUGHPUT_VALUES
    runs = {"hnerv (encoder every step)": ("hnerv", 1.0), "hnerv (latent phase, default)": ("hnerv", None),
            "nerv": ("nerv", None)}
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # this process's own setting: the library never changes it for good
    rows = {}
    try:
        for label, (kind, share) in runs.items():
            arch = plan(kind, clip.shape, target_params=size, **({"reduce": 2.0} if kind == "nerv" else {}))
            cfg = FitConfig(epochs=epochs, prune=0.0, device="cpu", seed=0,
                            **({"encoder_share": share} if share is not None else {}))
            c0, w0 = time.process_time(), time.monotonic()
            res = fit(clip, arch, cfg)
            cpu, wall = time.process_time() - c0, time.monotonic() - w0
            seconds = np.cumsum([h[3] for h in res.history])
            rows[label] = {"codec": kind, "values": model_values(arch), "epochs": epochs,
                           "encoder_epochs": res.encoder_epochs if kind == "hnerv" else 0,
                           "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                           "epochs_per_cpu_min": round(60 * epochs / cpu, 2),
                           "epochs_per_wall_min": round(60 * epochs / wall, 2), "lr": res.lr,
                           "psnr_float": round(res.psnr_train, 3),
                           "curve": [[round(float(t), 2), round(10 * np.log10(1 / max(h[2], 1e-12)), 3)]
                                     for t, h in zip(seconds, res.history)]}
            r = rows[label]
            print(f"{label:32s} {r['values']} values: {r['epochs_per_cpu_min']:.1f} epochs/CPU-min "
                  f"({r['epochs_per_wall_min']:.1f}/wall-min), {r['psnr_float']:.2f} dB after {epochs} epochs", flush=True)
    finally:
        torch.set_num_threads(old)
    base_key = "hnerv (encoder every step)"
    for r in rows.values():
        r["speed_vs_encoder_every_step"] = round(r["epochs_per_cpu_min"] / rows[base_key]["epochs_per_cpu_min"], 3)
    doc = {"description": f"training throughput on {dataset} ({clip.shape[0]} frames {clip.shape[2]}x{clip.shape[1]}), "
                          f"equal model ({size} values) and epochs ({epochs}), no pruning, one torch thread, seed 0",
           "runs": rows, "quick": args.quick, "environment": environment()}
    out_dir = Path(args.out_dir) if args.out_dir else default_results_dir(args.quick)
    base = out_dir / "video" / dataset
    base.mkdir(parents=True, exist_ok=True)
    (base / "throughput.json").write_text(json.dumps(doc, indent=1))
    _plot_curves(dataset, rows, base / "psnr_vs_time.png")
    print(f"results: {base / 'throughput.json'}", flush=True)
    return doc


def _plot_curves(dataset: str, rows: dict[str, dict], path: Path) -> None:
    """Float PSNR of the fit against its training seconds, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in rows.items():
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(xs, ys, marker=".", label=f"{label}, {r['values']} values")
    ax.set_xlabel("training seconds (one CPU thread)")
    ax.set_ylabel("PSNR during training, dB")
    ax.set_title(f"{dataset}: PSNR against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=100)


# ---------------------------------------------------------------------------- rate control
#: rate-control cases: (label, clip, frames, height, width, target bpps); frames cropped or area
#: resampled; the first target of each is below both codecs' smallest reachable rate (refused)
RATE_CASES = [("carphone 8x64x64", "carphone", 8, 64, 64, (0.1, 1.5, 3.0)),
              ("carphone 30x144x176", "carphone", 30, 144, 176, (0.02, 0.15, 0.3)),
              ("bikes 250x136x320", "bikes", 250, 136, 320, (0.005, 0.03, 0.1)),
              ("bunny 64x360x640", "bunny", 64, 360, 640, (0.005, 0.03, 0.1))]
RATE_EPOCHS = 2


def _rate_clip(name: str, frames: int, height: int, width: int) -> np.ndarray:
    from PIL import Image

    from neurocodec import datasets

    src = datasets.load(name, max_frames=frames)
    if src.shape[1:3] == (height, width):
        return np.ascontiguousarray(src)
    if src.shape[1] >= height and src.shape[2] >= width and src.shape[1] < 2 * height:  # crop small sizes
        return np.ascontiguousarray(src[:, :height, :width])
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BOX)) for f in src])


def rate_control(args: argparse.Namespace) -> dict:
    """Where ``target_bpp`` lands for both neural codecs on clips of 8-250 frames and 64x64-640x360
    (``RATE_EPOCHS`` epochs each: the landing is the precision search on real files, which the
    training length barely moves), and what a target below the smallest reachable rate gives: a
    usage error before training. Writes ``rate_control.json`` (a side document)."""
    import neurocodec
    from neurocodec.bench.results import default_results_dir, environment
    from neurocodec.errors import UsageError

    cases = RATE_CASES[:1] if args.quick else RATE_CASES
    rows = []
    for label, name, frames, height, width, targets in cases:
        clip = _rate_clip(name, frames, height, width)
        for codec in ("hnerv", "nerv"):
            for bpp in targets:
                t0 = time.monotonic()
                row = {"clip": label, "codec": codec, "target_bpp": bpp}
                try:
                    r = neurocodec.encode_with_report(clip, codec, target_bpp=bpp, epochs=1 if args.quick else RATE_EPOCHS,
                                                      device="cpu", threads=1).report
                    row.update({"bpp": r["bpp"], "rate_error": r["rate_error"], "psnr": r["psnr"],
                                "bits": [r["weight_bits"], r["embed_bits"]], "model_values": r["model_values"]})
                except UsageError as exc:  # below the smallest reachable rate: refused before training
                    row["refused"] = str(exc)
                row["seconds"] = round(time.monotonic() - t0, 1)
                rows.append(row)
                print(f"{label:22s} {codec:5s} target {bpp:<5g} -> " +
                      (f"{row['bpp']:.4f} bpp ({100 * row['rate_error']:+.1f} %)" if "bpp" in row else "refused"),
                      flush=True)
    landed = [abs(r["rate_error"]) for r in rows if "rate_error" in r]
    doc = {"description": f"target_bpp against the file's bpp for hnerv and nerv, {RATE_EPOCHS} epochs per encode, "
                          "one torch thread; refused = a usage error naming the smallest reachable rate",
           "max_abs_rate_error": max(landed) if landed else None, "runs": rows, "quick": args.quick,
           "environment": environment()}
    out_dir = Path(args.out_dir) if args.out_dir else default_results_dir(args.quick)
    path = out_dir / "video" / "rate_control.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"largest |rate error| {doc['max_abs_rate_error']}; results: {path}", flush=True)
    return doc


# ------------------------------------------------------------------------------------ main
def clip_label(source: str) -> str:
    """The dataset name of a clip: a built-in name as it is, a file by its name without suffix."""
    return source if source in BUILTIN + GPU_CLIPS else Path(source).stem


def _cache_key(source: str) -> str:
    """The cache folder of a clip: a file's name plus a digest of its bytes, so two clips with one
    name (or an edited clip) never share cached RD points."""
    if source in BUILTIN + GPU_CLIPS:
        return source
    import hashlib

    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(source).stem}-{digest.hexdigest()[:12]}"


def bench_dataset(source: str, args: argparse.Namespace) -> dict:
    """Every requested codec on one clip (a built-in name or a video file)."""
    from neurocodec.bench.results import default_results_dir

    dataset = clip_label(source)
    clip = load_clip(source, args.quick)
    cache = Path(args.cache) / ("quick" if args.quick else "full") / _cache_key(source)
    cache.mkdir(parents=True, exist_ok=True)
    clip_path = cache / "clip.npy"
    np.save(clip_path, clip)
    # quick (CI) results go to the quick results folder, never over the committed full results
    out_dir = Path(args.out_dir) if args.out_dir else default_results_dir(args.quick)
    base = out_dir / "video" / dataset
    curves: dict[str, list[dict]] = {}
    T, H, W = clip.shape[:3]
    print(f"== {dataset}: {T} frames {W}x{H}", flush=True)
    if args.screen:
        lr_screen(source, clip_path, cache, args, base)
        return {}

    for name in [c for c in ("x264", "x265", "svtav1") if c in args.codecs]:
        cfg = CLASSICAL[name]
        crfs = cfg["crf"][1:3] if args.quick else cfg["crf"]
        pts = [run_point({"codec": name, "clip": str(clip_path), "params": {"crf": c, "preset": cfg["preset"]}}, cache)
               for c in crfs]
        curves[name] = [p for p in pts if p is not None]
        save(dataset, name, curves[name], f"{name} preset {cfg['preset']}, crf {crfs}, YUV 4:2:0, raw elementary stream in .ncx",
             args.quick, out_dir)
        _print(name, curves[name])

    epochs = args.epochs or (10 if args.quick else 40)
    # 8 quick frames cannot hold the full targets (the smallest HNeRV file is about 0.14 bpp there)
    bpps = args.bpp or (QUICK_BPP if args.quick else FULL_BPP.get(source, USER_BPP))
    neural = [c for c in ("hnerv", "nerv") if c in args.codecs]
    lr = lr_screen(source, clip_path, cache, args, base) if neural and args.lr == "screen" else {}
    extra = _codec_sets(args.set)
    curves.update({c: [] for c in neural})
    pairs = []
    for bpp in bpps:
        common = {"epochs": epochs, "seed": 0, "device": args.device}
        h = None
        if "hnerv" in neural:
            h = run_point({"codec": "hnerv", "clip": str(clip_path),
                           "params": {**common, "target_bpp": bpp, **_lr(lr, "hnerv"), **extra["hnerv"]},
                           "decode": {"device": args.device}}, cache)
            if h is None:
                continue
            curves["hnerv"].append(h)
            save(dataset, "hnerv", curves["hnerv"], _desc("hnerv", epochs, T, lr, extra), args.quick, out_dir)
        if "nerv" in neural:
            params = {**common, **_lr(lr, "nerv"), **extra["nerv"]}
            # equal size and the HNeRV point's weight depth (its quantization-aware fine-tune too)
            params.update({"target_params": h["fit"]["model_values"], "weight_bits": h["fit"]["weight_bits"]}
                          if h else {"target_bpp": bpp})
            n = run_point({"codec": "nerv", "clip": str(clip_path), "params": params, "decode": {"device": args.device}},
                          cache)
            if n is None:
                continue
            curves["nerv"].append(n)
            save(dataset, "nerv", curves["nerv"], _desc("nerv", epochs, T, lr, extra), args.quick, out_dir)
            if h:
                pairs.append({"target_bpp": bpp, "epochs": epochs,
                              "hnerv_values": h["fit"]["model_values"], "nerv_values": n["fit"]["model_values"],
                              "hnerv_psnr": h["psnr-rgb"], "nerv_psnr": n["psnr-rgb"],
                              "delta_db": h["psnr-rgb"] - n["psnr-rgb"],
                              "hnerv_fit_s": h["fit"]["seconds"], "nerv_fit_s": n["fit"]["seconds"]})
        for c in neural:
            _print(c, curves[c][-1:])

    summary = {"dataset": dataset, "frames": T, "size": [W, H], "epochs": epochs, "quick": args.quick,
               "equal_size_equal_epochs": pairs, "bd": bd_table(curves)}
    if pairs:
        summary["hnerv_minus_nerv_db_mean"] = float(np.mean([p["delta_db"] for p in pairs]))
    if "hnerv" in curves and curves["hnerv"]:
        save(dataset, "hnerv", curves["hnerv"], _desc("hnerv", epochs, T, lr, extra), args.quick, out_dir,
             extra={"bd": summary["bd"], "vs_nerv": pairs})
    # the summary lives in hnerv.json's "extra" and in table.md: every *.json here is a results document
    base.mkdir(parents=True, exist_ok=True)
    plot(dataset, curves, base / "rd.png")
    (base / "table.md").write_text(markdown_table(dataset, curves, summary))
    print(json.dumps({k: summary[k] for k in ("bd", "equal_size_equal_epochs")}, indent=1), flush=True)
    print(f"results: {base}", flush=True)
    return summary


def lr_rows(codec: str, params: dict, lrs: tuple[float, ...], clip_path: Path, cache: Path) -> list[dict]:
    """``codec`` fitted at each of ``lrs`` (everything else ``params``): one row per finished point,
    with ``lr_used`` = the step the divergence guard ended at."""
    rows = []
    for lr in lrs:
        r = run_point({"codec": codec, "clip": str(clip_path), "params": {**params, "lr": lr}, "decode": {"device": "cpu"}},
                      cache)
        if r is None:
            continue
        rows.append({"codec": codec, "lr": lr, "lr_used": r["fit"]["lr"], "values": r["fit"]["model_values"],
                     "psnr-rgb": r["psnr-rgb"], "ms-ssim-rgb": r["ms-ssim-rgb"], "bpp": r["bpp"],
                     "fit_s": r["fit"]["seconds"]})
        print(f"screen {codec:6s} lr {lr:<6g} values {r['fit']['model_values']}  psnr {r['psnr-rgb']:.2f}", flush=True)
    return rows


def lr_screen(source: str, clip_path: Path, cache: Path, args: argparse.Namespace, out_base: Path) -> dict[str, float]:
    """Each neural codec at every ``LR_GRID`` step, equal size (``SCREEN_PARAMS``; a clip given by
    path: ``USER_SCREEN_BPP``) and epochs: returns each codec's best lr and writes
    ``lr_screen.json`` beside the dataset's results."""
    from neurocodec.bench.results import environment

    dataset = clip_label(source)
    size = ({"target_params": SCREEN_PARAMS[source]} if source in SCREEN_PARAMS
            else {"target_bpp": USER_SCREEN_BPP})
    grid = LR_GRID[:2] if args.quick else LR_GRID
    epochs = 2 if args.quick else SCREEN_EPOCHS
    runs, best = [], {}
    for codec in [c for c in ("hnerv", "nerv") if c in args.codecs]:
        params = {"epochs": epochs, "seed": 0, "device": "cpu", **size}
        mine = lr_rows(codec, params, grid, clip_path, cache)
        runs += mine
        if mine:
            best[codec] = max(mine, key=lambda r: r["psnr-rgb"])["lr"]
    size_text = " ".join(f"{k} {v}" for k, v in size.items())
    doc = {"description": f"learning-rate screen: {dataset}, {epochs} epochs, {size_text}, "
                          "seed 0, one torch thread; the RD points use each codec's best lr",
           "best_lr": best, "runs": runs, "quick": args.quick, "environment": environment()}
    out_base.mkdir(parents=True, exist_ok=True)
    (out_base / "lr_screen.json").write_text(json.dumps(doc, indent=1))
    print(f"best lr {best}", flush=True)
    return best


def markdown_table(dataset: str, curves: dict[str, list[dict]], summary: dict) -> str:
    """The numbers of one dataset as Markdown (RD points, HNeRV vs NeRV, BD-rates)."""
    lines = [f"### {dataset} ({summary['frames']} frames, {summary['size'][0]}x{summary['size'][1]})", "",
             "| codec | setting | bpp | PSNR-RGB dB | MS-SSIM-RGB | encode s | decode fps | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, pts in curves.items():
        for p in sorted(pts, key=lambda p: p["bpp"]):
            prm = p["params"]
            setting = (f"crf {prm['crf']}" if "crf" in prm else
                       f"{p['fit']['model_values']} values, {p['fit']['epochs']}+{p['fit']['finetune_epochs']} ep")
            lines.append(f"| {name} | {setting} | {p['bpp']:.4f} | {p['psnr-rgb']:.2f} | {p['ms-ssim-rgb']:.4f} | "
                         f"{p['encoding_time']:.1f} | {p['decode_fps']:.0f} | {p['peak_memory_mb']:.0f} |")
    if summary.get("equal_size_equal_epochs"):
        lines += ["", "HNeRV vs NeRV at equal size (values = decoder parameters + embeddings) and equal epochs:", "",
                  "| HNeRV values | NeRV values | epochs | HNeRV dB | NeRV dB | delta dB | HNeRV fit s | NeRV fit s |",
                  "|---|---|---|---|---|---|---|---|"]
        for q in summary["equal_size_equal_epochs"]:
            lines.append(f"| {q['hnerv_values']} | {q['nerv_values']} | {q['epochs']} | {q['hnerv_psnr']:.2f} | "
                         f"{q['nerv_psnr']:.2f} | {q['delta_db']:+.2f} | {q['hnerv_fit_s']:.0f} | {q['nerv_fit_s']:.0f} |")
    if summary.get("bd"):
        lines += ["", "BD of HNeRV against each anchor (negative rate = HNeRV needs fewer bits):", "",
                  "| anchor | BD-rate (PSNR) % | BD-PSNR dB | BD-rate (MS-SSIM) % |", "|---|---|---|---|"]
        for k, row in summary["bd"].items():
            crfs = [c for c in row["anchor_points"] if c is not None]
            label = k.split("_vs_")[1] + (f" (crf {crfs})" if crfs else "")
            lines.append(f"| {label} | {row['bd_rate_psnr_%']} | "
                         f"{row['bd_psnr_db']} | {row['bd_rate_msssim_%']} |")
    return "\n".join(lines) + "\n"


def _sci(x: float) -> str:
    """1e-3 -> "1e-3" (as the README writes learning rates)."""
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def _lr(lr: dict[str, float], codec: str) -> dict[str, float]:
    """The screened step of ``codec`` as a parameter, or nothing (the codec's own default)."""
    return {"lr": lr[codec]} if codec in lr else {}


def _codec_sets(items: list[str]) -> dict[str, dict]:
    """``--set hnerv.encoder_share=1`` items as per-codec parameters (values parsed as JSON when they can be)."""
    out: dict[str, dict] = {"hnerv": {}, "nerv": {}}
    for item in items:
        key, sep, value = item.partition("=")
        codec, dot, name = key.partition(".")
        if not sep or not dot or codec not in out or not name:
            raise InputError(f"--set wants CODEC.KEY=VALUE with CODEC hnerv or nerv, got {item!r}")
        try:
            out[codec][name] = json.loads(value)
        except json.JSONDecodeError:
            out[codec][name] = value
    return out


def _desc(codec: str, epochs: int, T: int, lr: dict[str, float], extra: dict[str, dict] | None = None) -> str:
    step = (f"Adam lr {_sci(lr[codec])} (best of the lr screen)" if codec in lr
            else "Adam at the codec's default lr (default_lr of the planned iterations and model size)")
    return (f"{codec}: {epochs} epochs (+10% pruned fine-tune) on CPU with 1 thread, {step}, warm-up + cosine, "
            "batch 2, 10% global pruning, quantization-aware fine-tune, precision search"
            + (", latent phase after 10% of the epochs" if codec == "hnerv" else "")
            + f"; {T} frames; bits = whole .ncx"
            + (f"; overrides {json.dumps(extra[codec], sort_keys=True)}" if extra and extra.get(codec) else ""))


def _print(name: str, pts: list[dict]) -> None:
    for p in sorted(pts, key=lambda p: p["bpp"]):
        print(f"{name:7s} bpp {p['bpp']:.4f}  psnr {p['psnr-rgb']:6.2f}  ms-ssim {p['ms-ssim-rgb']:.4f}  "
              f"enc {p['encoding_time']:7.1f}s  dec {p['decode_fps']:7.1f} fps  mem {p.get('peak_memory_mb', 0):6.0f} MB",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = parser("video", __doc__)
    ap.add_argument("--quick", action="store_true", help="8 frames, 10 epochs, 2 points per codec (CI)")
    ap.add_argument("--data", nargs="+", default=["all"],
                    help="carphone, bunny, all (= both) and/or video files (default: all)")
    ap.add_argument("--codecs", nargs="+", default=[",".join(CODECS)],
                    help="codecs (space- or comma-separated)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of every neural point")
    ap.add_argument("--cache", default=None,
                    help="point cache (default /tmp/neurocodec_video_bench; --quick: a fresh temporary folder)")
    ap.add_argument("--out-dir", "--out", dest="out_dir", default=None,
                    help="results root (default: see neurocodec.bench.results.default_results_dir)")
    ap.add_argument("--bpp", type=lambda t: [float(x) for x in t.split(",")], default=None, metavar="B1,B2,...",
                    help="HNeRV rate targets of the neural points (default: the clip's four)")
    ap.add_argument("--lr", choices=("default", "screen"), default="default",
                    help="neural points at each codec's default lr (default), or at the best of a per-clip screen")
    ap.add_argument("--set", action="append", default=[], metavar="CODEC.KEY=VALUE",
                    help="extra parameter of the hnerv or nerv points (ablations), e.g. hnerv.encoder_share=1")
    ap.add_argument("--screen", action="store_true",
                    help="only the learning-rate screen of hnerv and nerv (lr_screen.json), no RD points")
    ap.add_argument("--device", default="cpu", help="training and decoding device of the neural points "
                    "(cpu, cuda, cuda:N); the GPU recipe is benchmarks/video/gpu.sh")
    ap.add_argument("--throughput", action="store_true",
                    help="only the training-throughput run (epochs per CPU-minute, PSNR against time)")
    ap.add_argument("--rate", action="store_true",
                    help="only the rate-control check (target_bpp against the file, 8-250 frames, 64x64-640x360)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.rate:
        rate_control(args)
        return 0
    args.codecs = split_names(args.codecs)
    if set(args.codecs) - set(CODECS):
        ap.error(f"unknown codecs {sorted(set(args.codecs) - set(CODECS))}; known: {sorted(CODECS)}")
    sources: list[str] = []
    for item in args.data:  # not split at commas: a file name may hold one
        if item == "all":
            sources += BUILTIN
        elif item in BUILTIN + GPU_CLIPS:
            sources.append(item)
        elif Path(item).is_file():
            sources.append(str(Path(item).resolve()))
        elif Path(item).exists():
            raise InputError(f"video --data: {item} is not a file (give video files, or carphone, bunny, all)")
        else:
            ap.error(f"--data: '{item}' is neither carphone, bunny, all nor an existing video file")
    if args.cache is None:
        import tempfile

        args.cache = tempfile.mkdtemp(prefix="neurocodec_video_quick_") if args.quick else "/tmp/neurocodec_video_bench"
    args.cache = str(Path(args.cache).resolve())  # the workers run in another folder
    for source in dict.fromkeys(sources):
        if args.throughput:
            throughput(source, args)
        else:
            bench_dataset(source, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
