"""Benchmark: training on datasets larger than memory (issue 12), two measurements in one run.

1. Peak resident memory (RSS) of ``hamgrad train`` for one epoch on a dataset of about
   ``--big-gib`` GiB, streamed with the default 256 MiB buffer. Measured by the kernel for the
   training process alone (``os.wait4``'s ``ru_maxrss``).
2. Epoch time of the streamed path against the in-memory path on a dataset that fits
   (``--fit-mib``): the same file and settings, ``--buffer-mib`` larger than the training split
   (read once, kept) against ``--stream-mib`` (read from the file every epoch, in blocks).
   Each is the mean of epochs 2..E (epoch 1 of the in-memory path also reads the file).

Data: harmonic oscillators, ``H = (|q|² + |p|²) / 2``, exact trajectories with random
amplitude and phase, written block by block with `hamgrad.data.DatasetWriter` (the writer
never holds the file in memory). The files go to ``--workdir`` and are deleted at the end
unless ``--keep``.

Usage: python scripts/bench_out_of_core.py [--big-gib 4] [--fit-mib 512] [--epochs 3]
       [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hamgrad.data import DatasetWriter

DOF, N_T, DT = 2, 101, 0.1
# One trajectory: q, p, dq_dt, dp_dt [N_T, DOF] and energy [N_T], float64.
TRAJ_BYTES = 8 * N_T * (4 * DOF + 1)
BLOCK = 8192  # trajectories generated and handed to the writer at a time
TRAIN = [
    "--model", "gradnet", "--hidden", "16", "--depth", "2", "--loss", "derivative",
    "--batch-size", "32768", "--threads", "1", "--quiet",
]  # fmt: skip


def oscillators(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` exact trajectories of unit harmonic oscillators: arrays ``[n, N_T, DOF]``."""
    t = DT * np.arange(N_T)
    amplitude = rng.uniform(0.2, 2.0, (n, 1, DOF))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, DOF)) + t[None, :, None]
    q, p = amplitude * np.cos(phase), -amplitude * np.sin(phase)
    energy = 0.5 * (q**2 + p**2).sum(-1)
    return {"q": q, "p": p, "dq_dt": p.copy(), "dp_dt": -q, "energy": energy}


def write(path: Path, n_train: int, n_val: int, n_test: int, seed: int) -> float:
    """Write the dataset; return its size in GiB."""
    rng = np.random.default_rng(seed)
    attrs = {"dof": DOF, "dt": DT, "system": "harmonic oscillators (bench_out_of_core)"}
    fields = ("q", "p", "dq_dt", "dp_dt", "energy")
    with DatasetWriter(path, attrs, overwrite=True) as writer:
        for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            blocks = (oscillators(rng, min(BLOCK, n - i)) for i in range(0, n, BLOCK))
            writer.write_split(name, DT * np.arange(N_T), n, fields, blocks)
    return path.stat().st_size / 2**30


def sizes(gib: float) -> tuple[int, int, int]:
    """Trajectories per split for a file of ``gib`` GiB: 90 % train, 5 % val, 5 % test."""
    n = int(gib * 2**30 / TRAJ_BYTES)
    return n - 2 * (n // 20), n // 20, n // 20


def train(data: Path, runs: Path, name: str, epochs: int, *extra: str) -> tuple[int, list]:
    """Run ``hamgrad train``; return its peak RSS (bytes) and its metrics rows."""
    args = [sys.executable, "-m", "hamgrad", "train", "--data", str(data), *TRAIN]
    args += ["--runs-dir", str(runs), "--name", name, "--epochs", str(epochs), *extra]
    proc = subprocess.Popen(args)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"hamgrad train failed: {' '.join(args)}")
    rows = [json.loads(x) for x in (runs / name / "metrics.jsonl").read_text().splitlines()]
    return usage.ru_maxrss * 1024, rows  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-gib", type=float, default=4.0)
    ap.add_argument("--fit-mib", type=float, default=512.0)
    ap.add_argument("--stream-mib", type=float, default=64.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the dataset files")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ooc_", dir=args.workdir))
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f}, workdir {work}"
    )
    try:
        big, fit, runs = work / "big.h5", work / "fit.h5", work / "runs"
        started = time.perf_counter()
        big_gib = write(big, *sizes(args.big_gib), seed=1)
        print(f"# wrote {big} ({big_gib:.2f} GiB) in {time.perf_counter() - started:.0f} s")
        fit_gib = write(fit, *sizes(args.fit_mib / 1024), seed=2)
        # The in-memory run must hold its whole training split: a buffer above its size.
        resident = f"{2 * fit_gib * 1024:.0f}"
        rss_big, rows_big = train(big, runs, "big", 1)
        _, rows_mem = train(fit, runs, "memory", args.epochs, "--buffer-mib", resident)
        _, rows_str = train(fit, runs, "stream", args.epochs, "--buffer-mib", str(args.stream_mib))
    finally:
        if not args.keep:
            shutil.rmtree(work)
    print(f"# load after: {os.getloadavg()[0]:.1f}")
    print("\n| measurement | value |\n|---|---:|")
    print(f"| dataset (streamed, default buffer 256 MiB) | {big_gib:.2f} GiB |")
    print(f"| peak RSS of `hamgrad train`, 1 epoch | {rss_big / 2**30:.3f} GiB |")
    print(f"| that epoch's time | {rows_big[0]['time_s']:.0f} s |")
    mem = np.mean([r["time_s"] for r in rows_mem[1:]])
    stream = np.mean([r["time_s"] for r in rows_str[1:]])
    print(f"| dataset that fits | {fit_gib * 1024:.0f} MiB |")
    print(
        f"| epoch time in memory (`--buffer-mib {resident}`), epochs 2..{args.epochs} | "
        f"{mem:.2f} s |"
    )
    print(
        f"| epoch time streamed (`--buffer-mib {args.stream_mib:g}`), epochs 2..{args.epochs} "
        f"| {stream:.2f} s |"
    )
    print(f"| ratio streamed / in memory | {stream / mem:.2f} |")
    print(
        f"| first epochs (in memory, streamed) | {rows_mem[0]['time_s']:.2f} s, "
        f"{rows_str[0]['time_s']:.2f} s |"
    )
    print(
        f"| last train loss (in memory, streamed) | {rows_mem[-1]['train_loss']:.3e}, "
        f"{rows_str[-1]['train_loss']:.3e} |"
    )


if __name__ == "__main__":
    main()
