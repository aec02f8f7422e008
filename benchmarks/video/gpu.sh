#!/usr/bin/env bash
# The paper's setting on one GPU: HNeRV and NeRV fitted for 300 epochs to the 132 Big Buck Bunny frames at
# 1280x640 (the paper's centre crop), four rate points each (about its 0.35 / 0.75 / 1.5 / 3 M-parameter
# models), beside x264, x265 and SVT-AV1 on the same frames. Writes benchmarks/results/video/bunny1280/
# (RD JSON, table.md, rd.png). Not yet run: no GPU machine was lent to the sessions that wrote it.
#
#   bash benchmarks/video/gpu.sh              # on a machine with CUDA and this repo's venv (make venv)
#   EPOCHS=30 bash benchmarks/video/gpu.sh    # a shorter check
#
# Budget: meant to finish in under 9 minutes of training on one large GPU; every point runs in its own
# process and is cached in $CACHE, so an interrupted run resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-300}
CACHE=${CACHE:-/tmp/neurocodec_video_gpu}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device here')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$(date +%s)
"$PY" -m neurocodec.cli bench video --data bunny1280 --epochs "$EPOCHS" --device cuda --cache "$CACHE"
echo "gpu.sh: $(( $(date +%s) - start )) s in all"
