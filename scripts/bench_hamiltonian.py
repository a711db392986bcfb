"""Hamiltonian benchmark suite: GradNet Hamiltonians against HNN and Neural ODE, in dB (issue 6).

Three sections, each printed as Markdown tables (and written to ``--json`` as it goes, so an
interrupted run still leaves its finished rows):

``main``
    For every system (pendulum, spring, spring-chain with 10 masses, two-body, three-body,
    double pendulum) one dataset is generated with `simulators.generate` (cached under
    ``--data-dir``), and every model of `MODEL_SPECS` that applies is trained on it with the same
    `hamgrad.training.TrainConfig` (derivative loss, optimiser, epochs, batch) at a matched
    parameter budget (every model within ±5 % of the budget, checked), for each seed. Each is
    then evaluated by `hamgrad.evaluation.evaluate` on the test split, rolled out with the
    model's default integrator for ``horizon`` steps from each test trajectory's first state:
    derivative error (dB), state error at 10 / 100 / 1000 steps (dB), max relative error of the
    true energy, valid prediction time, and the median wall time per training epoch.
    Mean ± standard deviation (``ddof=1``) over seeds. The integrator's own floor (the true
    Hamiltonian rolled out with the same method and step) is tabulated separately.

``hnn``
    The published protocol of Greydanus, Dzamba & Yosinski, "Hamiltonian Neural Networks",
    NeurIPS 2019 (their repository's ``experiment-spring`` / ``experiment-pend`` data and
    ``train.py``): spring ``H = q² + p²`` (``Spring(m=0.5, k=2)``, radius ``U(0.1, 1)``, 30
    samples on t ∈ [0, 3]) and pendulum ``H = 3(1 − cos q) + p²`` (``Pendulum(m=0.5, g=6, l=1)``,
    radius ``U(1.3, 2.3)``, 45 samples on t ∈ [0, 3]); 25 training and 25 test trajectories
    (their 50 with a 50/50 split), Gaussian noise σ = 0.1 on the observed q and p, exact
    derivative targets; full-batch Adam, lr 1e-3, weight decay 1e-4, 2000 steps; their HNN is
    an MLP 2-200-200-1 (tanh), and every model here gets its parameter count (±5 %).
    Reported with their definitions:

    - *test derivative MSE*: ``mean((f̂(x_obs) − f(x))²)`` over every test sample **and every
      component** (their ``L2_loss``), ``x_obs`` the noisy observed state, ``f(x)`` the exact
      derivative at the noise-free state; the "oracle" row is the true field evaluated at the
      noisy inputs (the error the noise alone causes);
    - *energy MSE*: each test trajectory's noise-free initial state (regenerated from the same
      seed with ``noise_std=0``) is rolled out with RK4 at 10 substeps per sample interval, for
      the test span (t ∈ [0, 3]) and for ``hnn_long_factor`` times that span (10 in the
      quick and full profiles); ``mean((H(x̂(t)) − H(x(t)))²)`` over
      trajectories and samples, ``H`` the true Hamiltonian.

``long``
    Energy behaviour over the profile's ``long_steps`` steps (10^5 in the full run) on the pendulum:
    separable GradNet models rolled out with their symplectic default (Yoshida 4) and NeuralODE
    models with RK4, step = the data interval, float64. Reports the max relative true-energy
    error over the first and the last tenth of the rollout and their ratio (≈ 1: bounded,
    ≫ 1: secular drift), and the least-squares drift slope.

Profiles: ``--smoke`` (seconds; the test), ``--quick`` (< 10 minutes on 2 CPU cores: one seed,
few epochs), default = the full run (3 seeds; hours). Usage::

    python scripts/bench_hamiltonian.py --quick
    python scripts/bench_hamiltonian.py --sections main,long --json /tmp/ham_bench/full.json
    python scripts/bench_hamiltonian.py --sections hnn --hnn-tasks pendulum --seeds 1
    python scripts/bench_hamiltonian.py --report /tmp/ham_bench/full.json  # tables of a partial run

Measured tables and their reading: notes/hamiltonian-bench.md (merged into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hamgrad.errors import ConfigError, IntegratorError
from hamgrad.nets import count_parameters

# ----------------------------------------------------------------------------- registries


@dataclass(frozen=True)
class SystemSpec:
    """One benchmark system: registry name, parameters and sampling interval.

    Attributes
    ----------
    system : str
        Name in `simulators.SYSTEMS`.
    params : dict
        Its constructor parameters.
    dt : float
        Sampling interval of the data and step of the evaluation rollouts (time units).
    """

    system: str
    params: dict[str, Any] = field(default_factory=dict)
    dt: float = 0.1


#: Benchmark systems (label -> spec). ``dt`` resolves the fastest motion with 50+ steps per
#: period (oscillators, orbits), so the 1000-step horizon spans several periods. The three-body
#: step is shorter: its perturbed Lagrange configurations are unstable and meet in close
#: encounters after about one orbit (t ≈ 8), where no fixed-step method converges (the
#: Gauss-Legendre floor of the true system failed at t = 7.8 with dt = 0.02), so its 1000
#: steps cover t ∈ [0, 5].
SYSTEM_SPECS: dict[str, SystemSpec] = {
    "pendulum": SystemSpec("pendulum", {}, 0.05),
    "spring": SystemSpec("spring", {}, 0.1),
    "spring-chain-10": SystemSpec("spring-chain", {"n": 10}, 0.05),
    "two-body": SystemSpec("two-body", {}, 0.05),
    "three-body": SystemSpec("three-body", {}, 0.005),
    "double-pendulum": SystemSpec("double-pendulum", {}, 0.02),
}


@dataclass(frozen=True)
class ModelSpec:
    """A model variant: name in `hamgrad.models.MODELS` plus fixed hyperparameters.

    Attributes
    ----------
    model : str
        Registry name.
    hparams : dict
        Hyperparameters besides ``hidden`` (which the budget sets).
    separable_only : bool
        Only for systems whose Hamiltonian is separable.
    gradnet : bool
        A GradNet Hamiltonian (compared against the HNN in the targets table).
    """

    model: str
    hparams: dict[str, Any] = field(default_factory=dict)
    separable_only: bool = False
    gradnet: bool = False


#: Model variants (label -> spec): the GradNet-C and -M families, the separable GradNet
#: (∇V a GradNet-C, ∇T an mGradNet-M) and the two baselines. Depths are the models' defaults.
MODEL_SPECS: dict[str, ModelSpec] = {
    "gradnet-c": ModelSpec("gradnet", {"net": "gradnet-c"}, gradnet=True),
    "gradnet-m": ModelSpec("gradnet", {"net": "gradnet-m"}, gradnet=True),
    "separable-gradnet": ModelSpec("separable-gradnet", {}, separable_only=True, gradnet=True),
    "hnn": ModelSpec("hnn"),
    "neural-ode": ModelSpec("neural-ode"),
}

#: Baseline every GradNet variant is compared with in the targets table.
REFERENCE_MODEL = "hnn"


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run (see the module docstring)."""

    n_train: int
    n_val: int
    n_test: int
    n_steps: int  # steps per training trajectory
    horizon: int  # evaluation rollout steps (stored in the test split)
    epochs: int
    batch_size: int
    budget: int  # parameters per model in the main section
    seeds: tuple[int, ...]
    lr: float
    hnn_steps: int  # full-batch steps of the HNN protocol
    hnn_trajectories: int  # per split (train and test) in the HNN protocol
    hnn_hidden: int  # width of the protocol's HNN, which sets its budget (published: 200)
    hnn_long_factor: int  # the second energy-MSE span, in multiples of the test span
    long_steps: int
    long_trajectories: int


PROFILES: dict[str, Profile] = {
    "smoke": Profile(n_train=3, n_val=1, n_test=2, n_steps=10, horizon=100, epochs=2,
                     batch_size=16, budget=1000, seeds=(0,), lr=3e-3, hnn_steps=3,
                     hnn_trajectories=3, hnn_hidden=24, hnn_long_factor=2, long_steps=200,
                     long_trajectories=2),
    "quick": Profile(n_train=24, n_val=4, n_test=8, n_steps=100, horizon=1000, epochs=40,
                     batch_size=128, budget=1500, seeds=(0,), lr=3e-3, hnn_steps=300,
                     hnn_trajectories=25, hnn_hidden=100, hnn_long_factor=10,
                     long_steps=10_000, long_trajectories=4),
    "full": Profile(n_train=100, n_val=20, n_test=20, n_steps=100, horizon=1000, epochs=100,
                    batch_size=256, budget=4000, seeds=(0, 1, 2), lr=3e-3, hnn_steps=2000,
                    hnn_trajectories=25, hnn_hidden=200, hnn_long_factor=10,
                    long_steps=100_000, long_trajectories=8),
}

BUDGET_TOLERANCE = 0.05  # matched parameter budgets: every model within ±5 %
STATE_HORIZONS = (10, 100, 1000)

# ----------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_json(path: Path | None, obj: Any) -> None:
    if path is None:
        return
    from hamgrad.training.files import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def model_parameters(model: str, dof: int, hidden: int, hparams: dict[str, Any]) -> int:
    """Trainable parameters of registered model ``model`` at width ``hidden`` (built on meta)."""
    from hamgrad.models import get_model

    with torch.device("meta"):
        return count_parameters(get_model(model, dof, **hparams, hidden=hidden))


def match_budget(model: str, dof: int, budget: int, hparams: dict[str, Any],
                 tolerance: float = BUDGET_TOLERANCE,
                 count: Callable[[str, int, int, dict[str, Any]], int] = model_parameters,
                 ) -> tuple[int, int]:
    """Width ``hidden`` whose parameter count is closest to ``budget``; ``(hidden, count)``.

    The count grows with ``hidden``, so a bisection finds the last width at or below the budget
    and the next one is the only other candidate. ``count`` is injectable for tests.

    Raises
    ------
    ConfigError
        The closest count misses ``budget`` by more than ``tolerance`` (relative): the models
        of one comparison would not have matched budgets.
    """
    lo, hi = 1, 2
    while count(model, dof, hi, hparams) <= budget:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: count(lo) <= budget < count(hi), or lo = 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(model, dof, mid, hparams) <= budget else (lo, mid)
    candidates = [(abs(count(model, dof, h, hparams) - budget), h) for h in (lo, hi)]
    _, hidden = min(candidates)
    n = count(model, dof, hidden, hparams)
    if abs(n - budget) > tolerance * budget:
        raise ConfigError(f"parameter budget {budget} cannot be matched within "
                          f"±{tolerance:.0%} by model {model!r} {hparams} on dof {dof}: closest "
                          f"is hidden={hidden} with {n} parameters; expected a larger budget")
    return hidden, n


def _settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def ensure_dataset(data_dir: Path, label: str, settings: dict[str, Any]) -> Path:
    """Generate (once) the dataset of ``settings`` (kwargs of `simulators.generate`); its path.

    The file name carries a hash of the settings, so a changed profile never reuses stale data.
    """
    from simulators.generate import generate

    path = data_dir / f"{label}-{_settings_hash(settings)}.h5"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        kwargs = dict(settings)
        generate(kwargs.pop("system"), path, **kwargs)
        _log(f"  generated {path} in {time.perf_counter() - started:.1f} s")
    return path


def _mean_std(values: Sequence[float | None]) -> tuple[float, float | None] | None:
    """Mean and sample standard deviation (``ddof=1``; None from a single value)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return mean, std


def _fmt_ms(ms: tuple[float, float | None] | None, spec: str = ".2f") -> str:
    if ms is None:
        return "n/a"
    mean, std = ms
    if not math.isfinite(mean) or std is None:
        return format(mean, spec) if math.isfinite(mean) else str(mean)
    return f"{mean:{spec}} ± {std:{spec}}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _train(data: Path, model: str, hparams: dict[str, Any], runs_dir: Path, name: str,
           **config: Any) -> Path:
    """Train with `hamgrad.training.train` (CPU, one thread); return the run directory."""
    from hamgrad.training import TrainConfig, train

    cfg = TrainConfig(data=str(data), model=model, model_params=dict(hparams),
                      runs_dir=str(runs_dir), name=name, device="cpu", threads=1, **config)
    return train(cfg, overwrite=True).run_dir


def _epoch_seconds(run_dir: Path) -> float:
    """Median wall time of one training epoch (robust to the other jobs on a shared machine)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    return float(statistics.median(r["time_s"] for r in rows))


def _load(run_dir: Path, dtype: torch.dtype | None = None):
    """The run's best model (in ``dtype`` when given, else its training dtype), eval mode."""
    from hamgrad.training import load_model

    model, _ = load_model(run_dir, "best")
    return (model if dtype is None else model.to(dtype)).eval()


def _evaluate(model: Any, dataset: Any, horizon: int):
    """`hamgrad.evaluation.evaluate` without the learned-energy plot curve (not a metric here,
    and ~70 % of an evaluation's time for GradNets in our runs)."""
    from hamgrad.evaluation import evaluate

    return evaluate(model, dataset, horizon=horizon, learned_energy=False)


# ----------------------------------------------------------------------------- main section


def _applicable(spec: ModelSpec, separable: bool) -> bool:
    return separable or not spec.separable_only


def _main_dataset(args: argparse.Namespace, profile: Profile, label: str) -> Path:
    """The (cached) dataset of system ``label`` under ``profile``: noise-free, with derivatives,
    the test split ``horizon`` steps long so the evaluation truth is stored."""
    spec = SYSTEM_SPECS[label]
    return ensure_dataset(args.data_dir, label, {
        "system": spec.system, "params": spec.params, "dt": spec.dt, "n_train": profile.n_train,
        "n_val": profile.n_val, "n_test": profile.n_test, "n_steps": profile.n_steps,
        "n_steps_test": profile.horizon, "noise_std": 0.0, "seed": args.data_seed})


def _train_and_evaluate(args: argparse.Namespace, profile: Profile, label: str, path: Path,
                        dataset: Any, mlabel: str, hidden: int, n_params: int,
                        seed: int) -> tuple[dict[str, Any], Any]:
    """Train one (system, model, seed) and evaluate it: ``(row, evaluation or None)``."""
    mspec = MODEL_SPECS[mlabel]
    started = time.perf_counter()
    run_dir = _train(path, mspec.model, {**mspec.hparams, "hidden": hidden},
                     args.work_dir / "runs", f"{label}-{mlabel}-s{seed}", loss="derivative",
                     epochs=profile.epochs, batch_size=profile.batch_size, lr=profile.lr,
                     schedule="cosine", seed=seed)
    train_s = time.perf_counter() - started
    row = {"system": label, "model": mlabel, "seed": seed, "params": n_params,
           "hidden": hidden, "run_dir": str(run_dir), "epoch_s": _epoch_seconds(run_dir),
           "train_s": train_s}
    try:
        # In the training dtype, as `hamgrad evaluate` does: float32 round-off over 1000
        # steps is far below every model error here.
        ev = _evaluate(_load(run_dir), dataset, profile.horizon)
    except IntegratorError as exc:
        # A rollout that blows up is a result (the row says so), not a crash.
        _log(f"  {label} {mlabel} seed {seed}: evaluation FAILED: {exc}")
        return {**row, "failed": str(exc)}, None
    m = ev.metrics["model_metrics"]
    row.update(integrator=ev.metrics["integrator"],
               derivative_error_db=m["derivative_error_db"],
               state_error_db=m["state_error_db"],
               energy_rel_error_max=m["energy_rel_error_max"],
               vpt_time=m["vpt_time"], vpt_censored=m["vpt_censored"],
               eval_s=time.perf_counter() - started - train_s)
    _log(f"  {label} {mlabel} seed {seed}: deriv {row['derivative_error_db']:.2f} dB, "
         f"state@100 {m['state_error_db'].get('100', float('nan')):.2f} dB, "
         f"train {train_s:.1f} s, eval {row['eval_s']:.1f} s")
    return row, ev


def run_main(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Train and evaluate every (seed, system, model); fill ``results['main']``.

    Seeds are the outer loop, so a run stopped early still covers every system and model
    (with fewer seeds) rather than a few systems with all seeds.
    """
    from hamgrad.data import load_dataset
    from simulators import get_system

    out = results.setdefault("main", {"runs": [], "floors": [], "budgets": []})
    plan: list[tuple[str, Path, Any, list[tuple[str, int, int]]]] = []
    for label in args.systems:
        spec = SYSTEM_SPECS[label]
        system = get_system(spec.system, **spec.params)
        path = _main_dataset(args, profile, label)
        models = []
        for mlabel in args.models:
            mspec = MODEL_SPECS[mlabel]
            if _applicable(mspec, system.separable):
                hidden, n_params = match_budget(mspec.model, system.dof, profile.budget,
                                                mspec.hparams)
                out["budgets"].append({"system": label, "model": mlabel, "hidden": hidden,
                                       "params": n_params, "budget": profile.budget})
                models.append((mlabel, hidden, n_params))
        plan.append((label, path, load_dataset(path), models))
    floors_seen: set[tuple[str, str]] = set()
    for seed in profile.seeds:
        for label, path, dataset, models in plan:
            for mlabel, hidden, n_params in models:
                row, ev = _train_and_evaluate(args, profile, label, path, dataset, mlabel,
                                              hidden, n_params, seed)
                out["runs"].append(row)
                if ev is not None and ev.metrics["floor_metrics"] is not None \
                        and (label, ev.metrics["integrator"]) not in floors_seen:
                    floors_seen.add((label, ev.metrics["integrator"]))
                    f = ev.metrics["floor_metrics"]
                    out["floors"].append({"system": label, "integrator": ev.metrics["integrator"],
                                          "state_error_db": f["state_error_db"],
                                          "energy_rel_error_max": f["energy_rel_error_max"],
                                          "vpt_time": f["vpt_time"]})
                _write_json(args.json, results)


def _group(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["system"], r["model"]), []).append(r)
    return groups


def _state(r: dict[str, Any], h: int) -> float | None:
    return r["state_error_db"].get(str(h))


def summarize_main(main: dict[str, Any], horizon: int) -> dict[str, Any]:
    """Aggregate runs over seeds: ``{(system, model): {metric: (mean, std)}}`` as a list."""
    hs = [h for h in STATE_HORIZONS if h <= horizon]
    rows = []
    for (system, model), all_runs in _group(main["runs"]).items():
        runs = [r for r in all_runs if "failed" not in r]
        rows.append({
            "system": system, "model": model, "params": all_runs[0]["params"],
            "integrator": runs[0]["integrator"] if runs else "-", "seeds": len(runs),
            "failed": len(all_runs) - len(runs),
            "derivative_error_db": _mean_std([r["derivative_error_db"] for r in runs]),
            "state_error_db": {str(h): _mean_std([_state(r, h) for r in runs]) for h in hs},
            "energy_rel_error_max": _mean_std([r["energy_rel_error_max"] for r in runs]),
            "vpt_time": _mean_std([r["vpt_time"] for r in runs]),
            "epoch_s": _mean_std([r["epoch_s"] for r in runs]),
        })
    return {"rows": rows, "horizons": hs}


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """GradNet variants against the HNN: dB gains (positive = GradNet better), time ratio."""
    by_key = {(r["system"], r["model"]): r for r in summary["rows"]}
    out = []
    for (system, model), row in by_key.items():
        ref = by_key.get((system, REFERENCE_MODEL))
        if ref is None or not MODEL_SPECS[model].gradnet:
            continue

        def gain(get: Callable[[dict[str, Any]], tuple[float, float] | None],
                 row: dict[str, Any] = row, ref: dict[str, Any] = ref) -> float | None:
            a, b = get(ref), get(row)
            return None if a is None or b is None else a[0] - b[0]

        out.append({
            "system": system, "model": model,
            "derivative_gain_db": gain(lambda r: r["derivative_error_db"]),
            "state100_gain_db": gain(lambda r: r["state_error_db"].get("100")),
            "epoch_time_ratio": (row["epoch_s"][0] / ref["epoch_s"][0]
                                 if row["epoch_s"] and ref["epoch_s"] else None),
        })
    return out


def _f(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def format_main(summary: dict[str, Any], floors: list[dict[str, Any]]) -> str:
    """Markdown: results table, floor table, targets table."""
    hs = summary["horizons"]
    header = ["system", "model", "params", "integrator", "deriv. err (dB)",
              *[f"state err @{h} (dB)" for h in hs], "max rel. energy err", "VPT (time)",
              "s/epoch"]
    rows = [[r["system"], r["model"] + (f" ({r['failed']} failed)" if r["failed"] else ""),
             str(r["params"]), r["integrator"],
             _fmt_ms(r["derivative_error_db"]),
             *[_fmt_ms(r["state_error_db"][str(h)]) for h in hs],
             _fmt_ms(r["energy_rel_error_max"], ".2e"), _fmt_ms(r["vpt_time"]),
             _fmt_ms(r["epoch_s"], ".3f")] for r in summary["rows"]]
    parts = ["### Models (mean ± std over seeds; a single value where one seed ran)",
             _markdown(header, rows)]
    if floors:
        fh = ["system", "integrator", *[f"state err @{h} (dB)" for h in hs],
              "max rel. energy err", "VPT (time)"]
        frows = [[f["system"], f["integrator"],
                  *[_f(f["state_error_db"].get(str(h)), ".2f") for h in hs],
                  _f(f["energy_rel_error_max"], ".2e"), _f(f["vpt_time"], ".2f")]
                 for f in floors]
        parts += ["### Integrator floor (true Hamiltonian, same method and step)",
                  _markdown(fh, frows)]
    targets = _targets(summary)
    if targets:
        th = ["system", "model", f"deriv. gain vs {REFERENCE_MODEL} (dB)",
              f"state@100 gain vs {REFERENCE_MODEL} (dB)",
              f"epoch time / {REFERENCE_MODEL}"]
        trows = [[t["system"], t["model"], _f(t["derivative_gain_db"], "+.2f"),
                  _f(t["state100_gain_db"], "+.2f"), _f(t["epoch_time_ratio"], ".2f")]
                 for t in targets]
        parts += [f"### Targets: GradNet variants against {REFERENCE_MODEL} "
                  "(gain = HNN dB − GradNet dB; positive: GradNet better)", _markdown(th, trows)]
        lines = []
        for model in sorted({t["model"] for t in targets}):
            ts = [t for t in targets if t["model"] == model]
            ahead = sum(1 for t in ts if (t["derivative_gain_db"] or -1) > 0
                        and (t["state100_gain_db"] or -1) > 0)
            by6 = sum(1 for t in ts if (t["derivative_gain_db"] or 0) >= 6
                      and (t["state100_gain_db"] or 0) >= 6)
            lines.append(f"- {model}: ahead of {REFERENCE_MODEL} in both on {ahead}/{len(ts)} "
                         f"systems, by >= 6 dB in both on {by6}/{len(ts)}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- HNN protocol

#: The HNN paper's two toy tasks (their repository's data.py): system, parameters, the
#: number of samples on t in [0, 3] (timescale x span), and the published figures
#: (../shared/PAPER.md): test derivative MSE (HNN), energy MSE (MLP baseline, HNN).
HNN_TASKS: dict[str, dict[str, Any]] = {
    "spring": {"system": "spring",
               "params": {"m": 0.5, "k": 2.0, "radius_min": 0.1, "radius_max": 1.0},
               "samples": 30, "published": {"hnn_deriv": 3.59e-2, "mlp_energy": 1.71e-1,
                                            "hnn_energy": 3.84e-4}},
    "pendulum": {"system": "pendulum",
                 "params": {"m": 0.5, "g": 6.0, "l": 1.0, "radius_min": 1.3,
                            "radius_max": 2.3},
                 "samples": 45, "published": {"hnn_deriv": 3.56e-2, "mlp_energy": 4.15e-2,
                                              "hnn_energy": 2.49e-2}},
}
HNN_SPAN = 3.0  # t in [0, 3]
HNN_NOISE = 0.1
HNN_SUBSTEPS = 10  # RK4 steps per sample interval in the energy rollouts


def hnn_budget(hidden: int = 200) -> int:
    """Parameters of the HNN MLP 2-hidden-hidden-1 (tanh; published: ``hidden=200``)."""
    return model_parameters("hnn", 1, hidden, {"depth": 2, "activation": "tanh",
                                               "normalize": False})


def _energy_mse(model: Any, system: Any, q0: np.ndarray, p0: np.ndarray, h_true: np.ndarray,
                dt: float, n_steps: int) -> float:
    """``mean((H(x̂_k) − H(x_0))²)`` over trajectories and samples ``k = 0..n_steps``."""
    from hamgrad.integrators import rollout

    with torch.no_grad():
        traj = rollout(model, torch.from_numpy(q0), torch.from_numpy(p0), dt / HNN_SUBSTEPS,
                       n_steps * HNN_SUBSTEPS, method="rk4", save_every=HNN_SUBSTEPS)
        h_pred = system.hamiltonian(traj.q, traj.p).numpy()
    return float(np.mean((h_pred - h_true[:, None]) ** 2))


def run_hnn(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """The HNN protocol on spring and pendulum; fill ``results['hnn']``."""
    from hamgrad.data import load_dataset
    from simulators import get_system

    out = results.setdefault("hnn", {"runs": [], "oracle": {}, "budget": None})
    budget = hnn_budget(profile.hnn_hidden)
    out["budget"], out["long_factor"] = budget, profile.hnn_long_factor
    for task in args.hnn_tasks:
        spec = HNN_TASKS[task]
        system = get_system(spec["system"], **spec["params"])
        n_steps = spec["samples"] - 1
        dt = HNN_SPAN / n_steps
        n = profile.hnn_trajectories
        base = {"system": spec["system"], "params": spec["params"], "dt": dt, "n_val": 0,
                "n_steps": n_steps, "seed": args.data_seed}
        noisy = ensure_dataset(args.data_dir, f"hnn-{task}",
                               {**base, "n_train": n, "n_test": n, "noise_std": HNN_NOISE})
        # Same seed without noise: the same initial states (drawn before the noise), exact.
        clean_settings = {**base, "n_train": 0, "n_test": n, "noise_std": 0.0}
        clean = ensure_dataset(args.data_dir, f"hnn-{task}-clean", clean_settings)
        test = load_dataset(noisy).split("test")
        truth = load_dataset(clean).split("test")
        if not np.allclose(test.energy, truth.energy, rtol=0, atol=1e-12):
            raise ConfigError(f"hnn protocol {task}: the noise-free twin dataset does not share "
                              "the noisy one's initial states; expected generate() to draw "
                              "states before noise")
        q_obs = torch.from_numpy(test.q.reshape(-1, system.dof))
        p_obs = torch.from_numpy(test.p.reshape(-1, system.dof))
        target = np.concatenate([test.dq_dt, test.dp_dt], -1).reshape(-1, 2 * system.dof)
        with torch.no_grad():
            oracle = np.concatenate([t.numpy() for t in system.time_derivative(q_obs, p_obs)], -1)
        out["oracle"][task] = float(np.mean((oracle - target) ** 2))
        q0, p0, h0 = truth.q[:, 0], truth.p[:, 0], truth.energy[:, 0]
        n_train_samples = n * spec["samples"]
        for mlabel in args.models:
            mspec = MODEL_SPECS[mlabel]
            if not _applicable(mspec, system.separable):
                continue
            hparams = dict(mspec.hparams)
            if mlabel in ("hnn", "neural-ode"):
                # The published MLPs: two hidden layers, tanh.
                hparams.update(depth=2, activation="tanh")
            hidden, n_params = match_budget(mspec.model, system.dof, budget, hparams)
            for seed in profile.seeds:
                started = time.perf_counter()
                run_dir = _train(noisy, mspec.model, {**hparams, "hidden": hidden},
                                 args.work_dir / "runs", f"hnn-{task}-{mlabel}-s{seed}",
                                 loss="derivative", epochs=profile.hnn_steps,
                                 batch_size=n_train_samples, lr=1e-3, weight_decay=1e-4,
                                 schedule="constant", grad_clip=0.0, seed=seed)
                train_s = time.perf_counter() - started
                model = _load(run_dir, torch.float64)
                with torch.no_grad():
                    pred = np.concatenate([t.numpy() for t in model.time_derivative(q_obs,
                                                                                    p_obs)], -1)
                row = {"task": task, "model": mlabel, "seed": seed, "params": n_params,
                       "hidden": hidden, "derivative_mse": float(np.mean((pred - target) ** 2)),
                       "energy_mse": _energy_mse(model, system, q0, p0, h0, dt, n_steps),
                       "energy_mse_long": _energy_mse(model, system, q0, p0, h0, dt,
                                                      n_steps * profile.hnn_long_factor),
                       "epoch_s": _epoch_seconds(run_dir), "train_s": train_s}
                out["runs"].append(row)
                _log(f"  [hnn] {task} {mlabel} seed {seed}: deriv MSE "
                     f"{row['derivative_mse']:.3e}, energy MSE {row['energy_mse']:.3e}, "
                     f"train {train_s:.1f} s")
                _write_json(args.json, results)


def format_hnn(hnn: dict[str, Any]) -> str:
    """Markdown table of the HNN protocol with the published figures beside ours."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in hnn["runs"]:
        groups.setdefault((r["task"], r["model"]), []).append(r)
    header = ["task", "model", "params", "test deriv. MSE", "energy MSE (t∈[0,3])",
              f"energy MSE (t∈[0,{HNN_SPAN * hnn['long_factor']:g}])", "s/epoch"]
    rows = []
    for (task, model), runs in groups.items():
        rows.append([task, model, str(runs[0]["params"]),
                     _fmt_ms(_mean_std([r["derivative_mse"] for r in runs]), ".3e"),
                     _fmt_ms(_mean_std([r["energy_mse"] for r in runs]), ".3e"),
                     _fmt_ms(_mean_std([r["energy_mse_long"] for r in runs]), ".3e"),
                     _fmt_ms(_mean_std([r["epoch_s"] for r in runs]), ".4f")])
    for task in sorted({t for t, _ in groups}):
        pub = HNN_TASKS[task]["published"]
        rows.append([task, "oracle (true field at noisy inputs)", "-",
                     f"{hnn['oracle'][task]:.3e}", "0", "0", "-"])
        rows.append([task, "published HNN (Greydanus et al. 2019)", "-",
                     f"{pub['hnn_deriv']:.2e}", f"{pub['hnn_energy']:.2e}", "-", "-"])
        rows.append([task, "published MLP baseline", "-", "-", f"{pub['mlp_energy']:.2e}",
                     "-", "-"])
    return "\n\n".join([f"### HNN protocol (budget {hnn['budget']} parameters; mean ± std "
                        "over seeds, a single value where one seed ran)",
                        _markdown(header, rows)])


# ----------------------------------------------------------------------------- long horizon

LONG_SYSTEM = "pendulum"
LONG_MODELS = ("separable-gradnet", "neural-ode")


def run_long(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Energy error over ``long_steps`` steps; fill ``results['long']``.

    Reuses the main section's pendulum runs when present, else trains them the same way.
    """
    from hamgrad.data import load_dataset
    from hamgrad.integrators import rollout
    from hamgrad.models.integration import resolve_integrator
    from simulators import get_system

    out = results.setdefault("long", {"runs": [], "steps": profile.long_steps})
    spec = SYSTEM_SPECS[LONG_SYSTEM]
    system = get_system(spec.system, **spec.params)
    done = {(r["model"], r["seed"]): Path(r["run_dir"])
            for r in results.get("main", {}).get("runs", []) if r["system"] == LONG_SYSTEM}
    if any(key[0] in LONG_MODELS and key not in done
           for key in ((m, s) for m in LONG_MODELS for s in profile.seeds)):
        sub = argparse.Namespace(**{**vars(args), "systems": [LONG_SYSTEM],
                                    "models": list(LONG_MODELS)})
        scratch: dict[str, Any] = {}
        run_main(sub, profile, scratch)
        done.update({(r["model"], r["seed"]): Path(r["run_dir"]) for r in scratch["main"]["runs"]})
    test = load_dataset(_main_dataset(args, profile, LONG_SYSTEM)).split("test")
    k = min(profile.long_trajectories, test.n_traj)
    q0 = torch.from_numpy(test.q[:k, 0])
    p0 = torch.from_numpy(test.p[:k, 0])
    h0 = system.hamiltonian(q0, p0).numpy()
    save_every = max(1, profile.long_steps // 10_000)
    for mlabel in LONG_MODELS:
        for seed in profile.seeds:
            model = _load(done[(mlabel, seed)], torch.float64)
            method = resolve_integrator(model)
            started = time.perf_counter()
            with torch.no_grad():
                traj = rollout(model, q0, p0, spec.dt, profile.long_steps, method=method,
                               save_every=save_every)
                h = system.hamiltonian(traj.q, traj.p).numpy()  # [k, n_saved]
            rel = np.abs(h - h0[:, None]) / np.abs(h0[:, None])
            tenth = max(1, rel.shape[1] // 10)
            hundredth = max(1, rel.shape[1] // 100)
            first, last = float(rel[:, 1:tenth + 1].max()), float(rel[:, -tenth:].max())
            t = traj.t.numpy()
            row = {"model": mlabel, "seed": seed, "integrator": method,
                   # a model whose error saturates early shows it here, not in the ratio
                   "first_hundredth_max": float(rel[:, 1:hundredth + 1].max()),
                   "first_tenth_max": first, "last_tenth_max": last,
                   "ratio": last / first if first > 0 else math.inf,
                   "drift_slope": float(np.polyfit(t, rel.mean(0), 1)[0]),
                   "rollout_s": time.perf_counter() - started}
            out["runs"].append(row)
            _log(f"  [long] {mlabel} seed {seed} ({method}): first tenth {first:.3e}, last "
                 f"tenth {last:.3e}, ratio {row['ratio']:.2f}, {row['rollout_s']:.1f} s")
            _write_json(args.json, results)


def format_long(long: dict[str, Any]) -> str:
    """Markdown table of the long-horizon energy behaviour."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in long["runs"]:
        groups.setdefault(r["model"], []).append(r)
    header = ["model", "integrator", "max rel. energy err, first 1/100",
              "max rel. energy err, first tenth",
              "max rel. energy err, last tenth", "last / first", "drift slope (1/time)"]
    rows = [[m, rs[0]["integrator"],
             _fmt_ms(_mean_std([r.get("first_hundredth_max") for r in rs]), ".2e"),
             _fmt_ms(_mean_std([r["first_tenth_max"] for r in rs]), ".2e"),
             _fmt_ms(_mean_std([r["last_tenth_max"] for r in rs]), ".2e"),
             _fmt_ms(_mean_std([r["ratio"] for r in rs]), ".2f"),
             _fmt_ms(_mean_std([r["drift_slope"] for r in rs]), ".2e")]
            for m, rs in groups.items()]
    return "\n\n".join([f"### Long horizon: {LONG_SYSTEM}, {long['steps']} steps "
                        f"(dt = {SYSTEM_SPECS[LONG_SYSTEM].dt:g}), float64",
                        _markdown(header, rows)])


# ----------------------------------------------------------------------------- entry point

SECTIONS: dict[str, tuple[Callable[..., None], Callable[[dict[str, Any], Profile], str]]] = {
    "main": (run_main, lambda r, p: format_main(summarize_main(r["main"], p.horizon),
                                                r["main"]["floors"])),
    "hnn": (run_hnn, lambda r, p: format_hnn(r["hnn"])),
    "long": (run_long, lambda r, p: format_long(r["long"])),
}


def _names(kind: str, registry: dict[str, Any]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        bad = [n for n in names if n not in registry]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {kind} {bad[0]!r}; expected some of: "
                                             f"{', '.join(registry)}")
        return names
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="profile", const="quick",
                      help="reduced run, < 10 minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_const", dest="profile", const="smoke",
                      help="tiny settings for the test (seconds); not a result")
    parser.set_defaults(profile="full")
    parser.add_argument("--sections", type=_names("section", SECTIONS),
                        default=list(SECTIONS), help="comma-separated: main,hnn,long")
    parser.add_argument("--systems", type=_names("system", SYSTEM_SPECS),
                        default=list(SYSTEM_SPECS))
    parser.add_argument("--models", type=_names("model", MODEL_SPECS),
                        default=list(MODEL_SPECS))
    parser.add_argument("--hnn-tasks", type=_names("HNN task", HNN_TASKS),
                        default=list(HNN_TASKS), help="tasks of the hnn section")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds (default: the profile's)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None,
                        help="write every run's numbers here (updated after each run)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the printed tables here")
    parser.add_argument("--report", type=Path, default=None, metavar="JSON",
                        help="only print the tables of a (possibly partial) --json file")
    return parser


def format_results(results: dict[str, Any], sections: Sequence[str]) -> str:
    """The Markdown report of every section present in ``results``."""
    profile = Profile(**{**results["settings"], "seeds": tuple(results["settings"]["seeds"])})
    parts = [SECTIONS[name][1](results, profile) for name in sections if name in results]
    wall = results.get("wall_s")
    parts.append(f"profile {results['profile']}, "
                 + (f"total wall time {wall:.0f} s" if wall is not None else "partial run"))
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected sections, print Markdown tables; return 0."""
    args = build_parser().parse_args(argv)
    if args.report is not None:
        print(format_results(json.loads(args.report.read_text()), list(SECTIONS)))
        return 0
    profile = PROFILES[args.profile]
    if args.seeds is not None:
        profile = dataclasses.replace(profile, seeds=tuple(range(args.seeds)))
    torch.set_num_threads(1)
    results: dict[str, Any] = {"profile": args.profile, "settings": dataclasses.asdict(profile),
                               "torch": torch.__version__}
    started = time.perf_counter()
    for name in args.sections:
        SECTIONS[name][0](args, profile, results)
    results["wall_s"] = time.perf_counter() - started
    _write_json(args.json, results)
    text = format_results(results, args.sections)
    print(text)
    if args.markdown is not None:
        from hamgrad.training.files import atomic_write

        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.markdown, lambda fh: fh.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
