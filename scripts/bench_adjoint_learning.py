"""Does training on 1000-step rollouts (with the adjoint) fix the drift of short-horizon training?

On the spring chain (5 masses, fixed ends, dt = 0.1), for each seed:

1. ``short``: a separable GradNet trained with ``rollout:10`` (leapfrog);
2. ``long``: continued from ``short`` with ``rollout:1000 --adjoint``;
3. ``control``: continued from ``short`` with ``rollout:10`` for the same epochs, batch size
   and learning rate as ``long``. An epoch of ``rollout:10`` holds about 90 times as many
   windows (32 000 against 352), so ``control`` takes about 90 times as many optimizer steps
   (5460 against 60), each about 100 times cheaper.

Each is evaluated from the first state of every test trajectory over 10^4 steps with the
training integrator (leapfrog, dt = 0.1): state error in dB at 10, 100, 1000 and 10^4 steps
(`hamgrad.evaluation`: 10·log10 of the mean squared error of (q, p)), the largest relative error
of the true energy along the prediction, and the valid prediction time.

The same with the CLI (seed S; ``control`` as ``long`` with ``--loss rollout:10`` and no
``--adjoint``)::

    hamgrad simulate spring-chain --out chain.h5 --n-train 32 --n-val 4 --n-test 4 \
        --steps 1010 --steps-test 10000 --dt 0.1 --seed 0
    hamgrad train --data chain.h5 --model separable-gradnet --hidden 32 --depth 2 \
        --integrator leapfrog --dtype float64 --device cpu --seed S --loss rollout:10 \
        --epochs 60 --batch-size 1024 --lr 1e-2 --name short-sS
    hamgrad train --data chain.h5 --model separable-gradnet --hidden 32 --depth 2 \
        --integrator leapfrog --dtype float64 --device cpu --seed S --loss rollout:1000 \
        --adjoint --init runs/short-sS --epochs 30 --batch-size 176 --lr 1e-3 \
        --schedule constant --name long-sS
    hamgrad evaluate runs/long-sS --integrator leapfrog

Usage: ``python scripts/bench_adjoint_learning.py [--seeds 0 1 2] [--work-dir DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

SYSTEM = "spring-chain"
DATA = {
    "n_train": 32,
    "n_val": 4,
    "n_test": 4,
    "n_steps": 1010,
    "n_steps_test": 10_000,
    "dt": 0.1,
    "seed": 0,
}
MODEL = {"model": "separable-gradnet", "model_params": {"hidden": 32, "depth": 2}}
COMMON = {
    **MODEL,
    "integrator": "leapfrog",
    "dtype": "float64",
    "device": "cpu",
    "threads": 1,
}
SHORT = {"loss": "rollout:10", "epochs": 60, "batch_size": 1024, "lr": 1e-2}
FINE_TUNE = {"epochs": 30, "batch_size": 176, "lr": 1e-3, "schedule": "constant"}
RUNS = {
    "short": SHORT,
    "long": {**FINE_TUNE, "loss": "rollout:1000", "adjoint": True},
    "control": {**FINE_TUNE, "loss": "rollout:10"},
}
HORIZONS = ("10", "100", "1000", "10000")


def _train(data: Path, runs: Path, name: str, seed: int, settings: dict[str, Any]):
    from hamgrad.training import TrainConfig, train

    config = {**COMMON, **settings, "data": str(data), "runs_dir": str(runs), "seed": seed}
    if name != "short":
        config["init"] = str(runs / f"short-s{seed}")
    started = time.perf_counter()
    train(TrainConfig.from_mapping({**config, "name": f"{name}-s{seed}"}), overwrite=True)
    return time.perf_counter() - started


def _evaluate(run: Path, dataset: Any, system: Any) -> dict[str, Any]:
    from hamgrad.checkpoint import load_model
    from hamgrad.evaluation import evaluate

    model, _ = load_model(run)
    ev = evaluate(model, dataset, system=system, method="leapfrog", learned_energy=False)
    return ev.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench_adjoint_learning"))
    args = parser.parse_args()

    import torch

    from hamgrad.data import load_dataset
    from simulators import generate, system_from_dataset

    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data = args.work_dir / "chain.h5"
    if not data.exists():
        generate(SYSTEM, data, **DATA)
    dataset = load_dataset(data)
    system = system_from_dataset(dataset)
    runs = args.work_dir / "runs"
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    floor = None
    for seed in args.seeds:
        for name, settings in RUNS.items():
            seconds = _train(data, runs, name, seed, settings)
            metrics = _evaluate(runs / f"{name}-s{seed}", dataset, system)
            m = metrics["model_metrics"]
            floor = metrics["floor_metrics"]
            rows[name].append({"train_s": seconds, **m})
            print(
                f"seed {seed} {name:<8} train {seconds:6.0f} s  state error dB "
                + " ".join(f"{h}:{m['state_error_db'][h]:7.2f}" for h in HORIZONS)
                + f"  energy rel err max {m['energy_rel_error_max']:.2e}"
                f"  valid time {m['vpt_time']:.1f}",
                flush=True,
            )

    def mean_std(values: list[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:.2f}"
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    print(
        f"\nmean ± std over seeds {args.seeds} (test: {DATA['n_test']} trajectories, "
        f"10^4 steps, leapfrog dt = {DATA['dt']})"
    )
    print(
        f"{'run':<8} "
        + " ".join(f"{'dB @ ' + h:>15}" for h in HORIZONS)
        + f" {'energy err max':>17} {'valid time':>13} {'train s':>8}"
    )
    for name, rs in rows.items():
        print(
            f"{name:<8} "
            + " ".join(f"{mean_std([r['state_error_db'][h] for r in rs]):>15}" for h in HORIZONS)
            + f" {statistics.mean(r['energy_rel_error_max'] for r in rs):>17.2e}"
            + f" {mean_std([r['vpt_time'] for r in rs]):>13}"
            + f" {statistics.mean(r['train_s'] for r in rs):>8.0f}"
        )
    if floor is not None:
        print(
            "floor (true H, leapfrog) "
            + " ".join(f"{h}:{floor['state_error_db'][h]:.2f}" for h in HORIZONS)
            + f"  energy rel err max {floor['energy_rel_error_max']:.2e}"
        )


if __name__ == "__main__":
    main()
