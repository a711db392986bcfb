"""Benchmark: ``hamgrad simulate --workers 2`` against ``--workers 1`` (issue 12).

Times whole `simulators.generate` calls (sampling, reference trajectories, exact derivatives,
HDF5 write) of one system, the settings alternating ``--repeats`` times so that changes in the
machine's load hit every setting alike, and checks that every file has the same bytes. Rows:
``workers=1`` (one process), ``workers=2`` (chunks of whole blocks in two forked processes)
and the default ``workers=None`` (one process, except that REBOUND IAS15 forks one worker per
CPU for a large n-body split). Reports the best time of each, its speed-up over one process,
and the CPU time it used (this process and its workers): CPU time / wall time is how many
CPUs the run had on average, which on a shared machine bounds what a second process can gain.

Usage: python scripts/bench_simulate_workers.py [--system three-body] [--n-train 4000]
       [--n-val 500] [--n-test 500] [--steps 100] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path

import torch

from simulators import generate


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the workers)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", default="three-body")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # close-encounter reports: the same in every row
    settings = {"workers=1": 1, "workers=2": 2, "default (workers=None)": None}
    kw = dict(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, n_steps=args.steps)
    n = args.n_train + args.n_val + args.n_test
    print(
        f"# {args.system}, {n} trajectories x {args.steps + 1} samples; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    best = dict.fromkeys(settings, (float("inf"), 0.0))  # (wall s, CPU s) of the fastest
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for label, workers in settings.items():
                out = Path(work) / "out.h5"
                cpu, start = _cpu_seconds(), time.perf_counter()
                generate(args.system, out, dt=args.dt, workers=workers, overwrite=True, **kw)
                wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
                best[label] = min(best[label], (wall, cpu))
                files[label] = out.read_bytes()
    print(f"# load after: {os.getloadavg()[0]:.1f}; best of {args.repeats} per row")
    print("\n| setting | time [s] | speed-up vs 1 process | CPU s | CPUs busy on average |")
    print("|---|---:|---:|---:|---:|")
    for label, (wall, cpu) in best.items():
        speedup = best["workers=1"][0] / wall
        print(f"| {label} | {wall:.2f} | {speedup:.2f}x | {cpu:.1f} | {cpu / wall:.2f} |")
    same = len(set(files.values())) == 1
    print(f"\n# every setting wrote the same bytes: {same}")
    if not same:
        raise SystemExit("bench_simulate_workers: the files differ")


if __name__ == "__main__":
    main()
