"""HNeRV fitting under torchrun: 2 CPU processes (gloo), DDP over frames, rank 0 writes the file.

Runs in ~15-20 s (two processes importing torch dominate)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

import neurocodec
from neurocodec import weights
from neurocodec.codecs.hnerv.train import CHECKPOINT_KIND
from neurocodec.container import unpack


def test_torchrun_two_cpu_processes(tmp_path):
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)  # 5 frames: shares of 3 and 2 (+1 wrapped)
    src, out, ckpt, stats = tmp_path / "clip.npy", tmp_path / "clip.ncx", tmp_path / "fit.ckpt", tmp_path / "s.json"
    np.save(src, clip)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "neurocodec.cli", "hnerv", "encode", str(src), "-o", str(out), "-q", "--stats", str(stats),
           "-p", "epochs=2", "-p", "width0=8", "-p", "device=cpu", "-p", f"checkpoint={ckpt}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blob = out.read_bytes()
    assert "fit" not in unpack(blob).header
    report = json.loads(stats.read_text())
    assert report["epochs"] == 2 and report["bytes"] == len(blob)
    dec = neurocodec.decode(blob, device="cpu")
    assert dec.shape == clip.shape and dec.dtype == np.uint8
    # rank 0 checkpointed, through the model-file layer
    assert weights.load(ckpt, kind=CHECKPOINT_KIND).config["phase"] == "done"

    # a bad parameter is reported by every rank, with a usage exit code
    bad = subprocess.run(cmd[:-2] + ["-p", "epochs=0"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "epochs" in bad.stderr
