"""Adjoint against backprop: peak memory and time of a ``rollout:K`` training step against K.

Prints, for each K, the peak memory added by one training step (the library's `RolloutLoss`,
backward pass, Adam step) and its time, for plain backpropagation and for
``rollout(..., adjoint=True)``, measured side by side in one run, and the K at which backprop
needs more than a memory budget. Each (K, mode) runs in a fresh child process:

- memory: on CPU the growth of the peak resident set size over one step (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs``, minus ``VmRSS`` before the step), after a
  warm-up step at K = 10 that loads everything lazily loaded, with glibc told to map every
  block of 64 KiB or more on its own (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave
  the RSS instead of being recycled unseen; on CUDA
  ``torch.cuda.max_memory_allocated`` over the step, minus the memory allocated before it;
- time: the fastest of ``--repeats`` steps (after a warm-up step at K = 10), backprop and
  adjoint alternating in one child process so that other load on the machine hits both alike.

Two loss layouts: ``sparse`` (default) observes 10 states, one every K/10 steps (``rollout:10``
with K/10 substeps), so the saved states are a constant size and memory shows the integration
alone; ``every`` observes all K states (``rollout:K``), whose outputs and targets grow with K
in both modes.

Also: ``--agreement`` prints the relative gap between the adjoint's and backprop's gradients for
every method with an adjoint at K = 1000 (float64); ``--inversion`` prints how far states
recovered by inverting Yoshida-4 steps drift from the forward states (why the adjoint
recomputes instead).

Usage::

    python scripts/bench_adjoint.py [--steps 10 100 1000 10000] [--model gradnet]
        [--method gauss4] [--layout sparse|every] [--batch 256] [--budget-gib 2]
    python scripts/bench_adjoint.py --agreement
    python scripts/bench_adjoint.py --inversion
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import torch

from hamgrad.integrators import INTEGRATORS, rollout
from hamgrad.models import get_model
from hamgrad.training import RolloutLoss

MODES = ("backprop", "adjoint")
GIB = 1 << 30
MIB = 1 << 20


# ----------------------------------------------------------------------------- child process
def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _training_step(spec: dict[str, Any], mode: str, k: int):
    """A closure running one training step of the spec's model at K = ``k`` in ``mode``."""
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    g = torch.Generator().manual_seed(0)
    model = get_model(
        spec["model"],
        spec["dof"],
        generator=g,
        hidden=spec["hidden"],
        depth=spec["depth"],
        normalize=False,
    ).to(device=device, dtype=dtype)
    integrator = model.integrator(spec["method"], training=True)
    n_obs, substeps = (10, k // 10) if spec["layout"] == "sparse" else (k, 1)
    loss = RolloutLoss(
        n_obs, integrator, spec["dt"] * substeps, substeps, adjoint=mode == "adjoint"
    )
    shape = (spec["batch"], n_obs + 1, spec["dof"])
    batch = {x: 0.5 * torch.randn(shape, generator=g, dtype=dtype).to(device) for x in ("q", "p")}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(model, batch).backward()
        optimizer.step()

    return step


def _peak_memory(spec: dict[str, Any]) -> float:
    """Bytes of memory one training step of ``spec["mode"]`` adds at its peak."""
    cuda = spec["device"] == "cuda"
    _training_step(spec, spec["mode"], 10)()  # warm-up: lazy imports, Adam's code paths
    step = _training_step(spec, spec["mode"], spec["k"])
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _proc_status()["VmRSS"]
    step()
    return float(_proc_status()["VmHWM"] - before)


def _step_times(spec: dict[str, Any]) -> dict[str, float]:
    """Fastest of ``repeats`` steps per mode, the modes alternating (load hits both alike)."""
    for mode in spec["modes"]:
        _training_step(spec, mode, 10)()  # warm-up
    steps = {mode: _training_step(spec, mode, spec["k"]) for mode in spec["modes"]}
    best = dict.fromkeys(steps, math.inf)
    for _ in range(spec["repeats"]):
        for mode, step in steps.items():
            start = time.perf_counter()
            step()
            if spec["device"] == "cuda":
                torch.cuda.synchronize()
            best[mode] = min(best[mode], time.perf_counter() - start)
    return best


def _child(spec: dict[str, Any]) -> Any:
    torch.set_num_threads(spec["threads"])
    return _peak_memory(spec) if spec["task"] == "memory" else _step_times(spec)


def _measure(spec: dict[str, Any]) -> Any:
    # A fixed mmap threshold makes glibc map every allocation of 64 KiB or more on its own and
    # unmap it when freed (its default raises the threshold as big blocks are freed, then
    # recycles them from the heap): the RSS then follows the live tensors, warm-up included.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- memory and time
def _budget_crossing(points: list[tuple[int, float]], budget: float) -> str:
    """Where backprop's measured memory crosses ``budget`` (interpolated between measurements,
    or extrapolated linearly from the last two, and said so)."""
    for (k0, m0), (k1, m1) in itertools.pairwise(points):
        if m0 <= budget < m1:
            k = k0 + (budget - m0) * (k1 - k0) / (m1 - m0)
            return f"K ≈ {k:.0f} (interpolated between measured K = {k0} and {k1})"
    if len(points) >= 2 and points[-1][1] < budget:
        (k0, m0), (k1, m1) = points[-2:]
        k = k1 + (budget - m1) * (k1 - k0) / (m1 - m0)
        return f"K ≈ {k:.0f} (extrapolated linearly from K = {k0} and {k1}; not measured)"
    return "not reached" if points else "not measured"


def _cell(
    row: dict[str, dict[str, float]], mode: str, key: str, scale: float, width: int, fmt: str
) -> str:
    return f"{row[mode][key] / scale:>{width}{fmt}}" if mode in row else f"{'skipped':>{width}}"


def memory_and_time(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = {
        "model": args.model,
        "method": args.method,
        "dof": args.dof,
        "hidden": args.hidden,
        "depth": args.depth,
        "batch": args.batch,
        "dt": args.dt,
        "dtype": args.dtype,
        "layout": args.layout,
        "threads": args.threads,
        "repeats": args.repeats,
        "device": device,
    }
    memory_kind = "CUDA max_memory_allocated" if device == "cuda" else "peak RSS growth"
    print(
        f"{args.model} (hidden {args.hidden}, depth {args.depth}, dof {args.dof}) + "
        f"{args.method}, dt {args.dt}, batch {args.batch}, {args.dtype}, {device}, "
        f"{args.threads} thread(s), layout {args.layout}; memory: {memory_kind} of one "
        f"training step; time: best of {args.repeats} alternating steps"
    )
    print(
        f"{'K':>6}  {'backprop MiB':>12} {'adjoint MiB':>11}  {'backprop s':>10} "
        f"{'adjoint s':>9}  {'time adj/bp':>11}"
    )
    backprop_points: list[tuple[int, float]] = []
    results: dict[int, dict[str, dict[str, float]]] = {}
    for k in args.steps:
        modes = list(MODES)
        if len(backprop_points) >= 2:
            (k0, m0), (k1, m1) = backprop_points[-2:]
            if m1 + (k - k1) * (m1 - m0) / (k1 - k0) > args.max_backprop_gib * GIB:
                modes.remove("backprop")  # would not fit the machine: reported as skipped
        row = {
            mode: {"peak_bytes": _measure({**spec, "task": "memory", "mode": mode, "k": k})}
            for mode in modes
        }
        for mode, seconds in _measure({**spec, "task": "time", "modes": modes, "k": k}).items():
            row[mode]["step_s"] = seconds
        results[k] = row
        if "backprop" in row:
            backprop_points.append((k, row["backprop"]["peak_bytes"]))
        ratio = (
            f"{row['adjoint']['step_s'] / row['backprop']['step_s']:>11.2f}"
            if "backprop" in row
            else f"{'-':>11}"
        )
        print(
            f"{k:>6}  {_cell(row, 'backprop', 'peak_bytes', MIB, 12, '.1f')} "
            f"{_cell(row, 'adjoint', 'peak_bytes', MIB, 11, '.1f')}  "
            f"{_cell(row, 'backprop', 'step_s', 1, 10, '.3f')} "
            f"{_cell(row, 'adjoint', 'step_s', 1, 9, '.3f')}  "
            f"{ratio}",
            flush=True,
        )
    adjoint = {k: r["adjoint"]["peak_bytes"] for k, r in results.items() if k >= 100}
    if len(adjoint) >= 2:
        low = adjoint[min(adjoint)]
        spread = (max(adjoint.values()) - min(adjoint.values())) / low
        print(
            f"adjoint memory from K = {min(adjoint)} to {max(adjoint)}: "
            f"{min(adjoint.values()) / MIB:.1f} to {max(adjoint.values()) / MIB:.1f} MiB "
            f"(spread {spread:.0%} of the K = {min(adjoint)} value)"
        )
    budget = args.budget_gib * GIB
    print(
        f"backprop needs more than {args.budget_gib:g} GiB from "
        f"{_budget_crossing(backprop_points, budget)}"
    )


# ----------------------------------------------------------------------------- agreement
class _PendulumModule(torch.nn.Module):
    """``H = p²/2 + k(1 − cos q)`` with a trainable ``k``."""

    separable = True

    def __init__(self) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.3))

    def dH_dq(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.k * torch.sin(q)

    def dH_dp(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return p


def _gradient(field, q0, p0, k: int, method: str, adjoint: bool) -> torch.Tensor:
    q0, p0 = q0.clone().requires_grad_(), p0.clone().requires_grad_()
    traj = rollout(field, q0, p0, 0.05, k, method, save_every=10, adjoint=adjoint)
    weight = torch.linspace(0.5, 1.5, traj.q.shape[-2]).unsqueeze(-1)
    loss = (weight * (torch.sin(traj.q) + traj.p**2)).sum()
    grads = torch.autograd.grad(loss, [q0, p0, *field.parameters()])
    return torch.cat([g.flatten() for g in grads])


def agreement(args: argparse.Namespace) -> None:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(2)
    fields = {
        "pendulum (trainable k)": _PendulumModule(),
        "separable-gradnet": get_model(
            "separable-gradnet", 2, generator=g, hidden=16, depth=3, normalize=False
        ),
        "gradnet": get_model("gradnet", 2, generator=g, hidden=16, depth=3, normalize=False),
    }
    print(
        f"K = {args.agreement_steps}, dt = 0.05, float64, batch 3, loss on every 10th state: "
        "max |adjoint − backprop| / max |backprop| over the gradients of q0, p0, parameters"
    )
    print(f"{'method':<18} " + " ".join(f"{name:>22}" for name in fields))
    for name, method in INTEGRATORS.items():
        if not method.supports_adjoint:
            continue
        cells = []
        for field in fields.values():
            if not method.applies_to(field):
                cells.append(f"{'-':>22}")
                continue
            dof = 1 if isinstance(field, _PendulumModule) else 2
            q0, p0 = 0.6 * torch.randn(3, dof, generator=g), 0.6 * torch.randn(3, dof, generator=g)
            a = _gradient(field, q0, p0, args.agreement_steps, name, adjoint=False)
            b = _gradient(field, q0, p0, args.agreement_steps, name, adjoint=True)
            cells.append(f"{float((a - b).abs().max() / a.abs().max()):>22.1e}")
        print(f"{name:<18} " + " ".join(cells), flush=True)


# ----------------------------------------------------------------------------- inversion
def inversion(args: argparse.Namespace) -> None:
    """Invert Yoshida-4 steps substep by substep; worst relative error of a recovered state."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)

    class Pendulum:
        def dH_dq(self, q, p):
            return torch.sin(q)

        def dH_dp(self, q, p):
            return p

    class HenonHeiles:
        def dH_dq(self, q, p):
            x, y = q[..., 0], q[..., 1]
            return torch.stack([x + 2 * x * y, y + x**2 - y**2], dim=-1)

        def dH_dp(self, q, p):
            return p

    ops = [(kind == "K", c * 0.05) for kind, c in INTEGRATORS["yoshida4"].tableau.ops]

    def run(field, q, p, updates):
        for is_kick, alpha in updates:
            if is_kick:
                p = p - alpha * field.dH_dq(q, p)
            else:
                q = q + alpha * field.dH_dp(q, p)
        return q, p

    backward = [(is_kick, -alpha) for is_kick, alpha in reversed(ops)]
    model = get_model(
        "separable-gradnet",
        2,
        generator=torch.Generator().manual_seed(0),
        hidden=16,
        depth=3,
        normalize=False,
    )
    cases = [
        ("pendulum", Pendulum(), [[1.0]], [[0.5]]),
        ("Henon-Heiles, E = 0.156", HenonHeiles(), [[0.0, 0.1]], [[0.55, 0.0]]),
        ("untrained separable GradNet", model, [[0.3, -0.2]], [[0.1, 0.4]]),
    ]
    print(
        "Yoshida 4, dt = 0.05, float64: worst relative error of a state recovered by inverting "
        "each kick and drift"
    )
    with torch.no_grad():
        for label, field, q0, p0 in cases:
            for k in (1000, 10_000):
                q, p = torch.tensor(q0), torch.tensor(p0)
                states = [(q, p)]
                for _ in range(k):
                    q, p = run(field, q, p, ops)
                    states.append((q, p))
                worst = 0.0
                for i in range(k, 0, -1):
                    q, p = run(field, q, p, backward)
                    rq, rp = states[i - 1]
                    scale = max(float(rq.abs().max()), float(rp.abs().max()))
                    gap = max(float((q - rq).abs().max()), float((p - rp).abs().max()))
                    worst = max(worst, gap / scale)
                print(f"  {label:<30} K = {k:>6}: {worst:.1e}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[10, 30, 100, 300, 1000, 3000, 10_000]
    )
    parser.add_argument("--model", default="gradnet")
    parser.add_argument("--method", default="gauss4")
    parser.add_argument("--layout", choices=["sparse", "every"], default="sparse")
    parser.add_argument("--dof", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget-gib", type=float, default=2.0)
    parser.add_argument(
        "--max-backprop-gib",
        type=float,
        default=4.0,
        help="skip backprop where it is predicted to need more than this",
    )
    parser.add_argument("--agreement", action="store_true")
    parser.add_argument("--agreement-steps", type=int, default=1000)
    parser.add_argument("--inversion", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))))
    elif args.agreement:
        agreement(args)
    elif args.inversion:
        inversion(args)
    else:
        if args.layout == "sparse" and any(k % 10 for k in args.steps):
            parser.error("--layout sparse needs every K to be a multiple of 10")
        memory_and_time(args)


if __name__ == "__main__":
    main()
