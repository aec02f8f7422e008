"""HNeRV fitting under torchrun: 2 CPU processes (gloo), DDP over frames, rank 0 writes the file.

Runs in ~15-20 s (two processes importing torch dominate)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import neurocodec
from neurocodec.container import unpack


def test_torchrun_two_cpu_processes(tmp_path):
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)  # 5 frames: shares of 3 and 2 (+1 wrapped)
    src, out, ckpt = tmp_path / "clip.npy", tmp_path / "clip.ncx", tmp_path / "fit.ckpt"
    np.save(src, clip)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "neurocodec.codecs.hnerv.train", str(src), "-o", str(out), "--quiet",
           "--param", "epochs=2", "--param", "width0=8", "--param", "device=cpu", "--param", f"checkpoint={ckpt}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blob = out.read_bytes()
    header = unpack(blob).header
    assert header["fit"]["epochs"] == 2 and header["fit"]["bytes"] == len(blob)
    dec = neurocodec.decode(blob, device="cpu")
    assert dec.shape == clip.shape and dec.dtype == np.uint8
    assert ckpt.exists()  # rank 0 checkpointed

    # a bad parameter is reported once, with a usage exit code, by every rank
    bad = subprocess.run(cmd[:-2] + ["--param", "epochs=0"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "epochs" in bad.stderr
