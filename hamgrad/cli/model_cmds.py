"""CLI commands for learned models: ``train``, ``rollout``, ``evaluate``, ``plot``.

Thin: parse options, call `hamgrad.training` / `hamgrad.run` / `hamgrad.plotting`, print. The
true system of a dataset is built here, from ``simulators``, and handed to the library: the
CLI is the one place that joins ``hamgrad`` and ``simulators``.
"""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import Any

import click

from hamgrad.cli._app import LazyChoice, main, parse_params, threads_option

#: Dataset used by ``hamgrad train`` without ``--data`` (or a ``data`` key in the TOML file),
#: generated when missing with the settings of ``hamgrad simulate pendulum`` and its defaults,
#: so both routes named in data/README.md give the same file (a test checks they agree).
DEFAULT_DATA = "data/pendulum.h5"
DEFAULT_DATA_SETTINGS: dict[str, Any] = {
    "n_train": 200,
    "n_val": 50,
    "n_test": 50,
    "n_steps": 100,
    "dt": 0.1,
    "noise_std": 0.0,
    "seed": 0,
}


def _models() -> list[str]:
    from hamgrad.models import MODELS

    return list(MODELS)


def _integrators() -> list[str]:
    from hamgrad.integrators.registry import method_names

    return method_names()


def _optimizers() -> list[str]:
    from hamgrad.training import OPTIMIZERS

    return list(OPTIMIZERS)


def _schedules() -> list[str]:
    from hamgrad.training import SCHEDULES

    return list(SCHEDULES)


# Flags that map one-to-one onto `TrainConfig` fields (click name -> field). Defaults are None
# so that only flags given explicitly override the TOML file and the built-in defaults; a
# `bool` field becomes the pair --name/--no-name.
_TRAIN_FLAGS: list[tuple[str, Any, str]] = [
    ("data", str, f"HDF5 dataset [default: {DEFAULT_DATA}, generated if missing]."),
    ("model", LazyChoice(_models), "Model."),
    ("loss", str, "auto | derivative | rollout:K."),
    (
        "integrator",
        LazyChoice(_integrators),
        "Integrator of the rollout loss [default: the model's].",
    ),
    ("substeps", click.IntRange(min=1), "Integrator steps per observation interval."),
    (
        "adjoint",
        bool,
        "Gradients of a rollout:K loss by the adjoint method: exact, memory growing as sqrt(K).",
    ),
    ("optimizer", LazyChoice(_optimizers), "Optimizer."),
    ("lr", float, "Learning rate [default: the model's own, see docs/models.md]."),
    ("weight_decay", float, "Weight decay."),
    ("schedule", LazyChoice(_schedules), "Learning-rate schedule."),
    ("grad_clip", float, "Max gradient norm (0: off)."),
    ("epochs", click.IntRange(min=1), "Epochs."),
    ("batch_size", click.IntRange(min=1), "Samples per optimizer step."),
    ("patience", click.IntRange(min=0), "Early stopping patience in epochs (0: off)."),
    ("dtype", click.Choice(["float32", "float64"]), "Floating-point precision."),
    ("device", click.Choice(["auto", "cpu", "cuda"]), "Device."),
    ("seed", click.IntRange(min=0), "Seed of initialisation and shuffling."),
    ("runs_dir", str, "Parent directory of runs [default: runs]."),
    ("name", str, "Run directory name [default: a timestamp]."),
    ("init", str, "Start from the weights of this run (its best.pt) or checkpoint file."),
    ("threads", click.IntRange(min=0), "CPU threads for torch (0: torch's default) [default: 1]."),
    (
        "buffer_mib",
        click.FloatRange(min=0, min_open=True),
        "MiB of training samples in memory; larger splits stream from the file [default: 256].",
    ),
    (
        "backend",
        click.Choice(["auto", "gloo", "nccl"]),
        "torch.distributed backend under torchrun [default: auto: nccl on cuda, gloo on cpu].",
    ),
    (
        "dist_timeout",
        click.FloatRange(min=0, min_open=True),
        "Seconds a process waits for the others under torchrun [default: 600].",
    ),
]
# Model hyperparameters with their own flags (the rest via --param KEY=VALUE).
_MODEL_FLAGS = [
    ("hidden", click.IntRange(min=1), "Hidden width of the model's networks."),
    ("depth", click.IntRange(min=1), "Layers (cascade, MLP) or modules (modular)."),
]


def _add_options(options):
    def decorate(fn):
        for name, kind, help_text in reversed(options):
            flag = f"--{name.replace('_', '-')}"
            if kind is bool:  # --name/--no-name; None when neither is given
                flag = f"{flag}/--no-{name.replace('_', '-')}"
                kind = None
            fn = click.option(flag, name, type=kind, default=None, help=help_text)(fn)
        return fn

    return decorate


def _integrator_options(fn):
    return click.option(
        "--integrator-option",
        "integrator_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Integrator option, repeatable (e.g. omega=20 for tao2, tol=1e-13 for gauss4).",
    )(fn)


class _Progress:
    """Live one-line progress on a terminal; a line every tenth of the run otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.open_line = False

    def close(self) -> None:
        """End a live line left open (early stopping ends before the last epoch)."""
        if self.open_line:
            click.echo("", err=True)
            self.open_line = False

    def __call__(self, row: dict[str, Any], config: Any) -> None:
        epoch, total = row["epoch"], config.epochs
        val = "n/a" if row["val_loss"] is None else f"{row['val_loss']:.3e}"
        text = (
            f"epoch {epoch:>{len(str(total))}}/{total}  train {row['train_loss']:.3e}  "
            f"val {val}{'  *' if row['best'] else '   '}  {row['time_s']:.2f} s/epoch"
        )
        if self.tty:
            bar = "#" * int(20 * epoch / total)
            click.echo(f"\r[{bar:<20}] {text}", err=True, nl=epoch == total)
            self.open_line = epoch != total
        elif epoch == 1 or epoch == total or epoch % max(1, total // 10) == 0:
            click.echo(text, err=True)


class _StepProgress:
    """``progress(step, total)`` for long rollouts: stderr, every tenth of the way (a live
    line on a terminal). Short rollouts (under `MIN_STEPS`) print nothing."""

    MIN_STEPS = 20_000

    def __init__(self, label: str) -> None:
        self.label, self.shown, self.tty = label, -1, sys.stderr.isatty()

    def __call__(self, step: int, total: int) -> None:
        if total < self.MIN_STEPS:
            return
        tenth = 10 * step // total
        if self.tty:
            click.echo(f"\r{self.label}: step {step}/{total}", err=True, nl=step == total)
        elif tenth != self.shown:
            click.echo(f"{self.label}: step {step}/{total} ({10 * tenth}%)", err=True)
        self.shown = tenth


def _default_dataset(path: str, quiet: bool) -> None:
    """Generate the default pendulum dataset at ``path`` unless it exists."""
    from simulators import generate

    if Path(path).exists():
        return
    if not quiet:
        click.echo(
            f"generating the default dataset {path} (hamgrad simulate pendulum --out {path})",
            err=True,
        )
    # overwrite: under torchrun every rank may get here; they write the same bytes, atomically.
    generate("pendulum", path, overwrite=True, **DEFAULT_DATA_SETTINGS)


@main.command("train")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file of training settings (flags override it).",
)
@_add_options(_TRAIN_FLAGS)
@_add_options(_MODEL_FLAGS)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Model hyperparameter, repeatable (e.g. --param net=gradnet-m).",
)
@_integrator_options
@click.option(
    "--compile/--no-compile",
    "compile",
    default=None,
    help="Compile the loss and its backward with torch.compile (pays off on long runs of small "
    "models; the compile time is logged as compile_s) [default: off].",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    help="Continue the run in this directory from its last checkpoint.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same --name.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train_cmd(
    config_file: str | None,
    params: tuple[str, ...],
    integrator_options: tuple[str, ...],
    resume: str | None,
    overwrite: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train a model; with no options, a GradNet Hamiltonian on the default pendulum data.

    Under torchrun (torchrun --nproc-per-node N -m hamgrad train ...) the N processes train
    one model together; rank 0 writes the run and prints.
    """
    from hamgrad.training import TrainConfig, train
    from hamgrad.training.distributed import env_rank

    quiet = quiet or env_rank() != 0

    overrides = {k: v for k, v in flags.items() if v is not None and k not in ("hidden", "depth")}
    model_params = {k: flags[k] for k in ("hidden", "depth") if flags[k] is not None}
    model_params.update(parse_params(params))
    if model_params:
        overrides["model_params"] = model_params
    if integrator_options:
        overrides["integrator_options"] = parse_params(integrator_options, "--integrator-option")
    config = None
    defaults = {"data": DEFAULT_DATA}
    if config_file is not None:
        config = TrainConfig.from_toml(config_file, overrides, defaults)
    elif resume is None:
        config = TrainConfig.from_layers(defaults, overrides, source="options")
    elif overrides:
        config = TrainConfig(**overrides)  # train() refuses it, naming these settings
    if config is not None and resume is None and config.data == DEFAULT_DATA:
        _default_dataset(DEFAULT_DATA, quiet)
    progress = None if quiet else _Progress()
    started: list[Path] = []

    def on_start(root: Path) -> None:
        started.append(root)
        if not quiet:
            click.echo(f"run directory: {root}", err=True)

    try:
        result = train(
            config, resume=resume, overwrite=overwrite, progress=progress, on_start=on_start
        )
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        if env_rank() != 0:
            sys.exit(130)  # rank 0 says where the run is
        if not started:
            raise click.Abort("interrupted before the run started; nothing was written") from None
        raise click.Abort(
            f"interrupted; run saved at {started[0]} (last finished epoch); "
            f"resume with: hamgrad train --resume {started[0]}"
        ) from None
    finally:
        if progress is not None:
            progress.close()
    if not quiet:
        click.echo(f"run: {result.run_dir}")
        click.echo(
            f"{result.stop_reason} after {result.epochs} epochs; best epoch "
            f"{result.best_epoch}, loss {result.loss} = {result.best_loss:.4e}"
        )


def _method(name: str | None, options: tuple[str, ...]) -> Any:
    """The integrator name, or the resolved `Integrator` when options are given."""
    if not options:
        return name
    from hamgrad.errors import ConfigError
    from hamgrad.integrators import get_integrator

    if name is None:
        raise ConfigError("--integrator-option needs --integrator NAME too")
    return get_integrator(name, **parse_params(options, "--integrator-option"))


def _load_run_data(run: str, data: str | None, split: str) -> Any:
    """The one split a command works on, read into memory (the rest of the file is not)."""
    from hamgrad.data import load_dataset
    from hamgrad.run import run_dataset_path

    return load_dataset(run_dataset_path(run, data), splits=[split])


def _true_system(dataset: Any, trusted: str | None) -> dict[str, Any]:
    """``system`` and ``truth`` for `hamgrad.evaluation.evaluate`, or {} with a note."""
    from hamgrad.errors import HamgradError
    from simulators import reference_solution, system_from_dataset

    if not dataset.system and trusted is None:
        click.echo("note: the dataset names no system: no energy error or floor", err=True)
        return {}
    try:
        system = system_from_dataset(dataset, trusted_system=trusted)
    except HamgradError as exc:
        click.echo(f"note: no true system ({exc}): no energy error or floor", err=True)
        return {}
    return {"system": system, "truth": functools.partial(reference_solution, system)}


def _evaluate(
    run: str,
    data: str | None,
    trusted: str | None,
    integrator: str | None,
    integrator_options: tuple[str, ...],
    **options: Any,
) -> Any:
    from hamgrad.checkpoint import find_checkpoint
    from hamgrad.run import evaluate_run

    find_checkpoint(run)  # a missing run is named before its dataset is looked for
    dataset = _load_run_data(run, data, options.get("split", "test"))
    return evaluate_run(
        run,
        dataset,
        method=_method(integrator, integrator_options),
        progress=_StepProgress("evaluate: model rollout"),
        **_true_system(dataset, trusted),
        **options,
    )


def _system_option(fn):
    return click.option(
        "--system",
        "trusted",
        default=None,
        metavar="MODULE:CLASS|NAME",
        help="The true system, when the dataset names a user class "
        "(module:Class): hamgrad imports code only when told so here.",
    )(fn)


@main.command("rollout")
@click.argument("run", type=click.Path())
@click.option(
    "--data",
    default=None,
    help="Dataset whose initial states to roll out [default: the run's training data].",
)
@click.option("--split", default="test", show_default=True)
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Steps [default: the stored horizon]."
)
@click.option(
    "--integrator",
    type=LazyChoice(_integrators),
    default=None,
    help="Method [default: the model's].",
)
@_integrator_options
@click.option("--substeps", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Output HDF5 [default: RUN/rollout-SPLIT.h5].",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@threads_option
def rollout_cmd(
    run: str,
    data: str | None,
    split: str,
    steps: int | None,
    integrator: str | None,
    integrator_options: tuple[str, ...],
    substeps: int,
    out: str | None,
    overwrite: bool,
) -> None:
    """Roll the model of RUN out from every initial state of a split; write HDF5."""
    from hamgrad.checkpoint import load_model
    from hamgrad.run import predict_split

    model, _ = load_model(run)
    dataset = _load_run_data(run, data, split)
    out_path = Path(out) if out is not None else Path(run) / f"rollout-{split}.h5"
    path = predict_split(
        model,
        dataset,
        out_path,
        split=split,
        n_steps=steps,
        method=_method(integrator, integrator_options),
        substeps=substeps,
        overwrite=overwrite,
        source=str(run),
        progress=_StepProgress("rollout"),
    )
    click.echo(f"wrote {path}")


@main.command("evaluate")
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="Dataset [default: the run's training data].")
@_system_option
@click.option("--split", default="test", show_default=True)
@click.option(
    "--horizon",
    type=click.IntRange(min=1),
    default=None,
    help="Steps to roll out [default: stored; more needs a known system].",
)
@click.option(
    "--integrator",
    type=LazyChoice(_integrators),
    default=None,
    help="Method [default: the model's].",
)
@_integrator_options
@click.option("--substeps", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--threshold",
    type=float,
    default=0.1,
    show_default=True,
    help="Relative state error that ends the valid prediction time.",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@threads_option
def evaluate_cmd(run: str, data: str | None, trusted: str | None, **options: Any) -> None:
    """Evaluate the model of RUN: table on screen, RUN/metrics.json on disk."""
    from hamgrad.report import format_table

    evaluation, paths = _evaluate(run, data, trusted, **options)
    click.echo(format_table(evaluation.metrics))
    click.echo(f"metrics: {paths.evaluation}")


@main.command("plot")
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="Dataset, when RUN has not been evaluated yet.")
@_system_option
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Directory for the PNGs [default: RUN/plots].",
)
@threads_option
def plot_cmd(run: str, data: str | None, trusted: str | None, out: str | None) -> None:
    """Write phase portraits, energy vs time and error vs horizon of RUN as PNGs."""
    from hamgrad._atomic import check_writable
    from hamgrad.checkpoint import find_checkpoint
    from hamgrad.plotting import PLOTS, write_plots
    from hamgrad.run import RunPaths, load_curves

    find_checkpoint(run)
    paths = RunPaths(run)
    out_dir = Path(out) if out is not None else paths.plots
    check_writable(out_dir / next(iter(PLOTS)))  # before any evaluation work
    if paths.curves.exists() and data is None and trusted is None:
        curves = load_curves(paths.curves)
    else:
        curves = _evaluate(run, data, trusted, None, ())[0].curves
    for path in write_plots(curves, out_dir):
        click.echo(f"wrote {path}")
