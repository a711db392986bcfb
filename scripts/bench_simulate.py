"""Benchmark: generating pendulum trajectories, hamgrad vs a per-trajectory solve_ivp loop.

The loop is the approach of the published HNN code (Greydanus et al. 2019,
``pendulum/data.py``: one ``scipy.integrate.solve_ivp`` call per trajectory, RK45,
rtol=1e-10); here it gets the same rtol and atol as hamgrad and a plain NumPy right-hand side
(the fastest form for it). Every row's error is measured against the exact (Jacobi elliptic)
solution of the same initial states, as max |error| over all samples divided by max |state|.

Usage: python scripts/bench_simulate.py [--n-traj 1000] [--steps 1000] [--dt 0.05]
       [--loop-subset N]   (time the loops on the first N trajectories and scale to n-traj)
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from scipy.integrate import solve_ivp

from simulators import Pendulum
from simulators.reference import integrate


def loop_solve(system: Pendulum, q0, p0, t, method, tol):
    """One solve_ivp per trajectory with a NumPy right-hand side (HNN-style)."""
    mgl, mll = system.m * system.g * system.l, system.m * system.l**2

    def rhs(_t, y):
        return np.array([y[1] / mll, -mgl * np.sin(y[0])])

    out = np.empty((len(q0), len(t), 2))
    for i in range(len(q0)):
        sol = solve_ivp(rhs, (0.0, t[-1]), [q0[i, 0], p0[i, 0]], method=method, t_eval=t,
                        rtol=tol, atol=tol)
        out[i] = sol.y.T
    return out[..., :1], out[..., 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-traj", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--dt", type=float, default=0.05)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--loop-subset", type=int, default=None,
                    help="time the per-trajectory loops on this many trajectories only")
    args = ap.parse_args()

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
    run(f"loop solve_ivp RK45 (HNN code), rtol=atol={tol:g}",
        lambda n: loop_solve(system, q0[:n], p0[:n], t, "RK45", tol), sub)
    run(f"loop solve_ivp DOP853, rtol=atol={tol:g}",
        lambda n: loop_solve(system, q0[:n], p0[:n], t, "DOP853", tol), sub)
    run(f"hamgrad batched DOP853, 1 call, rtol=atol={tol:g} (batch RMS)",
        lambda n: integrate(system, q0[:n], p0[:n], t, rtol=tol, atol=tol), args.n_traj)

    def blocks(n, size=32):
        parts = [integrate(system, q0[i:i + size], p0[i:i + size], t, rtol=tol, atol=tol,
                           per_component=True) for i in range(0, n, size)]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

    run(f"hamgrad batched DOP853, blocks of 32, rtol=atol={tol:g} per component", blocks,
        args.n_traj)
    run("hamgrad exact (Jacobi elliptic, what generate uses)",
        lambda n: system.exact_solution(q0[:n], p0[:n], t), args.n_traj)

    base = rows[0][3]
    print(f"# {args.n_traj} pendulum trajectories x {args.steps} steps (dt={args.dt}), "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'method':<72} {'timed n':>7} {'time [s]':>9} {'per n_traj [s]':>15} "
          f"{'speed-up':>9} {'max rel err':>12}")
    for label, n, sec, scaled, e in rows:
        print(f"{label:<72} {n:>7} {sec:>9.3f} {scaled:>15.3f} {base / scaled:>8.1f}x "
              f"{e:>12.2e}")


if __name__ == "__main__":
    main()
