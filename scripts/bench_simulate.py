"""Benchmark: dataset generation. Two suites, each measured side by side in one run.

``--suite pendulum`` (default): generating pendulum trajectories, hamgrad vs a per-trajectory
solve_ivp loop. The loop is the approach of the published HNN code (Greydanus et al. 2019,
``pendulum/data.py``: one ``scipy.integrate.solve_ivp`` call per trajectory, RK45,
rtol=1e-10); here it gets the same rtol and atol as hamgrad and a plain NumPy right-hand side
(the fastest form for it). Every row's error is measured against the exact (Jacobi elliptic)
solution of the same initial states, as max |error| over all samples divided by max |state|.

``--suite nbody``: whole `simulators.generate` calls for the n-body datasets of the README and
the CLI defaults, with the old reference (scipy DOP853, rtol = atol = 1e-12 per component,
blocks of 32: ``reference="dop853"``) against REBOUND IAS15 in one process (what the default
does for batches under `simulators.rebound_reference.PARALLEL_MIN_SAMPLES`), on the same seeds,
hence the same initial conditions. Energy errors are ``max_t |H(t) - H(0)| / |H(0)|`` per
trajectory from the stored energies, split by whether the trajectory had a close encounter
(IAS15's detection, the same trajectories for both rows). A second table times the IAS15
reference alone on 1 and 2 processes (the pool's start-up cost and what it saves).

Usage: python scripts/bench_simulate.py [--n-traj 1000] [--steps 1000] [--dt 0.05]
       [--loop-subset N]   (time the loops on the first N trajectories and scale to n-traj)
       python scripts/bench_simulate.py --suite nbody [--cases three-body,5-body,readme]
       [--scale 0.1]       (multiply every trajectory count, for a quick look)
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

from hamgrad.data import load_dataset
from simulators import CloseEncounterWarning, Pendulum, generate, get_system, integrate_ias15
from simulators.reference import integrate


def loop_solve(system: Pendulum, q0, p0, t, method, tol):
    """One solve_ivp per trajectory with a NumPy right-hand side (HNN-style)."""
    mgl, mll = system.m * system.g * system.l, system.m * system.l**2

    def rhs(_t, y):
        return np.array([y[1] / mll, -mgl * np.sin(y[0])])

    out = np.empty((len(q0), len(t), 2))
    for i in range(len(q0)):
        sol = solve_ivp(
            rhs, (0.0, t[-1]), [q0[i, 0], p0[i, 0]], method=method, t_eval=t, rtol=tol, atol=tol
        )
        out[i] = sol.y.T
    return out[..., :1], out[..., 1:]


#: The n-body cases: label -> (system, params, generate's sizes). "three-body" and "5-body"
#: are `hamgrad simulate` with its defaults; "readme" is the README's three-body example.
CLI_DEFAULTS = dict(n_train=200, n_val=50, n_test=50, n_steps=100, n_steps_test=None, dt=0.1)
NBODY_CASES = {
    "three-body": ("three-body", {}, CLI_DEFAULTS),
    "5-body": ("nbody", {"n": 5}, CLI_DEFAULTS),
    "readme": ("three-body", {}, {**CLI_DEFAULTS, "n_train": 800, "n_steps_test": 1000}),
}


def _energy_errors(path: Path) -> np.ndarray:
    """Per-trajectory ``max_t |H(t) - H(0)| / |H(0)|`` of every split, concatenated."""
    ds = load_dataset(path)
    errs = []
    for split in ds.splits.values():
        e = split.energy
        errs.append(np.max(np.abs(e - e[:, :1]) / np.abs(e[:, :1]), axis=1))
    return np.concatenate(errs)


def _encounters(path: Path, system) -> np.ndarray:
    """IAS15's close-encounter flags of the file's trajectories (from their stored first states)."""
    ds = load_dataset(path)
    flags = []
    for split in ds.splits.values():
        run = integrate_ias15(system, split.q[:, 0], split.p[:, 0], split.t, workers=None)
        flags.append(~np.isnan(run.encounter_time))
    return np.concatenate(flags)


def _fmt_err(x: np.ndarray) -> str:
    return f"{x.max():.2e}" if x.size else "-"


def nbody_suite(cases: list[str], scale: float, workdir: Path) -> None:
    rows = []
    for label in cases:
        name, params, sizes = NBODY_CASES[label]
        sizes = {
            **sizes,
            **{k: max(1, round(sizes[k] * scale)) for k in ("n_train", "n_val", "n_test")},
        }
        system = get_system(name, **params)
        n_traj = sizes["n_train"] + sizes["n_val"] + sizes["n_test"]
        variants = [
            ("scipy DOP853 (old default)", dict(reference="dop853")),
            ("REBOUND IAS15, 1 process", dict(workers=1)),
        ]
        base = None
        flags = None
        for vlabel, kw in variants:
            path = workdir / f"{label}-{len(rows)}.h5"
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CloseEncounterWarning)
                generate(system, path, seed=0, overwrite=True, **sizes, **kw)
            sec = time.perf_counter() - start
            base = sec if base is None else base
            if flags is None:
                flags = _encounters(path, system)
            errs = _energy_errors(path)
            rows.append(
                (
                    label,
                    n_traj,
                    vlabel,
                    sec,
                    base / sec,
                    int(flags.sum()),
                    _fmt_err(errs[~flags]),
                    _fmt_err(errs[flags]),
                )
            )
            path.unlink()
    print(
        f"# n-body generation, old DOP853 reference vs REBOUND IAS15, same seeds; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, torch threads {torch.get_num_threads()}"
    )
    print(
        "| case | trajectories | reference | time [s] | speed-up | close encounters | "
        "max rel energy error, no encounter | max rel energy error, encounters |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for label, n, vlabel, sec, speed, enc, e_ok, e_enc in rows:
        print(f"| {label} | {n} | {vlabel} | {sec:.2f} | {speed:.0f}x | {enc} | {e_ok} | {e_enc} |")


def pool_table(sizes: list[tuple[int, int]]) -> None:
    """The pool start-up cost behind PARALLEL_MIN_SAMPLES: the IAS15 reference on 1 and 2
    processes for batches of ``(n_traj, n_t)`` three-body trajectories."""
    system = get_system("three-body")
    n_max = max(n for n, _ in sizes)
    states = [system.sample_state(np.random.default_rng([0, 0, i])) for i in range(n_max)]
    q0 = np.stack([s[0] for s in states])
    p0 = np.stack([s[1] for s in states])
    print(
        "\n| IAS15 reference only (three-body) | samples n_traj x n_t | 1 process [s] | "
        "2 processes [s] |"
    )
    print("|---|---:|---:|---:|")
    for n, n_t in sizes:
        t = 0.1 * np.arange(n_t)
        secs = []
        for workers in (1, 2):
            start = time.perf_counter()
            integrate_ias15(system, q0[:n], p0[:n], t, workers=workers)
            secs.append(time.perf_counter() - start)
        print(f"| {n} trajectories x {n_t} samples | {n * n_t} | {secs[0]:.3f} | {secs[1]:.3f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("pendulum", "nbody"), default="pendulum")
    ap.add_argument("--n-traj", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--dt", type=float, default=0.05)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument(
        "--loop-subset",
        type=int,
        default=None,
        help="time the per-trajectory loops on this many trajectories only",
    )
    ap.add_argument(
        "--cases",
        default=",".join(NBODY_CASES),
        help="nbody suite: comma-separated subset of " + ", ".join(NBODY_CASES),
    )
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="nbody suite: multiply every trajectory count by this",
    )
    ap.add_argument(
        "--pool-sizes",
        default="2x11,32x11,32x101,300x101",
        help="nbody suite: batches N_TRAJxN_T for the 1-vs-2-process table",
    )
    args = ap.parse_args(argv)
    if args.suite == "nbody":
        torch.set_num_threads(1)
        cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = sorted(set(cases) - set(NBODY_CASES))
        if unknown:
            ap.error(f"unknown case(s) {unknown}; expected some of {sorted(NBODY_CASES)}")
        with tempfile.TemporaryDirectory() as tmp:
            nbody_suite(cases, args.scale, Path(tmp))
        pool_table(
            [
                tuple(int(v) for v in size.split("x"))
                for size in args.pool_sizes.split(",")  # type: ignore[misc]
                if size
            ]
        )
        return

    system = Pendulum(m=0.5, g=6.0, l=1.0)  # the HNN pendulum, H = 3(1 - cos q) + p²
    rng = [np.random.default_rng([0, 0, i]) for i in range(args.n_traj)]
    states = [system.sample_state(r) for r in rng]
    q0 = np.stack([s[0] for s in states])
    p0 = np.stack([s[1] for s in states])
    t = args.dt * np.arange(args.steps + 1)
    x_exact = np.concatenate(system.exact_solution(q0, p0, t), -1)

    def err(q, p, n):
        x = np.concatenate((q, p), -1)
        return np.abs(x - x_exact[:n]).max() / np.abs(x_exact[:n]).max()

    sub = args.loop_subset or args.n_traj
    rows = []

    def run(label, fn, n):
        start = time.perf_counter()
        q, p = fn(n)
        sec = time.perf_counter() - start
        rows.append((label, n, sec, sec * args.n_traj / n, err(q, p, n)))

    tol = args.tol
    run(
        f"loop solve_ivp RK45 (HNN code), rtol=atol={tol:g}",
        lambda n: loop_solve(system, q0[:n], p0[:n], t, "RK45", tol),
        sub,
    )
    run(
        f"loop solve_ivp DOP853, rtol=atol={tol:g}",
        lambda n: loop_solve(system, q0[:n], p0[:n], t, "DOP853", tol),
        sub,
    )
    run(
        f"hamgrad batched DOP853, 1 call, rtol=atol={tol:g} (batch RMS)",
        lambda n: integrate(system, q0[:n], p0[:n], t, rtol=tol, atol=tol),
        args.n_traj,
    )

    def blocks(n, size=32):
        parts = [
            integrate(
                system,
                q0[i : i + size],
                p0[i : i + size],
                t,
                rtol=tol,
                atol=tol,
                per_component=True,
            )
            for i in range(0, n, size)
        ]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

    run(
        f"hamgrad batched DOP853, blocks of 32, rtol=atol={tol:g} per component",
        blocks,
        args.n_traj,
    )
    run(
        "hamgrad exact (Jacobi elliptic, what generate uses)",
        lambda n: system.exact_solution(q0[:n], p0[:n], t),
        args.n_traj,
    )

    base = rows[0][3]
    print(
        f"# {args.n_traj} pendulum trajectories x {args.steps} steps (dt={args.dt}), "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"{'method':<72} {'timed n':>7} {'time [s]':>9} {'per n_traj [s]':>15} "
        f"{'speed-up':>9} {'max rel err':>12}"
    )
    for label, n, sec, scaled, e in rows:
        print(f"{label:<72} {n:>7} {sec:>9.3f} {scaled:>15.3f} {base / scaled:>8.1f}x {e:>12.2e}")


if __name__ == "__main__":
    main()
