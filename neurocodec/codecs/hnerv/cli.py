"""``neurocodec hnerv ...``: the video-INR wing's commands.

* ``neurocodec hnerv encode CLIP -o OUT.ncx [--codec hnerv|nerv] [--quality Q | --bpp B | --size S]
  [-p KEY=VALUE ...] [--stats S.json]``:
  fit a network to a clip and write the ``.ncx``; ``--stats`` writes the encoder's report (bytes,
  bpp, PSNR, epochs, lr, times, loss curve), which is not part of the file. Training resumes from
  ``-p checkpoint=PATH`` when that file exists.

This is also the distributed entry point: under ``torchrun`` (``WORLD_SIZE`` > 1) the command sets
up the process group (gloo on CPU, nccl on CUDA), every rank trains its share of the frames, rank 0
writes the file, and the group is torn down on the way out. That set-up is process-wide state, so it
lives here, at the entry point, and nowhere in the library::

    torchrun --nproc_per_node 2 -m neurocodec.cli hnerv encode clip.mp4 -o clip.ncx -p epochs=50

(``neurocodec encode -c hnerv`` encodes too, in one process.)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _encode(args: argparse.Namespace) -> int:
    from ... import io as nio
    from ...cli import encode_params, refuse_overwriting_input
    from ...codec import get_codec

    quiet = getattr(args, "quiet", False)
    codec = get_codec(args.codec)()
    params: dict[str, Any] = encode_params(codec, args)  # -p items + --quality/--bpp/--size, validated
    refuse_overwriting_input(args.input, args.output)
    frames = nio.read_any(args.input)
    if "fps" not in params and Path(args.input).suffix.lower() in nio.VIDEO_EXTENSIONS:
        params["fps"] = nio.video_fps(args.input)
    with _process_group(params.get("device", "auto")) as rank:
        encoded = codec.encode_with_report(frames, progress=not quiet and rank == 0, **params)
        if rank == 0:
            nio.write_bytes_atomic(args.output, encoded.blob)
            if args.stats:
                nio.write_bytes_atomic(args.stats, json.dumps(encoded.report, indent=2).encode())
            if not quiet:
                r = encoded.report
                print(f"wrote {args.output}: {len(encoded.blob)} bytes, {r['bpp']:.4f} bpp, PSNR {r['psnr']:.2f} dB "
                      f"after quantization ({r['psnr_float']:.2f} dB before), {r['params']} parameters + "
                      f"{r['embed_values']} embedding values, {r['epochs']}+{r['finetune_epochs']} epochs in "
                      f"{r['seconds']:.1f} s (lr {r['lr']:.3g}{' auto' if r.get('lr_auto') else ''}, "
                      f"{r.get('threads', 1)} thread(s))", file=sys.stderr)
                for restart in r.get("restarts", []):
                    print(f"restarted: {restart['why']} (lr was {restart['lr']:.3g})", file=sys.stderr)
                for warning in r.get("warnings", []):
                    print(f"warning: {warning}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _process_group(device: Any) -> Iterator[int]:
    """A torch.distributed group for the duration of the command when launched by torchrun
    (``WORLD_SIZE`` > 1), else nothing; yields this process's rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0
        return
    import torch
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if torch.cuda.is_available() and str(device) != "cpu" else "gloo")
    try:
        yield dist.get_rank()
    finally:
        if created:
            dist.destroy_process_group()


def add_commands(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``neurocodec hnerv ...`` to the main command line (``common``: --quiet/--debug)."""
    parents = [common] if common is not None else []
    hnerv = subparsers.add_parser("hnerv", parents=parents, help="video-as-a-network codecs (hnerv, nerv) tools",
                                  description="HNeRV / NeRV tools: fit a network to a clip (also under torchrun).")
    sub = hnerv.add_subparsers(dest="hnerv_command", metavar="SUBCOMMAND", parser_class=type(hnerv))
    p = sub.add_parser("encode", parents=parents, help="fit a clip and write .ncx (works under torchrun)",
                       description="Fit HNeRV or NeRV to a clip and write the .ncx; under torchrun every rank "
                                   "trains and rank 0 writes the file.")
    p.add_argument("input", help="video file, folder of frames or .npy array T,H,W,3 uint8")
    p.add_argument("-o", "--output", required=True, help="output .ncx")
    p.add_argument("--codec", default="hnerv", choices=["hnerv", "nerv"])
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="codec parameter (repeatable), e.g. epochs=50, quality=3, checkpoint=fit.ckpt")
    p.add_argument("--quality", type=int, help="quality preset 1..8 (a target bpp; see `neurocodec codecs hnerv`)")
    p.add_argument("--bpp", type=float, help="target bits per pixel of the whole file")
    p.add_argument("--size", help="target file size in bytes (20000, 20k, 1.5M)")
    p.add_argument("--stats", help="write the encoder's report as JSON here")
    p.set_defaults(func=_encode)
    hnerv.set_defaults(func=lambda args: (hnerv.print_help(sys.stderr), 2)[1])


def main(argv: list[str] | None = None) -> int:
    """``python -m neurocodec.codecs.hnerv.cli encode ...``: the wing's commands through the main
    command line (same error handling and exit codes)."""
    from ...cli import main as neurocodec_main

    return neurocodec_main(["hnerv", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
