"""The published HNN protocol: GradNet Hamiltonians on the two toy tasks of the HNN paper.

Greydanus, Dzamba & Yosinski, "Hamiltonian Neural Networks", NeurIPS 2019 (their repository's
``experiment-spring`` / ``experiment-pend`` data and ``train.py``): spring ``H = q² + p²``
(``Spring(m=0.5, k=2)``, radius ``U(0.1, 1)``, 30 samples on t ∈ [0, 3]) and pendulum
``H = 3(1 − cos q) + p²`` (``Pendulum(m=0.5, g=6, l=1)``, radius ``U(1.3, 2.3)``, 45 samples on
t ∈ [0, 3]); 25 training and 25 test trajectories (their 50 with a 50/50 split), Gaussian noise
σ = 0.1 on the observed q and p, exact derivative targets; full-batch Adam, lr 1e-3, weight
decay 1e-4, 2000 steps; their HNN is an MLP 2-200-200-1 (tanh), and every model of
`bench_hamiltonian.MODEL_SPECS` gets its parameter count (±5 %). Reported with their
definitions:

- *test derivative MSE*: ``mean((f̂(x_obs) − f(x))²)`` over every test sample **and every
  component** (their ``L2_loss``), ``x_obs`` the noisy observed state, ``f(x)`` the exact
  derivative at the noise-free state; the "oracle" row is the true field evaluated at the
  noisy inputs (the error the noise alone causes);
- *energy MSE*: each test trajectory's noise-free initial state (regenerated from the same
  seed with ``noise_std=0``) is rolled out with RK4 at 10 substeps per sample interval, for the
  test span (t ∈ [0, 3]) and for ``long_factor`` times that span (10 in the quick and full
  profiles); ``mean((H(x̂(t)) − H(x(t)))²)`` over trajectories and samples, ``H`` the true
  Hamiltonian.

The published figures are printed beside ours. Profiles: ``--smoke`` (seconds; the test),
``--quick`` (a 100-wide HNN's budget, 300 steps, one seed), default = the full protocol
(published budget, 2000 steps, 3 seeds; hours). Usage::

    python scripts/bench_hnn_protocol.py --quick
    python scripts/bench_hnn_protocol.py --tasks pendulum --seeds 1 --json /tmp/ham_bench/hnn.json
    python scripts/bench_hnn_protocol.py --report /tmp/ham_bench/hnn.json

Measured tables and their reading: BENCHMARKS.md, section 5.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _bench
import numpy as np
import torch
from bench_hamiltonian import MODEL_SPECS

from hamgrad.data import load_dataset
from hamgrad.errors import ConfigError
from hamgrad.integrators import rollout
from hamgrad.models import LearnedModel, get_model
from hamgrad.nets import count_parameters
from simulators import System, get_system

#: The HNN paper's two toy tasks (their repository's data.py): system, parameters, the
#: number of samples on t in [0, 3] (timescale x span), and the figures published in
#: Greydanus et al. (2019): test derivative MSE (HNN), energy MSE (MLP baseline, HNN).
TASKS: dict[str, dict[str, Any]] = {
    "spring": {
        "system": "spring",
        "params": {"m": 0.5, "k": 2.0, "radius_min": 0.1, "radius_max": 1.0},
        "samples": 30,
        "published": {"hnn_deriv": 3.59e-2, "mlp_energy": 1.71e-1, "hnn_energy": 3.84e-4},
    },
    "pendulum": {
        "system": "pendulum",
        "params": {"m": 0.5, "g": 6.0, "l": 1.0, "radius_min": 1.3, "radius_max": 2.3},
        "samples": 45,
        "published": {"hnn_deriv": 3.56e-2, "mlp_energy": 4.15e-2, "hnn_energy": 2.49e-2},
    },
}
SPAN = 3.0  # t in [0, 3]
NOISE = 0.1
SUBSTEPS = 10  # RK4 steps per sample interval in the energy rollouts
MLP = {"depth": 2, "activation": "tanh"}  # the published MLPs (HNN and baseline)


@dataclass(frozen=True)
class Profile:
    """Sizes of one run (see the module docstring)."""

    steps: int  # full-batch training steps
    trajectories: int  # per split (train and test)
    hidden: int  # width of the protocol's HNN, which sets the budget (published: 200)
    long_factor: int  # the second energy-MSE span, in multiples of the test span
    seeds: tuple[int, ...]


PROFILES: dict[str, Profile] = {
    "smoke": Profile(steps=3, trajectories=3, hidden=24, long_factor=2, seeds=(0,)),
    "quick": Profile(steps=300, trajectories=25, hidden=100, long_factor=10, seeds=(0,)),
    "full": Profile(steps=2000, trajectories=25, hidden=200, long_factor=10, seeds=(0, 1, 2)),
}


def budget(hidden: int = 200) -> int:
    """Parameters of the HNN MLP 2-hidden-hidden-1 (tanh; published: ``hidden=200``)."""
    with torch.device("meta"):
        return count_parameters(get_model("hnn", 1, **MLP, hidden=hidden, normalize=False))


def _energy_mse(
    model: LearnedModel,
    system: System,
    q0: np.ndarray,
    p0: np.ndarray,
    h_true: np.ndarray,
    dt: float,
    n_steps: int,
) -> float:
    """``mean((H(x̂_k) − H(x_0))²)`` over trajectories and samples ``k = 0..n_steps``."""
    with torch.no_grad():
        traj = rollout(
            model,
            torch.from_numpy(q0),
            torch.from_numpy(p0),
            dt / SUBSTEPS,
            n_steps * SUBSTEPS,
            method="rk4",
            save_every=SUBSTEPS,
        )
        h_pred = system.hamiltonian(traj.q, traj.p).numpy()
    return float(np.mean((h_pred - h_true[:, None]) ** 2))


def measure(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """The protocol on every task of ``args.tasks``; fill ``results['hnn']``."""
    out = results.setdefault("hnn", {"runs": [], "oracle": {}, "budget": None})
    n_params_budget = budget(profile.hidden)
    out["budget"], out["long_factor"] = n_params_budget, profile.long_factor
    for task in args.tasks:
        spec = TASKS[task]
        system = get_system(spec["system"], **spec["params"])
        n_steps = spec["samples"] - 1
        dt = SPAN / n_steps
        n = profile.trajectories
        base = {
            "system": spec["system"],
            "params": spec["params"],
            "dt": dt,
            "n_val": 0,
            "n_steps": n_steps,
            "seed": args.data_seed,
        }
        noisy = _bench.ensure_dataset(
            args.data_dir, f"hnn-{task}", {**base, "n_train": n, "n_test": n, "noise_std": NOISE}
        )
        # Same seed without noise: the same initial states (drawn before the noise), exact.
        clean = _bench.ensure_dataset(
            args.data_dir,
            f"hnn-{task}-clean",
            {**base, "n_train": 0, "n_test": n, "noise_std": 0.0},
        )
        test = load_dataset(noisy).split("test")
        truth = load_dataset(clean).split("test")
        if not np.allclose(test.energy, truth.energy, rtol=0, atol=1e-12):
            raise ConfigError(
                f"hnn protocol {task}: the noise-free twin dataset does not share "
                "the noisy one's initial states; expected generate() to draw "
                "states before noise"
            )
        q_obs = torch.from_numpy(test.q.reshape(-1, system.dof))
        p_obs = torch.from_numpy(test.p.reshape(-1, system.dof))
        target = np.concatenate([test.dq_dt, test.dp_dt], -1).reshape(-1, 2 * system.dof)
        with torch.no_grad():
            oracle = np.concatenate([t.numpy() for t in system.time_derivative(q_obs, p_obs)], -1)
        out["oracle"][task] = float(np.mean((oracle - target) ** 2))
        q0, p0, h0 = truth.q[:, 0], truth.p[:, 0], truth.energy[:, 0]
        for mlabel in args.models:
            mspec = MODEL_SPECS[mlabel]
            if not mspec.applies(system.separable):
                continue
            hparams = {**mspec.hparams, **(MLP if mlabel in ("hnn", "neural-ode") else {})}
            hidden, n_params = _bench.matched_width(
                mspec.model, system.dof, n_params_budget, hparams
            )
            for seed in profile.seeds:
                started = time.perf_counter()
                run_dir = _bench.train_run(
                    noisy,
                    mspec.model,
                    {**hparams, "hidden": hidden},
                    args.work_dir / "runs",
                    f"hnn-{task}-{mlabel}-s{seed}",
                    loss="derivative",
                    epochs=profile.steps,
                    batch_size=n * spec["samples"],
                    lr=1e-3,
                    weight_decay=1e-4,
                    schedule="constant",
                    grad_clip=0.0,
                    seed=seed,
                )
                train_s = time.perf_counter() - started
                model = _bench.load(run_dir, torch.float64)
                with torch.no_grad():
                    pred = torch.cat(model.time_derivative(q_obs, p_obs), -1).numpy()
                row = {
                    "task": task,
                    "model": mlabel,
                    "seed": seed,
                    "params": n_params,
                    "hidden": hidden,
                    "derivative_mse": float(np.mean((pred - target) ** 2)),
                    "energy_mse": _energy_mse(model, system, q0, p0, h0, dt, n_steps),
                    "energy_mse_long": _energy_mse(
                        model, system, q0, p0, h0, dt, n_steps * profile.long_factor
                    ),
                    "epoch_s": _bench.epoch_seconds(run_dir),
                    "train_s": train_s,
                }
                out["runs"].append(row)
                _bench.log(
                    f"  [hnn] {task} {mlabel} seed {seed}: deriv MSE "
                    f"{row['derivative_mse']:.3e}, energy MSE {row['energy_mse']:.3e}, "
                    f"train {train_s:.1f} s"
                )
                _bench.write_json(args.json, results)


def render(results: dict[str, Any]) -> str:
    """Markdown table of the protocol with the published figures beside ours."""
    hnn = results["hnn"]
    fmt_ms, ms = _bench.fmt_ms, _bench.mean_std
    groups = _bench.group(hnn["runs"], "task", "model")
    header = [
        "task",
        "model",
        "params",
        "test deriv. MSE",
        "energy MSE (t∈[0,3])",
        f"energy MSE (t∈[0,{SPAN * hnn['long_factor']:g}])",
        "s/epoch",
    ]
    rows = []
    for (task, model), runs in groups.items():
        rows.append(
            [
                task,
                model,
                str(runs[0]["params"]),
                fmt_ms(ms([r["derivative_mse"] for r in runs]), ".3e"),
                fmt_ms(ms([r["energy_mse"] for r in runs]), ".3e"),
                fmt_ms(ms([r["energy_mse_long"] for r in runs]), ".3e"),
                fmt_ms(ms([r["epoch_s"] for r in runs]), ".4f"),
            ]
        )
    for task in sorted({t for t, _ in groups}):
        pub = TASKS[task]["published"]
        rows.append(
            [
                task,
                "oracle (true field at noisy inputs)",
                "-",
                f"{hnn['oracle'][task]:.3e}",
                "0",
                "0",
                "-",
            ]
        )
        rows.append(
            [
                task,
                "published HNN (Greydanus et al. 2019)",
                "-",
                f"{pub['hnn_deriv']:.2e}",
                f"{pub['hnn_energy']:.2e}",
                "-",
                "-",
            ]
        )
        rows.append(
            [task, "published MLP baseline", "-", "-", f"{pub['mlp_energy']:.2e}", "-", "-"]
        )
    return "\n\n".join(
        [
            f"### HNN protocol (budget {hnn['budget']} parameters; mean ± std "
            "over seeds, a single value where one seed ran)",
            _bench.markdown(header, rows),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = _bench.build_parser(__doc__)
    _bench.add_names(parser, "--tasks", "task", TASKS)
    _bench.add_names(parser, "--models", "model", MODEL_SPECS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the protocol (or ``--report`` a saved run), print the Markdown table; return 0."""
    return _bench.main(build_parser(), PROFILES, measure, render, argv)


if __name__ == "__main__":
    sys.exit(main())
