"""Hamiltonian benchmark suite: GradNet Hamiltonians against HNN and Neural ODE, in dB (issue 6).

For every system (pendulum, spring, spring-chain with 10 masses, two-body, three-body, double
pendulum) one dataset is generated with `simulators.generate` (cached under ``--data-dir``), and
every model of `MODEL_SPECS` that applies is trained on it with the same
`hamgrad.training.TrainConfig` (derivative loss, optimiser, epochs, batch) at a matched parameter
budget (every model within ±5 % of the budget, checked), for each seed. Each is then evaluated by
`hamgrad.evaluation.evaluate` on the test split, rolled out with the model's default integrator
for ``horizon`` steps from each test trajectory's first state: derivative error (dB), state
error at 10 / 100 / 1000 steps (dB), max relative error of the true energy, valid prediction
time, and the median wall time per training epoch. Mean ± standard deviation (``ddof=1``) over
seeds. The integrator's own floor (the true Hamiltonian rolled out with the same method and
step) is tabulated separately, and every GradNet variant is compared with the HNN.

The tables are printed as Markdown (and the numbers written to ``--json`` as it goes, so an
interrupted run still leaves its finished rows). The other two questions of issue 6 have their
own scripts: ``bench_hnn_protocol.py`` (the published HNN protocol) and
``bench_long_horizon.py`` (energy over 10^5 steps).

Learning rate: each model's own default (``default_lr``, what ``hamgrad train`` uses), or
with ``--lrs a,b,...`` each (system, model, seed) is trained at every rate and the run with
the lowest validation loss is the one evaluated, the same rule for every model (the test split
never picks it). One rate does not suit every model: BENCHMARKS.md §6.5.

Profiles: ``--smoke`` (seconds; the test), ``--quick`` (minutes on 2 CPU cores: one seed, few
epochs), default = the full run (3 seeds; about half an hour per rate). Usage::

    python scripts/bench_hamiltonian.py --quick
    python scripts/bench_hamiltonian.py --json /tmp/ham_bench/main.json --systems pendulum,spring
    python scripts/bench_hamiltonian.py --report /tmp/ham_bench/main.json  # a partial run's tables
    python scripts/bench_hamiltonian.py --lrs 0.01,0.03,0.1 --json /tmp/ham_bench/lrs.json

Measured tables and their reading: BENCHMARKS.md, sections 5, 6.3 and 6.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _bench

from hamgrad.data import Dataset, load_dataset
from hamgrad.errors import IntegratorError
from hamgrad.models import MODELS, hparams_for_data
from hamgrad.training import TrainingError
from simulators import get_system


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

    def applies(self, separable: bool) -> bool:
        """Whether the variant runs on a system (``separable``: its Hamiltonian is)."""
        return separable or not self.separable_only


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
    """Sizes of one run: data, training, budget and seeds (see the module docstring)."""

    n_train: int
    n_val: int
    n_test: int
    n_steps: int  # steps per training trajectory
    horizon: int  # evaluation rollout steps (stored in the test split)
    epochs: int
    batch_size: int
    budget: int  # parameters per model
    seeds: tuple[int, ...]
    lr: float | None  # None: each model's own `default_lr`


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        n_train=3,
        n_val=1,
        n_test=2,
        n_steps=10,
        horizon=100,
        epochs=2,
        batch_size=16,
        budget=1000,
        seeds=(0,),
        lr=None,
    ),
    "quick": Profile(
        n_train=24,
        n_val=4,
        n_test=8,
        n_steps=100,
        horizon=1000,
        epochs=40,
        batch_size=128,
        budget=1500,
        seeds=(0,),
        lr=None,
    ),
    "full": Profile(
        n_train=100,
        n_val=20,
        n_test=20,
        n_steps=100,
        horizon=1000,
        epochs=100,
        batch_size=256,
        budget=4000,
        seeds=(0, 1, 2),
        lr=None,
    ),
}

STATE_HORIZONS = (10, 100, 1000)


# ----------------------------------------------------------------------------- measuring


def dataset_path(args: argparse.Namespace, profile: Profile, label: str) -> Path:
    """The (cached) dataset of system ``label`` under ``profile``: noise-free, with derivatives,
    the test split ``horizon`` steps long so the evaluation truth is stored."""
    spec = SYSTEM_SPECS[label]
    return _bench.ensure_dataset(
        args.data_dir,
        label,
        {
            "system": spec.system,
            "params": spec.params,
            "dt": spec.dt,
            "n_train": profile.n_train,
            "n_val": profile.n_val,
            "n_test": profile.n_test,
            "n_steps": profile.n_steps,
            "n_steps_test": profile.horizon,
            "noise_std": 0.0,
            "seed": args.data_seed,
        },
    )


def train_model(
    args: argparse.Namespace,
    profile: Profile,
    label: str,
    path: Path,
    mlabel: str,
    hparams: dict[str, Any],
    seed: int,
    lr: float | None = None,
    name: str | None = None,
) -> Path:
    """Train variant ``mlabel`` with ``hparams`` (width included) on system ``label`` at
    rate ``lr`` (None: the model's default) into run ``name`` (default
    ``{system}-{model}-s{seed}``); the run directory."""
    mspec = MODEL_SPECS[mlabel]
    return _bench.train_run(
        path,
        mspec.model,
        hparams,
        args.work_dir / "runs",
        name or f"{label}-{mlabel}-s{seed}",
        loss="derivative",
        epochs=profile.epochs,
        batch_size=profile.batch_size,
        lr=lr,
        schedule="cosine",
        seed=seed,
    )


def _train_and_evaluate(
    args: argparse.Namespace,
    profile: Profile,
    label: str,
    path: Path,
    dataset: Dataset,
    mlabel: str,
    hparams: dict[str, Any],
    n_params: int,
    seed: int,
) -> tuple[dict[str, Any], Any]:
    """Train one (system, model, seed) at every rate of `learning_rates` and evaluate the
    run with the lowest validation loss: ``(row, evaluation or None)``."""
    started = time.perf_counter()
    lrs = learning_rates(args, profile, MODEL_SPECS[mlabel].model)
    base = f"{label}-{mlabel}-s{seed}"
    candidates: dict[str, float | None] = {}
    chosen: tuple[float, float, Path] | None = None
    for lr in lrs:
        # (run names are one path component of [A-Za-z0-9._-]: 1e+06 -> 1e06)
        name = base if len(lrs) == 1 else f"{base}-lr{lr:g}".replace("+", "")
        try:
            run_dir = train_model(args, profile, label, path, mlabel, hparams, seed, lr, name)
        except TrainingError as exc:  # diverged at this rate: a result, not a crash
            _bench.log(f"  {label} {mlabel} seed {seed} lr {lr:g}: {exc}")
            candidates[f"{lr:g}"] = None
            continue
        val = _bench.best_validation_loss(run_dir)
        candidates[f"{lr:g}"] = val
        if chosen is None or val < chosen[0]:
            chosen = (val, lr, run_dir)
    train_s = time.perf_counter() - started
    row: dict[str, Any] = {
        "system": label,
        "model": mlabel,
        "seed": seed,
        "params": n_params,
        "hidden": hparams["hidden"],
        "features": hparams.get("features"),
        "lr_val_loss": candidates,
        "train_s": train_s,
    }
    if chosen is None:
        return {**row, "failed": "training diverged at every learning rate"}, None
    _, lr, run_dir = chosen
    row.update(lr=lr, run_dir=str(run_dir), epoch_s=_bench.epoch_seconds(run_dir))
    try:
        # In the training dtype, as `hamgrad evaluate` does: float32 round-off over 1000
        # steps is far below every model error here.
        ev = _bench.evaluate_metrics(_bench.load(run_dir), dataset, profile.horizon)
    except IntegratorError as exc:
        # A rollout that blows up is a result (the row says so), not a crash.
        _bench.log(f"  {label} {mlabel} seed {seed}: evaluation FAILED: {exc}")
        return {**row, "failed": str(exc)}, None
    m = ev.metrics["model_metrics"]
    row.update(
        integrator=ev.metrics["integrator"],
        derivative_error_db=m["derivative_error_db"],
        state_error_db=m["state_error_db"],
        energy_rel_error_max=m["energy_rel_error_max"],
        vpt_time=m["vpt_time"],
        vpt_censored=m["vpt_censored"],
        eval_s=time.perf_counter() - started - train_s,
    )
    _bench.log(
        f"  {label} {mlabel} seed {seed} (lr {lr:g}): deriv {row['derivative_error_db']:.2f} dB, "
        f"state@100 {m['state_error_db'].get('100', float('nan')):.2f} dB, "
        f"train {train_s:.1f} s, eval {row['eval_s']:.1f} s"
    )
    return row, ev


def learning_rates(args: argparse.Namespace, profile: Profile, model: str) -> tuple[float, ...]:
    """The rates a run of registered ``model`` is trained at: ``--lrs``, else the profile's
    one, else the model's own default."""
    if args.lrs:
        return tuple(args.lrs)
    return (profile.lr if profile.lr is not None else MODELS[model].default_lr,)


def measure(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Train and evaluate every (seed, system, model); fill ``results['main']``.

    Seeds are the outer loop, so a run stopped early still covers every system and model
    (with fewer seeds) rather than a few systems with all seeds.
    """
    out = results.setdefault("main", {"runs": [], "floors": [], "budgets": []})
    # The rates every run was trained at; None: each at its model's own default_lr.
    results["lrs"] = args.lrs or ([profile.lr] if profile.lr is not None else None)
    plan: list[tuple[str, Path, Dataset, list[tuple[str, dict[str, Any], int]]]] = []
    for label in args.systems:
        spec = SYSTEM_SPECS[label]
        system = get_system(spec.system, **spec.params)
        path = dataset_path(args, profile, label)
        dataset = load_dataset(path)
        models = []
        for mlabel in args.models:
            mspec = MODEL_SPECS[mlabel]
            if mspec.applies(system.separable):
                # The input features `train` would choose for this data (pairwise for particles).
                hp = hparams_for_data(
                    mspec.model, mspec.hparams, dataset.system, dataset.system_params
                )
                hidden, n_params = _bench.matched_width(mspec.model, system.dof, profile.budget, hp)
                out["budgets"].append(
                    {
                        "system": label,
                        "model": mlabel,
                        "hidden": hidden,
                        "params": n_params,
                        "budget": profile.budget,
                    }
                )
                models.append((mlabel, {**hp, "hidden": hidden}, n_params))
        plan.append((label, path, dataset, models))
    floors_seen: set[tuple[str, str]] = set()
    for seed in profile.seeds:
        for label, path, dataset, models in plan:
            for mlabel, hparams, n_params in models:
                row, ev = _train_and_evaluate(
                    args, profile, label, path, dataset, mlabel, hparams, n_params, seed
                )
                out["runs"].append(row)
                if (
                    ev is not None
                    and ev.metrics["floor_metrics"] is not None
                    and (label, ev.metrics["integrator"]) not in floors_seen
                ):
                    floors_seen.add((label, ev.metrics["integrator"]))
                    f = ev.metrics["floor_metrics"]
                    out["floors"].append(
                        {
                            "system": label,
                            "integrator": ev.metrics["integrator"],
                            "state_error_db": f["state_error_db"],
                            "energy_rel_error_max": f["energy_rel_error_max"],
                            "vpt_time": f["vpt_time"],
                        }
                    )
                _bench.write_json(args.json, results)


# ----------------------------------------------------------------------------- tables


def _state(r: dict[str, Any], h: int) -> float | None:
    return r["state_error_db"].get(str(h))


def summarize(main: dict[str, Any], horizon: int) -> dict[str, Any]:
    """Aggregate runs over seeds: ``{(system, model): {metric: (mean, std)}}`` as a list."""
    hs = [h for h in STATE_HORIZONS if h <= horizon]
    ms = _bench.mean_std
    rows = []
    for (system, model), all_runs in _bench.group(main["runs"], "system", "model").items():
        runs = [r for r in all_runs if "failed" not in r]
        rows.append(
            {
                "system": system,
                "model": model,
                "params": all_runs[0]["params"],
                "features": all_runs[0].get("features"),
                "integrator": runs[0]["integrator"] if runs else "-",
                "lrs": sorted({r["lr"] for r in runs if "lr" in r}),
                "seeds": len(runs),
                "failed": len(all_runs) - len(runs),
                "derivative_error_db": ms([r["derivative_error_db"] for r in runs]),
                "state_error_db": {str(h): ms([_state(r, h) for r in runs]) for h in hs},
                "energy_rel_error_max": ms([r["energy_rel_error_max"] for r in runs]),
                "vpt_time": ms([r["vpt_time"] for r in runs]),
                "epoch_s": ms([r["epoch_s"] for r in runs]),
            }
        )
    return {"rows": rows, "horizons": hs}


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """GradNet variants against the HNN: dB gains (positive = GradNet better), time ratio."""
    by_key = {(r["system"], r["model"]): r for r in summary["rows"]}
    out = []
    for (system, model), row in by_key.items():
        ref = by_key.get((system, REFERENCE_MODEL))
        if ref is None or not MODEL_SPECS[model].gradnet:
            continue

        def gain(
            get: Callable[[dict[str, Any]], _bench.MeanStd | None],
            row: dict[str, Any] = row,
            ref: dict[str, Any] = ref,
        ) -> float | None:
            a, b = get(ref), get(row)
            return None if a is None or b is None else a[0] - b[0]

        out.append(
            {
                "system": system,
                "model": model,
                "derivative_gain_db": gain(lambda r: r["derivative_error_db"]),
                "state100_gain_db": gain(lambda r: r["state_error_db"].get("100")),
                "epoch_time_ratio": (
                    row["epoch_s"][0] / ref["epoch_s"][0]
                    if row["epoch_s"] and ref["epoch_s"]
                    else None
                ),
            }
        )
    return out


def _f(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def format_main(summary: dict[str, Any], floors: list[dict[str, Any]]) -> str:
    """Markdown: results table, floor table, targets table."""
    fmt_ms, hs = _bench.fmt_ms, summary["horizons"]
    header = [
        "system",
        "model",
        "params",
        "integrator",
        "lr",
        "deriv. err (dB)",
        *[f"state err @{h} (dB)" for h in hs],
        "max rel. energy err",
        "VPT (time)",
        "s/epoch",
    ]
    rows = [
        [
            r["system"],
            r["model"]
            + (f" [{r['features']}]" if r.get("features") not in (None, "affine") else "")
            + (f" ({r['failed']} failed)" if r["failed"] else ""),
            str(r["params"]),
            r["integrator"],
            ", ".join(f"{v:g}" for v in r.get("lrs", [])) or "n/a",
            fmt_ms(r["derivative_error_db"]),
            *[fmt_ms(r["state_error_db"][str(h)]) for h in hs],
            fmt_ms(r["energy_rel_error_max"], ".2e"),
            fmt_ms(r["vpt_time"]),
            fmt_ms(r["epoch_s"], ".3f"),
        ]
        for r in summary["rows"]
    ]
    parts = [
        "### Models (mean ± std over seeds; a single value where one seed ran)",
        _bench.markdown(header, rows),
    ]
    if floors:
        fh = [
            "system",
            "integrator",
            *[f"state err @{h} (dB)" for h in hs],
            "max rel. energy err",
            "VPT (time)",
        ]
        frows = [
            [
                f["system"],
                f["integrator"],
                *[_f(f["state_error_db"].get(str(h)), ".2f") for h in hs],
                _f(f["energy_rel_error_max"], ".2e"),
                _f(f["vpt_time"], ".2f"),
            ]
            for f in floors
        ]
        parts += [
            "### Integrator floor (true Hamiltonian, same method and step)",
            _bench.markdown(fh, frows),
        ]
    targets = _targets(summary)
    if targets:
        th = [
            "system",
            "model",
            f"deriv. gain vs {REFERENCE_MODEL} (dB)",
            f"state@100 gain vs {REFERENCE_MODEL} (dB)",
            f"epoch time / {REFERENCE_MODEL}",
        ]
        trows = [
            [
                t["system"],
                t["model"],
                _f(t["derivative_gain_db"], "+.2f"),
                _f(t["state100_gain_db"], "+.2f"),
                _f(t["epoch_time_ratio"], ".2f"),
            ]
            for t in targets
        ]
        parts += [
            f"### Targets: GradNet variants against {REFERENCE_MODEL} "
            "(gain = HNN dB − GradNet dB; positive: GradNet better)",
            _bench.markdown(th, trows),
        ]
        lines = []
        for model in sorted({t["model"] for t in targets}):
            ts = [t for t in targets if t["model"] == model]
            ahead = sum(
                1
                for t in ts
                if (t["derivative_gain_db"] or -1) > 0 and (t["state100_gain_db"] or -1) > 0
            )
            by6 = sum(
                1
                for t in ts
                if (t["derivative_gain_db"] or 0) >= 6 and (t["state100_gain_db"] or 0) >= 6
            )
            lines.append(
                f"- {model}: ahead of {REFERENCE_MODEL} in both on {ahead}/{len(ts)} "
                f"systems, by >= 6 dB in both on {by6}/{len(ts)}"
            )
        parts.append("\n".join(lines))
        parts += [
            f"### Best GradNet per system against {REFERENCE_MODEL} (issue 11 targets)",
            _format_best(summary),
        ]
    return "\n\n".join(parts)


def _format_best(summary: dict[str, Any]) -> str:
    """Per system, the GradNet variant with the lowest mean state error @100 against the HNN:
    its gain (≥ 6 dB wanted on 4 of 6 systems, never behind by more than 1 dB) and whether its
    max relative energy error is at most the HNN's."""
    by_key = {(r["system"], r["model"]): r for r in summary["rows"]}
    rows, ahead, behind, energy_ok, n = [], 0, 0, 0, 0
    for system in dict.fromkeys(r["system"] for r in summary["rows"]):
        ref = by_key.get((system, REFERENCE_MODEL))
        cands = [
            r
            for (sys_, m), r in by_key.items()
            if sys_ == system and MODEL_SPECS[m].gradnet and r["state_error_db"].get("100")
        ]
        if ref is None or not ref["state_error_db"].get("100") or not cands:
            continue
        best = min(cands, key=lambda r: r["state_error_db"]["100"][0])
        gain = ref["state_error_db"]["100"][0] - best["state_error_db"]["100"][0]
        e_best, e_ref = best["energy_rel_error_max"][0], ref["energy_rel_error_max"][0]
        n += 1
        ahead += gain >= 6
        behind += gain < -1
        energy_ok += e_best <= e_ref
        rows.append(
            [
                system,
                best["model"],
                f"{gain:+.2f}",
                f"{e_best:.2e}",
                f"{e_ref:.2e}",
                "yes" if e_best <= e_ref else "no",
            ]
        )
    table = _bench.markdown(
        [
            "system",
            "best GradNet (state @100)",
            "gain (dB)",
            "its max rel. energy err",
            f"{REFERENCE_MODEL} max rel. energy err",
            "energy ≤ HNN",
        ],
        rows,
    )
    return (
        f"{table}\n\n- ahead by >= 6 dB on {ahead}/{n} systems, behind by > 1 dB on "
        f"{behind}/{n}, max relative energy error <= the HNN's on {energy_ok}/{n}"
    )


def render(results: dict[str, Any]) -> str:
    """The tables of a (possibly partial) results dict."""
    main = results["main"]
    return format_main(summarize(main, results["settings"]["horizon"]), main["floors"])


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = _bench.build_parser(__doc__)
    _bench.add_names(parser, "--systems", "system", SYSTEM_SPECS)
    _bench.add_names(parser, "--models", "model", MODEL_SPECS)
    parser.add_argument(
        "--lrs",
        type=_rates,
        default=None,
        help="comma list of learning rates; each run keeps the one with the lowest "
        "validation loss (default: the profile's single rate)",
    )
    return parser


def _rates(text: str) -> list[float]:
    try:
        rates = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lrs: expected numbers like 0.01,0.03; got {text!r}"
        ) from None
    if not rates or any(not (r > 0 and r < float("inf")) for r in rates):
        raise argparse.ArgumentTypeError(f"--lrs: rates must be positive and finite; got {text!r}")
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite (or ``--report`` a saved one), print Markdown tables; return 0."""
    return _bench.main(build_parser(), PROFILES, measure, render, argv)


if __name__ == "__main__":
    sys.exit(main())
