"""CLI commands for learned models: ``train``, ``rollout``, ``evaluate``, ``plot``.

Thin wrappers: parse options, call `hamgrad.training` / `hamgrad.evaluation` /
`hamgrad.plotting`, print. Errors are `HamgradError`s, which the group turns into one line
and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hamgrad.cli import main, parse_params
from hamgrad.errors import ConfigError

# Flags that map one-to-one onto `TrainConfig` fields (click name -> field). Defaults are None
# so that only flags given explicitly override the TOML file and the built-in defaults.
_TRAIN_FLAGS: list[tuple[str, type | click.ParamType, str]] = [
    ("data", str, "HDF5 dataset [default: data/pendulum.h5, generated if missing]."),
    ("model", str, "Model name (gradnet, separable-gradnet, hnn, neural-ode)."),
    ("loss", str, "auto | derivative | rollout:K."),
    ("integrator", str, "Integrator of the rollout loss [default: the model's]."),
    ("substeps", int, "Integrator steps per observation interval (rollout loss)."),
    ("optimizer", str, "adam | adamw."),
    ("lr", float, "Learning rate."),
    ("weight_decay", float, "Weight decay."),
    ("schedule", str, "constant | cosine."),
    ("grad_clip", float, "Max gradient norm (0: off)."),
    ("epochs", int, "Epochs."),
    ("batch_size", int, "Samples per optimizer step."),
    ("patience", int, "Early stopping patience in epochs (0: off)."),
    ("dtype", click.Choice(["float32", "float64"]), "Floating-point precision."),
    ("device", click.Choice(["auto", "cpu", "cuda"]), "Device."),
    ("seed", int, "Seed of initialisation and shuffling."),
    ("runs_dir", str, "Parent directory of runs [default: runs]."),
    ("name", str, "Run directory name [default: a timestamp]."),
    ("threads", int, "CPU threads for torch (0: torch's default) [default: 1]."),
]
# Model hyperparameters with their own flags (the rest via --param KEY=VALUE).
_MODEL_FLAGS = [("hidden", int, "Hidden width of the model's networks."),
                ("depth", int, "Layers (cascade) or modules (modular) of the networks.")]


def _add_options(options):
    def decorate(fn):
        for name, kind, help_text in reversed(options):
            fn = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None,
                              help=help_text)(fn)
        return fn
    return decorate


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
        text = (f"epoch {epoch:>{len(str(total))}}/{total}  train {row['train_loss']:.3e}  "
                f"val {val}{'  *' if row['best'] else '   '}  {row['time_s']:.2f} s/epoch")
        if self.tty:
            bar = "#" * int(20 * epoch / total)
            click.echo(f"\r[{bar:<20}] {text}", err=True, nl=epoch == total)
            self.open_line = epoch != total
        elif epoch == 1 or epoch == total or epoch % max(1, total // 10) == 0:
            click.echo(text, err=True)


@main.command("train")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of training settings (flags override it).")
@_add_options(_TRAIN_FLAGS)
@_add_options(_MODEL_FLAGS)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Model hyperparameter, repeatable (e.g. --param net=gradnet-m).")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same --name.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train_cmd(config_file: str | None, params: tuple[str, ...], resume: str | None,
              overwrite: bool, quiet: bool, **flags: Any) -> None:
    """Train a model; with no options, a GradNet Hamiltonian on the default pendulum data."""
    from hamgrad.training import TrainConfig, train

    overrides = {k: v for k, v in flags.items() if v is not None and k not in ("hidden", "depth")}
    model_params = {k: flags[k] for k in ("hidden", "depth") if flags[k] is not None}
    model_params.update(parse_params(params))
    if model_params:
        overrides["model_params"] = model_params
    if resume is not None:
        if overrides or config_file:
            given = ", ".join(sorted(overrides)) or "--config"
            raise ConfigError(f"--resume continues with the run's saved config; got also "
                              f"{given}; expected --resume alone")
        config = None
    elif config_file is not None:
        config = TrainConfig.from_toml(config_file, overrides)
    else:
        config = TrainConfig.from_mapping(overrides, source="options")
    progress = None if quiet else _Progress()
    try:
        result = train(config, resume=resume, overwrite=overwrite, progress=progress,
                       on_start=lambda root: click.echo(f"run directory: {root}", err=True))
    finally:
        if progress is not None:
            progress.close()
    click.echo(f"run: {result.run_dir}")
    click.echo(f"{result.stop_reason} after {result.epochs} epochs; best epoch "
               f"{result.best_epoch}, loss {result.loss} = {result.best_loss:.4e}")


def _threads_option(fn):
    """``--threads N`` (default 1, as for training); applied before the command runs."""
    def apply(ctx: click.Context, _param: click.Parameter, value: int) -> int:
        if value < 0:
            raise click.BadParameter(f"must be >= 0, got {value}")
        if value:
            import torch

            torch.set_num_threads(value)
        return value
    return click.option("--threads", type=int, default=1, show_default=True, expose_value=False,
                        callback=apply, help="CPU threads for torch (0: torch's default).")(fn)


def _data_path(run: str, data: str | None) -> str:
    """``--data`` or, when omitted, the dataset the run was trained on."""
    if data is not None:
        return data
    from hamgrad.training import read_run_config

    return read_run_config(run)["train"]["data"]


@main.command("rollout")
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="Dataset whose initial states to roll out "
              "[default: the run's training data].")
@click.option("--split", default="test", show_default=True)
@click.option("--steps", type=int, default=None, help="Steps [default: the stored horizon].")
@click.option("--integrator", default=None, help="Method [default: the model's].")
@click.option("--substeps", type=int, default=1, show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output HDF5 [default: RUN/rollout-SPLIT.h5].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@_threads_option
def rollout_cmd(run: str, data: str | None, split: str, steps: int | None,
                integrator: str | None, substeps: int, out: str | None, overwrite: bool) -> None:
    """Roll the model of RUN out from every initial state of a split; write HDF5."""
    from hamgrad.data import load_dataset
    from hamgrad.evaluation import predict_split
    from hamgrad.training import load_model

    model, _ = load_model(run)
    dataset = load_dataset(_data_path(run, data))
    out_path = Path(out) if out is not None else Path(run) / f"rollout-{split}.h5"
    path = predict_split(model, dataset, out_path, split=split, n_steps=steps,
                         integrator=integrator, substeps=substeps, overwrite=overwrite,
                         source=str(run))
    click.echo(f"wrote {path}")


def _run_evaluation(run: str, data: str | None, **options: Any):
    from hamgrad.data import load_dataset
    from hamgrad.evaluation import evaluate, save_evaluation
    from hamgrad.training import RunPaths, load_model

    model, _ = load_model(run)
    dataset = load_dataset(_data_path(run, data))
    evaluation = evaluate(model, dataset, **options)
    paths = RunPaths(run)
    save_evaluation(evaluation, paths.evaluation, paths.curves)
    return evaluation, paths


@main.command("evaluate")
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="Dataset [default: the run's training data].")
@click.option("--split", default="test", show_default=True)
@click.option("--horizon", type=int, default=None,
              help="Steps to roll out [default: stored; more needs a known system].")
@click.option("--integrator", default=None, help="Method [default: the model's].")
@click.option("--substeps", type=int, default=1, show_default=True)
@click.option("--threshold", type=float, default=0.1, show_default=True,
              help="Relative state error that ends the valid prediction time.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@_threads_option
def evaluate_cmd(run: str, data: str | None, **options: Any) -> None:
    """Evaluate the model of RUN: table on screen, RUN/metrics.json on disk."""
    from hamgrad.evaluation import format_table

    evaluation, paths = _run_evaluation(run, data, **options)
    click.echo(format_table(evaluation.metrics))
    click.echo(f"metrics: {paths.evaluation}")


@main.command("plot")
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="Dataset, when RUN has not been evaluated yet.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Directory for the PNGs [default: RUN/plots].")
@_threads_option
def plot_cmd(run: str, data: str | None, out: str | None) -> None:
    """Write phase portraits, energy vs time and error vs horizon of RUN as PNGs."""
    from hamgrad.evaluation import load_curves
    from hamgrad.plotting import write_plots
    from hamgrad.training import RunPaths, find_checkpoint

    find_checkpoint(run)
    paths = RunPaths(run)
    if paths.curves.exists() and data is None:
        curves = load_curves(paths.curves)
    else:
        curves = _run_evaluation(run, data)[0].curves
    for path in write_plots(curves, out if out is not None else paths.plots):
        click.echo(f"wrote {path}")
