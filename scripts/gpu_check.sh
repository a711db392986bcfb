#!/usr/bin/env bash
# GPU check for hamgrad (issue 12): run on a machine with an NVIDIA GPU and a CUDA build of
# torch 2.13.0, from the repository root or anywhere:
#
#     scripts/gpu_check.sh            # PYTHON=/path/to/python to use another interpreter
#
# Steps (each under its own time limit, 7.5 minutes in all at most):
#   1. the CUDA-marked tests (pytest -m cuda): training, checkpoints, rollouts on cuda;
#   2. a 1-GPU DDP training smoke run: torchrun --nproc-per-node 1 -m hamgrad train with NCCL
#      (process group, DistributedDataParallel on cuda:0), float64, compared with the same run
#      in one plain process (relative weight difference, expected below 1e-8);
#   3. the train-step benchmark on cuda (scripts/bench_train_step.py --sections cost --device cuda);
#   4. the rollout benchmark on cuda (scripts/bench_integrators.py --quick --device cuda).
# Prints one table at the end (and the benchmarks' own tables above it). Exits 1 if any step
# failed, and at once, loudly, when there is no CUDA device or torch is a CPU-only build.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d -t hamgrad_gpu_check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if ! "$PY" - <<'EOF'
import sys

import torch

if torch.version.cuda is None:
    sys.exit(f"gpu_check: FAILED: torch {torch.__version__} is a CPU-only build; install a CUDA "
             "build of torch 2.13.0 (https://pytorch.org/get-started/locally/)")
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: FAILED: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no "
             "CUDA device; run this on a machine with an NVIDIA GPU and its driver")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
EOF
then
    exit 1
fi

ROWS=()
FAILED=0

# step NAME LIMIT_SECONDS COMMAND...: run it with a time limit, record PASS/FAIL and seconds.
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "== $name"
    local start=$SECONDS status=PASS
    if ! timeout "$limit" "$@"; then
        status=FAIL
        FAILED=1
    fi
    ROWS+=("| $name | $status | $((SECONDS - start)) |")
}

step "CUDA tests (pytest -m cuda)" 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests

"$PY" -m hamgrad simulate pendulum --out "$WORK/p.h5" --n-train 32 --n-val 8 --n-test 2 \
    --steps 50 --quiet
# The smoke run: the same float64 training in a plain process and under torchrun (NCCL).
step "1-GPU DDP smoke run (torchrun, NCCL)" 120 "$PY" - "$WORK" <<'EOF'
import json
import subprocess
import sys
from pathlib import Path

from hamgrad.checkpoint import load_checkpoint

work = Path(sys.argv[1])
train = ["train", "--data", str(work / "p.h5"), "--runs-dir", str(work / "runs"), "--epochs",
         "3", "--hidden", "16", "--depth", "2", "--batch-size", "128", "--dtype", "float64",
         "--device", "cuda", "--quiet"]
subprocess.run([sys.executable, "-m", "hamgrad", *train, "--name", "plain"], check=True)
subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "1", "-m", "hamgrad", *train, "--name", "ddp",
                "--backend", "nccl"], check=True)
resolved = json.loads((work / "runs" / "ddp" / "config.json").read_text())["resolved"]
assert resolved["backend"] == "nccl" and resolved["device"] == "cuda:0", resolved
a = load_checkpoint(work / "runs" / "plain" / "last.pt")["model_state"]
b = load_checkpoint(work / "runs" / "ddp" / "last.pt")["model_state"]
worst = max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-300)) for k in a)
print(f"DDP (NCCL, 1 GPU) vs a plain process: max relative weight difference {worst:.2e}")
sys.exit(0 if worst < 1e-8 else f"gpu_check: the DDP run differs from the plain run ({worst:.2e})")
EOF

step "train-step benchmark (cuda, batch 256 and 4096)" 240 \
    "$PY" scripts/bench_train_step.py --sections cost --device cuda --work-dir "$WORK/bench"
step "rollout benchmark (cuda, --quick)" 150 \
    "$PY" scripts/bench_integrators.py --quick --device cuda

echo
echo "| step | result | seconds |"
echo "|---|---|---:|"
printf '%s\n' "${ROWS[@]}"
exit "$FAILED"
