"""Long-horizon energy behaviour: a separable GradNet with a symplectic method against a Neural ODE.

On the pendulum of the main suite (`bench_hamiltonian`), separable GradNet models rolled out
with their symplectic default (Yoshida 4) and NeuralODE models with RK4, step = the data
interval, float64, for the profile's ``steps`` steps (10^5 in the full run) from the first
states of test trajectories. Reports the max relative true-energy error over the first
hundredth, the first and the last tenth of the rollout, the last/first-tenth ratio (≈ 1:
bounded, ≫ 1: secular drift), and the least-squares drift slope.

The models are trained exactly as the main suite trains its pendulum rows (same dataset,
budget, configuration and seeds; the main suite's profile of the same name). Profiles:
``--smoke`` (seconds; the test), ``--quick`` (10^4 steps, one seed), default = the full run
(10^5 steps, 3 seeds). Usage::

    python scripts/bench_long_horizon.py --quick
    python scripts/bench_long_horizon.py --json /tmp/ham_bench/long.json

Measured tables and their reading: BENCHMARKS.md, section 5.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import _bench
import bench_hamiltonian as suite
import numpy as np
import torch

from hamgrad.data import load_dataset
from hamgrad.integrators import rollout
from simulators import get_system

SYSTEM = "pendulum"
MODELS = ("separable-gradnet", "neural-ode")


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run; training follows the main suite's profile of the same name."""

    steps: int  # rollout steps
    trajectories: int  # test initial states rolled out
    seeds: tuple[int, ...]


PROFILES: dict[str, Profile] = {
    "smoke": Profile(steps=200, trajectories=2, seeds=(0,)),
    "quick": Profile(steps=10_000, trajectories=4, seeds=(0,)),
    "full": Profile(steps=100_000, trajectories=8, seeds=(0, 1, 2)),
}


def measure(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Train the pendulum models as the main suite does, roll them out; fill ``results['long']``."""
    train = suite.PROFILES[args.profile]
    results["training"] = dataclasses.asdict(train)
    out = results.setdefault("long", {"runs": [], "steps": profile.steps})
    spec = suite.SYSTEM_SPECS[SYSTEM]
    system = get_system(spec.system, **spec.params)
    path = suite.dataset_path(args, train, SYSTEM)
    test = load_dataset(path).split("test")
    k = min(profile.trajectories, test.n_traj)
    q0 = torch.from_numpy(test.q[:k, 0])
    p0 = torch.from_numpy(test.p[:k, 0])
    h0 = system.hamiltonian(q0, p0).numpy()
    save_every = max(1, profile.steps // 10_000)
    for mlabel in MODELS:
        mspec = suite.MODEL_SPECS[mlabel]
        hidden, _ = _bench.matched_width(mspec.model, system.dof, train.budget, mspec.hparams)
        for seed in profile.seeds:
            hparams = {**mspec.hparams, "hidden": hidden}
            run_dir = suite.train_model(args, train, SYSTEM, path, mlabel, hparams, seed)
            model = _bench.load(run_dir, torch.float64)
            method = model.integrator()
            started = time.perf_counter()
            with torch.no_grad():
                traj = rollout(
                    model, q0, p0, spec.dt, profile.steps, method=method, save_every=save_every
                )
                h = system.hamiltonian(traj.q, traj.p).numpy()  # [k, n_saved]
            rel = np.abs(h - h0[:, None]) / np.abs(h0[:, None])
            tenth = max(1, rel.shape[1] // 10)
            hundredth = max(1, rel.shape[1] // 100)
            first, last = float(rel[:, 1 : tenth + 1].max()), float(rel[:, -tenth:].max())
            row = {
                "model": mlabel,
                "seed": seed,
                "integrator": method.name,
                # a model whose error saturates early shows it here, not in the ratio
                "first_hundredth_max": float(rel[:, 1 : hundredth + 1].max()),
                "first_tenth_max": first,
                "last_tenth_max": last,
                "ratio": last / first if first > 0 else math.inf,
                "drift_slope": float(np.polyfit(traj.t.numpy(), rel.mean(0), 1)[0]),
                "rollout_s": time.perf_counter() - started,
            }
            out["runs"].append(row)
            _bench.log(
                f"  [long] {mlabel} seed {seed} ({method.name}): first tenth "
                f"{first:.3e}, last tenth {last:.3e}, ratio {row['ratio']:.2f}, "
                f"{row['rollout_s']:.1f} s"
            )
            _bench.write_json(args.json, results)


def render(results: dict[str, Any]) -> str:
    """Markdown table of the long-horizon energy behaviour."""
    long = results["long"]
    fmt_ms, ms = _bench.fmt_ms, _bench.mean_std
    groups = _bench.group(long["runs"], "model")
    header = [
        "model",
        "integrator",
        "max rel. energy err, first 1/100",
        "max rel. energy err, first tenth",
        "max rel. energy err, last tenth",
        "last / first",
        "drift slope (1/time)",
    ]
    rows = [
        [
            m,
            rs[0]["integrator"],
            fmt_ms(ms([r.get("first_hundredth_max") for r in rs]), ".2e"),
            fmt_ms(ms([r["first_tenth_max"] for r in rs]), ".2e"),
            fmt_ms(ms([r["last_tenth_max"] for r in rs]), ".2e"),
            fmt_ms(ms([r["ratio"] for r in rs]), ".2f"),
            fmt_ms(ms([r["drift_slope"] for r in rs]), ".2e"),
        ]
        for (m,), rs in groups.items()
    ]
    return "\n\n".join(
        [
            f"### Long horizon: {SYSTEM}, {long['steps']} steps "
            f"(dt = {suite.SYSTEM_SPECS[SYSTEM].dt:g}), float64",
            _bench.markdown(header, rows),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    return _bench.build_parser(__doc__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or ``--report`` a saved run), print the Markdown table; return 0."""
    return _bench.main(build_parser(), PROFILES, measure, render, argv)


if __name__ == "__main__":
    sys.exit(main())
