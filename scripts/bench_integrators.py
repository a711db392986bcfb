"""Benchmark hamgrad's integrators on the pendulum against torchdiffeq's fixed-grid rk4.

Prints three tables:

1. Throughput: steps/s of every fixed-step method at batch 1, 1024 and 65536, and the time per
   force evaluation relative to torchdiffeq ``odeint(method="rk4")`` on a fixed grid, measured in
   the same run (ratio < 1: hamgrad is cheaper per force evaluation). A *force evaluation* is one
   call of ``dH_dq`` (counted, not assumed; torchdiffeq's rk4 makes 4 per step).
2. Per-step overhead at batch 1 (µs per step, µs per force evaluation).
3. Work–precision: error at t = 100 (max over 4 states of |Δq| + |Δp| against the exact
   Jacobi-elliptic solution) versus the number of force evaluations per trajectory.

Usage: ``python scripts/bench_integrators.py [--quick] [--steps N] [--large-steps N]
[--device cpu|cuda]`` (on cuda every timed call ends with ``torch.cuda.synchronize``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
import torchdiffeq
from torch import Tensor

from hamgrad.integrators import INTEGRATORS, get_integrator, rollout
from simulators import Pendulum as ExactPendulum


class Pendulum:
    """``H = p²/2 + k(1 − cos q)``, the field timed here (``k = 1``: `ExactPendulum` with
    ``m = g = l = 1``).

    Lighter than `simulators.Pendulum` (whose ``dH_dp`` divides by ``m l²``), so the tables
    measure the integrators' own cost per force evaluation; the same arithmetic as the field of
    the tables in BENCHMARKS.md, section 2.
    """

    separable = True

    def __init__(self, k: float = 1.0) -> None:
        self.k = k

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        return self.k * torch.sin(q)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p


class Counting(Pendulum):
    """Pendulum that counts calls of dH_dq (used only to count, never while timing)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def dH_dq(self, q, p):
        self.calls += 1
        return super().dH_dq(q, p)


def _evals_per_step(name: str, q0, p0, dt: float, n: int = 64) -> float:
    field = Counting()
    with torch.no_grad():
        rollout(field, q0, p0, dt, n, method=name, save_every=n)
    return field.calls / n


def _time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()  # the GPU's work, not only its launch
        best = min(best, time.perf_counter() - start)
    return best


def _torchdiffeq_rk4(y0: torch.Tensor, dt: float, n: int) -> None:
    def func(t, y):
        q, p = y.chunk(2, dim=-1)
        return torch.cat([p, -torch.sin(q)], dim=-1)

    t = torch.tensor([0.0, n * dt], dtype=y0.dtype, device=y0.device)
    grid = torch.arange(n + 1, dtype=y0.dtype, device=y0.device) * dt
    with torch.no_grad():
        torchdiffeq.odeint(func, y0, t, method="rk4", options={"grid_constructor": lambda *_: grid})


def throughput(
    batches: list[int], steps: dict[int, int], dt: float, device: str = "cpu"
) -> list[tuple]:
    field = Pendulum()
    gen = torch.Generator().manual_seed(0)
    rows = []
    names = [n for n, m in INTEGRATORS.items() if m.order is not None]
    for batch in batches:
        n = steps[batch]
        q0 = (torch.rand(batch, 1, generator=gen) * 2 - 1).to(device)
        p0 = (torch.rand(batch, 1, generator=gen) * 2 - 1).to(device)
        repeats = 3 if batch < 65536 else 1
        n_ref = max(1, n // 4)  # torchdiffeq rk4: 4 force evaluations per step
        _torchdiffeq_rk4(torch.cat([q0, p0], -1), dt, 10)  # warm-up
        y0 = torch.cat([q0, p0], -1)
        t_ref = _time(lambda y0=y0, n_ref=n_ref: _torchdiffeq_rk4(y0, dt, n_ref), repeats)
        ref_per_eval = t_ref / (4 * n_ref)
        rows.append((batch, "torchdiffeq rk4 (odeint)", n_ref / t_ref, 4.0, ref_per_eval, 1.0))
        for name in names:
            evals = _evals_per_step(name, q0[:1], p0[:1], dt)

            def run(name=name, n=n, q0=q0, p0=p0):
                with torch.no_grad():
                    rollout(field, q0, p0, dt, n, method=name, save_every=n)

            with torch.no_grad():
                rollout(field, q0, p0, dt, 5, method=name)  # warm-up
            t = _time(run, repeats)
            per_eval = t / (n * evals)
            rows.append((batch, name, n / t, evals, per_eval, per_eval / ref_per_eval))
    return rows


def work_precision(dts: list[float], t_end: float = 100.0, device: str = "cpu") -> list[tuple]:
    q0 = torch.tensor([[0.5], [1.0], [2.0], [2.8]])
    p0 = torch.tensor([[0.0], [0.5], [0.0], [0.1]])
    # Exact reference (Jacobi elliptic functions, simulators.Pendulum with m = g = l = 1 is this
    # H = p²/2 + (1 − cos q)): a numerical reference would floor the table at its own error.
    q_ref, p_ref = (
        torch.from_numpy(x[:, -1])
        for x in ExactPendulum(m=1.0, g=1.0, l=1.0).exact_solution(
            q0.numpy(), p0.numpy(), np.array([0.0, t_end])
        )
    )
    rows = []
    for name, method in INTEGRATORS.items():
        if method.order is None:
            tols = (1e-6, 1e-8, 1e-10, 1e-12)
            settings = [(get_integrator(name, rtol=tol, atol=tol), 1.0, tol) for tol in tols]
        else:
            settings = [(method, dt, None) for dt in dts]
        for integ, dt, tol in settings:
            counting = Counting()
            n = round(t_end / dt)
            try:
                with torch.no_grad():
                    traj = rollout(
                        counting, q0.to(device), p0.to(device), dt, n, method=integ, save_every=n
                    )
                err = float(
                    (
                        (traj.q[:, -1].cpu() - q_ref).abs() + (traj.p[:, -1].cpu() - p_ref).abs()
                    ).max()
                )
            except Exception as exc:  # a diverging setting is reported, not fatal
                err = float("nan")
                print(f"  {name} dt={dt}: {type(exc).__name__}: {exc}", file=sys.stderr)
            setting = f"rtol={tol:g}" if tol is not None else f"dt={dt:g}"
            # One dH_dq call evaluates the whole batch, i.e. one evaluation per trajectory.
            rows.append((name, setting, counting.calls, err))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 steps, small batches only")
    parser.add_argument("--steps", type=int, default=10_000, help="steps at batch 1 and 1024")
    parser.add_argument("--large-steps", type=int, default=1_000, help="steps at batch 65536")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: keep)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--work-precision-only", action="store_true", help="print only the work-precision table"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    if args.quick:
        batches, steps = [1, 1024], {1: 1000, 1024: 1000}
        dts = [0.1, 0.05]
    else:
        batches = [1, 1024, 65536]
        steps = {1: args.steps, 1024: args.steps, 65536: args.large_steps}
        dts = [0.2, 0.1, 0.05, 0.025]
    print(
        f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, "
        f"{torch.get_num_threads()} threads, float64, {args.device}; steps per batch: {steps}\n"
    )
    if not args.work_precision_only:
        rows = throughput(batches, steps, dt=0.01, device=args.device)
        print(
            "| batch | method | steps/s | force evals/step | µs per force eval "
            "| ratio vs torchdiffeq |"
        )
        print("|---:|---|---:|---:|---:|---:|")
        for batch, name, sps, evals, per_eval, ratio in rows:
            print(
                f"| {batch} | {name} | {sps:,.0f} | {evals:g} | {per_eval * 1e6:.2f} "
                f"| {ratio:.2f} |"
            )
        print("\nPer-step overhead at batch 1:\n")
        print("| method | µs per step | µs per force eval |")
        print("|---|---:|---:|")
        for batch, name, sps, _evals, per_eval, _ in rows:
            if batch == 1:
                print(f"| {name} | {1e6 / sps:.1f} | {per_eval * 1e6:.1f} |")
    print("\nWork-precision on the pendulum, t = 100 (4 states, error vs the exact solution):\n")
    print("| method | setting | force evals per trajectory | max error |")
    print("|---|---|---:|---:|")
    for name, setting, evals, err in work_precision(dts, device=args.device):
        print(f"| {name} | {setting} | {evals:,.0f} | {err:.2e} |")


if __name__ == "__main__":
    main()
