"""CLI commands for data: ``simulate``, ``join``, ``info``, ``list-systems`` (thin: parse, call)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hamgrad.cli._app import main, parse_params
from hamgrad.errors import ConfigError


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return int(index), int(count)
    except ValueError:
        raise ConfigError(f"--shard must look like INDEX/COUNT (e.g. 0/4), got {text!r}") from None


@main.command("simulate")
@click.argument("system")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output HDF5 file (written atomically).",
)
@click.option("--n-train", default=200, show_default=True, help="Training trajectories.")
@click.option("--n-val", default=50, show_default=True, help="Validation trajectories.")
@click.option("--n-test", default=50, show_default=True, help="Test trajectories.")
@click.option("--steps", default=100, show_default=True, help="Steps per trajectory.")
@click.option(
    "--steps-test", default=None, type=int, help="Steps per test trajectory [default: --steps]."
)
@click.option("--dt", default=0.1, show_default=True, help="Sampling interval.")
@click.option("--noise", default=0.0, show_default=True, help="Observation noise std.")
@click.option("--seed", default=0, show_default=True, help="Base seed.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="System parameter, repeatable (e.g. --param g=9.81).",
)
@click.option("--shard", default=None, metavar="I/N", help="Write only shard I of N.")
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    help="Trajectories per vectorised reference solve.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to simulate in; the file is the same for any number [default: 1, or "
    "all CPUs for the IAS15 step of a large n-body split].",
)
@click.option(
    "--compression",
    type=click.Choice(["none", "gzip", "lzf"]),
    default="none",
    show_default=True,
    help="HDF5 compression of the arrays (recorded in the file; readers need no option).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    system: str,
    out: str,
    n_train: int,
    n_val: int,
    n_test: int,
    steps: int,
    steps_test: int | None,
    dt: float,
    noise: float,
    seed: int,
    params: tuple[str, ...],
    shard: str | None,
    batch_size: int,
    workers: int | None,
    compression: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Simulate SYSTEM (a registry name or module:Class) into an HDF5 dataset.

    --workers N simulates in N processes (whole blocks of --batch-size trajectories each);
    --shard I/N writes one part of the file, for separate jobs; hamgrad join joins the parts.
    Either way the result is the file one process writes, byte for byte.
    """
    from hamgrad._atomic import check_writable
    from hamgrad.errors import DatasetError
    from simulators import generate

    if Path(out).exists() and not overwrite:  # both found before the simulation, not after
        raise DatasetError(f"{out}: file exists; pass --overwrite to replace it")
    check_writable(out)
    path = generate(
        system,
        out,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_steps=steps,
        n_steps_test=steps_test,
        dt=dt,
        noise_std=noise,
        seed=seed,
        overwrite=overwrite,
        params=parse_params(params),
        shard=_parse_shard(shard),
        batch_size=batch_size,
        workers=workers,
        compression=None if compression == "none" else compression,
        progress=not quiet,
    )
    click.echo(f"wrote {path}")


@main.command("info")
@click.argument("path", type=click.Path(dir_okay=False))
def info(path: str) -> None:
    """Print a dataset's attributes, splits, array shapes and storage (validating every value).

    The file is read block by block, so a file larger than memory can be checked.
    """
    from hamgrad.data import open_dataset

    with open_dataset(path) as ds:
        ds.validate()
        click.echo(f"{ds.path}")
        for key, value in ds.attrs.items():
            shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
            click.echo(f"  {key}: {shown}")
        for name, split in ds.splits.items():
            t = split.t
            click.echo(f"  [{name}] n_traj={split.n_traj} n_t={split.n_t} t=[{t[0]:g}, {t[-1]:g}]")
            for field in split.fields:
                shape = [split.n_traj, split.n_t] + ([] if field == "energy" else [ds.dof])
                click.echo(f"    {field}: {shape} float64 ({split.layout(field)})")
            for key, value in split.attrs.items():
                click.echo(f"    {key}: {value}")


@main.command("join")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--compression",
    type=click.Choice(["keep", "none", "gzip", "lzf"]),
    default="keep",
    show_default=True,
    help="Compression of OUT; keep: the shards' own.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def join(out: str, shards: tuple[str, ...], compression: str, overwrite: bool) -> None:
    """Join SHARD files of one simulation into OUT.

    Shards written with 'hamgrad simulate --shard I/N' (e.g. by a cluster's array jobs) may
    be given in any order; OUT is the file the unsharded simulate writes, byte for byte.
    Shards of different systems, parameters, seeds or splits, and gaps or overlaps in the
    shard numbers, are refused. Memory stays bounded: shards are copied block by block.
    """
    from hamgrad.data import concatenate_datasets

    chosen = None if compression == "none" else compression
    path = concatenate_datasets(shards, out, overwrite=overwrite, compression=chosen)
    click.echo(f"wrote {path}")


@main.command("list-systems")
def list_systems() -> None:
    """List the built-in systems with their dof and default parameters."""
    from simulators import ALIASES, SYSTEMS

    aliases = {target: alias for alias, target in ALIASES.items()}
    for name, cls in SYSTEMS.items():
        system = cls()
        alias = f" (alias {aliases[name]})" if name in aliases else ""
        kind = "separable" if system.separable else "non-separable"
        click.echo(f"{name}{alias}: dof={system.dof}, {kind}, params {json.dumps(system.params)}")
