"""Helpers shared by the Hamiltonian benchmark scripts.

`bench_hamiltonian` (the main suite), `bench_hnn_protocol` and `bench_long_horizon` each answer
one question; this module holds what they have in common: the command line (profiles, output
files, ``--report``), cached datasets, parameter-budget matching, training and loading runs,
evaluation, epoch timing, mean ± std and Markdown tables.
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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hamgrad._atomic import atomic_write
from hamgrad._atomic import write_json as _atomic_write_json
from hamgrad.checkpoint import load_model
from hamgrad.evaluation import Evaluation, evaluate
from hamgrad.models import LearnedModel, get_model
from hamgrad.nets import count_parameters, hidden_for_budget
from hamgrad.run import RunPaths
from hamgrad.training import TrainConfig, train
from simulators import generate, reference_solution, system_from_dataset

BUDGET_TOLERANCE = 0.05  # matched parameter budgets: every model within ±5 %

MeanStd = tuple[float, float | None]


def log(msg: str) -> None:
    """Progress line on stderr (stdout carries only the tables)."""
    print(msg, file=sys.stderr, flush=True)


def add_names(
    parser: argparse.ArgumentParser, option: str, kind: str, registry: dict[str, Any]
) -> None:
    """Option ``option``: comma-separated keys of ``registry`` (default: all); unknown: an error."""

    def parse(text: str) -> list[str]:
        chosen = [n for n in text.split(",") if n]
        bad = [n for n in chosen if n not in registry]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {bad[0]!r}; expected some of: {', '.join(registry)}"
            )
        return chosen

    parser.add_argument(option, type=parse, default=list(registry), help=f"{kind}s to run")


def build_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: profile, seeds, directories, output files."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    for name, text in [
        ("quick", "reduced run (minutes on 2 CPU cores)"),
        ("smoke", "tiny settings for the test (seconds); not a result"),
    ]:
        size.add_argument(f"--{name}", action="store_const", dest="profile", const=name, help=text)
    parser.set_defaults(profile="full")
    parser.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default: the profile's)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write every run's numbers here (updated after each run)",
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the printed tables here"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="JSON",
        help="only print the tables of a (possibly partial) --json file",
    )
    return parser


def main(
    parser: argparse.ArgumentParser,
    profiles: dict[str, Any],
    measure: Callable[[argparse.Namespace, Any, dict[str, Any]], None],
    render: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> int:
    """A script's entry point: parse ``argv``, ``measure`` into a results dict, print ``render``.

    ``measure(args, profile, results)`` runs on one torch thread with the profile named on
    the command line (``seeds`` = ``range(--seeds)`` if given) and fills ``results``. With
    ``--report`` only the tables of a saved (possibly partial) ``--json`` file are printed. The
    last line names the profile and the total wall time. Returns 0.
    """
    args = parser.parse_args(argv)
    if args.report is not None:
        results = json.loads(args.report.read_text())
    else:
        profile = profiles[args.profile]
        if args.seeds is not None:
            profile = dataclasses.replace(profile, seeds=tuple(range(args.seeds)))
        torch.set_num_threads(1)
        results = {
            "profile": args.profile,
            "settings": dataclasses.asdict(profile),
            "torch": torch.__version__,
        }
        started = time.perf_counter()
        measure(args, profile, results)
        results["wall_s"] = time.perf_counter() - started
        write_json(args.json, results)
    wall = results.get("wall_s")
    footer = f"profile {results['profile']}, " + (
        f"total wall time {wall:.0f} s" if wall is not None else "partial run"
    )
    text = f"{render(results)}\n\n{footer}\n"
    print(text)
    if args.markdown is not None:
        atomic_write(args.markdown, lambda fh: fh.write(text.encode()))
    return 0


def write_json(path: Path | None, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically; nothing when ``path`` is None."""
    if path is not None:
        _atomic_write_json(path, obj)


def ensure_dataset(data_dir: Path, label: str, settings: dict[str, Any]) -> Path:
    """Generate (once) the dataset of ``settings`` (kwargs of `simulators.generate`); its path.

    The file name carries a hash of the settings, so a changed profile never reuses stale data.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = data_dir / f"{label}-{digest}.h5"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        kwargs = dict(settings)
        generate(kwargs.pop("system"), path, **kwargs)
        log(f"  generated {path} in {time.perf_counter() - started:.1f} s")
    return path


def matched_width(model: str, dof: int, budget: int, hparams: dict[str, Any]) -> tuple[int, int]:
    """Width ``hidden`` of registered ``model`` closest to ``budget`` parameters: ``(hidden, n)``.

    `hamgrad.nets.hidden_for_budget` with ``tolerance=BUDGET_TOLERANCE``: it raises
    `ConfigError` when no width comes within it, so every model of one comparison matches.
    """

    def build(hidden: int) -> LearnedModel:
        return get_model(model, dof, **hparams, hidden=hidden)

    def count(hidden: int) -> int:
        with torch.device("meta"):
            return count_parameters(build(hidden))

    hidden = hidden_for_budget(build, budget, tolerance=BUDGET_TOLERANCE)
    return hidden, count(hidden)


def train_run(
    data: Path, model: str, hparams: dict[str, Any], runs_dir: Path, name: str, **config: Any
) -> Path:
    """Train with `hamgrad.training.train` (CPU, one thread); return the run directory."""
    cfg = TrainConfig(
        data=str(data),
        model=model,
        model_params=dict(hparams),
        runs_dir=str(runs_dir),
        name=name,
        device="cpu",
        threads=1,
        **config,
    )
    return train(cfg, overwrite=True).run_dir


def history(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics rows (``metrics.jsonl``), one per epoch."""
    lines = RunPaths(run_dir).metrics_log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def epoch_seconds(run_dir: Path) -> float:
    """Median wall time of one training epoch (robust to the other jobs on a shared machine)."""
    return float(statistics.median(row["time_s"] for row in history(run_dir)))


def best_validation_loss(run_dir: Path) -> float:
    """The lowest validation loss of a run's epochs (what its ``best`` checkpoint holds)."""
    return float(min(row["val_loss"] for row in history(run_dir)))


def load(run_dir: Path, dtype: torch.dtype | None = None) -> LearnedModel:
    """The run's best model (in ``dtype`` when given, else its training dtype), eval mode."""
    model, _ = load_model(run_dir, "best")
    return model if dtype is None else model.to(dtype)


def evaluate_metrics(model: LearnedModel, dataset: Any, horizon: int) -> Evaluation:
    """`hamgrad.evaluation.evaluate` against the dataset's own system, with the model's default
    integrator and without the learned-energy plot curve (not a metric here, and ~70 % of an
    evaluation's time for GradNets in our runs)."""
    system = system_from_dataset(dataset)
    return evaluate(
        model,
        dataset,
        system=system,
        truth=partial(reference_solution, system),
        horizon=horizon,
        learned_energy=False,
    )


def group(rows: Sequence[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    """Rows by the values of ``keys`` (e.g. every seed of one system and model), in order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def mean_std(values: Sequence[float | None]) -> MeanStd | None:
    """Mean and sample standard deviation (``ddof=1``; None from a single value)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return float(np.mean(vals)), std


def fmt_ms(ms: MeanStd | None, spec: str = ".2f") -> str:
    """``mean ± std`` (``mean`` alone for one value, ``n/a`` for none)."""
    if ms is None:
        return "n/a"
    mean, std = ms
    if not math.isfinite(mean) or std is None:
        return format(mean, spec) if math.isfinite(mean) else str(mean)
    return f"{mean:{spec}} ± {std:{spec}}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
