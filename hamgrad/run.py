"""Run directories: where a training run's files live, and the work done on a finished run.

A run directory ``runs/<name>/`` holds:

| file | written | content |
|---|---|---|
| ``config.json`` | at start | resolved training config, model config, dataset record |
| ``metrics.jsonl`` | every epoch | one JSON object per finished epoch |
| ``last.pt`` | every epoch | model + optimizer + scheduler + RNG state: what ``--resume`` reads |
| ``best.pt`` | on improvement | model at the lowest validation loss: what evaluation reads |
| ``metrics.json``, ``evaluation.npz`` | by ``hamgrad evaluate`` | the report and its curves |
| ``plots/`` | by ``hamgrad plot`` | PNG figures |
| ``.lock`` | by ``hamgrad train`` | the PID of the process training in it (see `RunLock`) |

``config.json`` carries ``"format": "hamgrad.run"``: it is what marks a directory as a hamgrad
run, the only kind ``--overwrite`` may empty. Every file is replaced atomically
(`hamgrad._atomic`). This module reads and writes those files
and joins checkpoints, datasets and `hamgrad.evaluation` into the operations the CLI offers
(`evaluate_run`, `predict_split`); the CLI itself only parses and prints.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from hamgrad._atomic import atomic_write, check_writable, write_json
from hamgrad.checkpoint import load_model
from hamgrad.data import Dataset, DatasetReader, Split, write_dataset
from hamgrad.errors import CheckpointError, ConfigError, DatasetError, check_int
from hamgrad.evaluation import Evaluation, check_dof, evaluate, rollout_numpy
from hamgrad.integrators import Integrator
from hamgrad.models import LearnedModel

__all__ = [
    "RUN_FORMAT",
    "RunLock",
    "RunPaths",
    "check_run_name",
    "claim_run_dir",
    "dataset_record",
    "evaluate_run",
    "is_run_dir",
    "load_curves",
    "predict_split",
    "read_run_config",
    "run_dataset_path",
    "save_evaluation",
]


#: The ``format`` entry of ``config.json`` that marks a hamgrad run directory.
RUN_FORMAT = "hamgrad.run"
_RUN_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class RunPaths:
    """Named paths inside a run directory (nothing is created by building one)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.lock = self.root / ".lock"
        self.config = self.root / "config.json"
        self.metrics_log = self.root / "metrics.jsonl"
        self.last = self.root / "last.pt"
        self.best = self.root / "best.pt"
        self.evaluation = self.root / "metrics.json"
        self.curves = self.root / "evaluation.npz"
        self.plots = self.root / "plots"


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a run directory, checked to be a JSON object.

    Raises
    ------
    CheckpointError
        Missing, not JSON, or not an object.
    """
    path = RunPaths(run_dir).config
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found; expected a run directory written by hamgrad train"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc}); expected the file hamgrad train wrote"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(config).__name__}; expected an object "
            "(the file hamgrad train wrote)"
        )
    return config


def check_run_name(name: str) -> str:
    """A run name is one path component: letters, digits, ``-``, ``_``, ``.``; not ``.``/``..``.

    Raises
    ------
    ConfigError
        Anything else (``..`` would put the run, and ``--overwrite``, outside the runs
        directory).
    """
    if not isinstance(name, str) or not _RUN_NAME.match(name) or name in (".", ".."):
        raise ConfigError(
            f"run name must be one path component of letters, digits, '-', '_' "
            f"and '.', other than '.' and '..'; got {name!r}"
        )
    return name


def is_run_dir(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a ``config.json`` written by ``hamgrad train``.

    Version 0.1 wrote no ``format`` entry; its configs are recognised by their sections.
    """
    try:
        config = read_run_config(root)
    except CheckpointError:
        return False
    return config.get("format") == RUN_FORMAT or {"train", "model", "resolved"} <= set(config)


class RunLock:
    """An exclusive lock on a run directory for the life of one ``train`` (or ``--resume``).

    An advisory ``flock`` on ``<run>/.lock``, which also records the holder's PID. The
    operating system releases the lock when its process dies, however it dies, so a lock left
    by a killed process is taken over by the next one without any staleness guess; the file
    itself stays (deleting it could let two processes lock two different files).

    Raises
    ------
    ConfigError
        On entry, when another live process holds the lock (the message names its PID).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.paths = RunPaths(root)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise ConfigError(
                f"run directory {self.paths.root} is in use by process {holder} "
                "(another hamgrad train); expected that run to finish first, or "
                "another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextmanager
def claim_run_dir(root: str | os.PathLike, overwrite: bool = False) -> Iterator[RunLock]:
    """Create ``root`` if needed and hold its lock for a new run, as a context manager.

    An existing directory is used when it is empty (a lock file aside); with ``overwrite`` a
    hamgrad run directory is emptied first, while the lock is held. Nothing that is not a
    hamgrad run is ever removed.

    Raises
    ------
    ConfigError
        ``root`` is not creatable, holds files without ``overwrite``, is not a hamgrad run
        (with ``overwrite``), or another process trains in it.
    """
    paths = RunPaths(root)
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create run directory {paths.root}: {exc.strerror or exc}; "
            "expected a writable location (see --runs-dir)"
        ) from None
    with RunLock(paths.root) as lock:
        entries = [e for e in paths.root.iterdir() if e != paths.lock]
        if entries and not overwrite:
            raise ConfigError(
                f"run directory {paths.root} already exists; expected a new "
                "--name, --resume to continue it, or --overwrite to replace it"
            )
        if entries and not is_run_dir(paths.root):
            raise ConfigError(
                f"{paths.root} is not a hamgrad run directory (no config.json "
                "written by hamgrad train); --overwrite only replaces runs, "
                "expected another --name"
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        yield lock


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_record(dataset: Dataset | DatasetReader) -> dict[str, Any]:
    """What a run records of its dataset: absolute path, content hash and a summary.

    The absolute path lets ``evaluate`` and ``--resume`` find the data from any working
    directory; the SHA-256 tells them when the file has changed since training.
    """
    return {
        "path": str(Path(dataset.path).resolve()),
        "sha256": _sha256(Path(dataset.path)),
        "dof": dataset.dof,
        "dt": dataset.dt,
        "system": dataset.system,
        "system_params": dataset.system_params,
        "splits": sorted(dataset.splits),
    }


def run_dataset_path(
    run_dir: str | os.PathLike, data: str | os.PathLike | None = None, *, verify: bool = True
) -> Path:
    """``data`` if given, else the dataset the run was trained on (checked unchanged).

    ``verify=False`` skips the content hash (reading the whole file); the distributed trainer
    lets one rank verify for all.

    Raises
    ------
    CheckpointError
        The run's config records no dataset.
    DatasetError
        The recorded file is gone or its content hash differs from the one recorded.
    """
    if data is not None:
        return Path(data)
    record = read_run_config(run_dir).get("dataset")
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise CheckpointError(
            f"{RunPaths(run_dir).config} records no dataset path; expected "
            "--data to say which dataset to use"
        )
    path = Path(record["path"])
    if not path.is_file():
        raise DatasetError(
            f"{path}: the run's dataset is gone; expected the file the run was "
            "trained on, or --data"
        )
    expected = record.get("sha256")
    if verify and expected is not None and _sha256(path) != expected:
        raise DatasetError(
            f"{path}: changed since the run was trained (SHA-256 differs from "
            "the one in config.json); expected the same file, or --data to "
            "use this one anyway"
        )
    return path


def save_evaluation(evaluation: Evaluation, paths: RunPaths) -> None:
    """Write ``metrics.json`` and the curves (``evaluation.npz``) atomically, curves first.

    Both are computed before anything is written, so a failed evaluation leaves earlier
    results untouched.
    """
    savez: Any = np.savez  # numpy's stub maps **arrays onto its keyword allow_pickle
    atomic_write(paths.curves, lambda fh: savez(fh, **evaluation.curves))
    write_json(paths.evaluation, evaluation.metrics)


def load_curves(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Curves saved by `save_evaluation` (no pickles: ``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except OSError:
        raise
    except Exception as exc:  # BadZipFile, pickled object arrays, truncated members, ...
        raise CheckpointError(
            f"{path}: evaluation curves could not be read "
            f"({type(exc).__name__}); rerun hamgrad evaluate"
        ) from None


def evaluate_run(
    run_dir: str | os.PathLike, dataset: Dataset, **options: Any
) -> tuple[Evaluation, RunPaths]:
    """Evaluate the best checkpoint of a run on ``dataset``; write the report into the run.

    ``options`` are those of `hamgrad.evaluation.evaluate` (``system``, ``truth``,
    ``horizon``, ``method``, ...). Returns the evaluation and the run's paths.
    """
    model, _ = load_model(run_dir)
    evaluation = evaluate(model, dataset, **options)
    paths = RunPaths(run_dir)
    save_evaluation(evaluation, paths)
    return evaluation, paths


def predict_split(
    model: LearnedModel,
    dataset: Dataset,
    out: str | os.PathLike,
    *,
    split: str = "test",
    n_steps: int | None = None,
    method: str | Integrator | None = None,
    substeps: int = 1,
    overwrite: bool = False,
    source: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Roll ``model`` out from every first state of ``split``; write the predictions as HDF5.

    The file follows `hamgrad.data` format version 1 with one split of the same name holding
    ``t``, ``q``, ``p`` ``[n_traj, n_steps + 1, dof]``. It records the model, integrator,
    source dataset and run (``source``) as attributes, and deliberately no ``system``: the
    predictions are not the system's trajectories.

    Raises
    ------
    DatasetError
        Missing split, ``dof`` mismatch, existing ``out`` without ``overwrite``, or a
        non-finite prediction (the writer refuses NaN).
    IntegratorError
        The integrator does not apply to the model.
    """
    data_split = dataset.split(split)
    check_dof(model, dataset)
    integrator = model.integrator(method)
    n = data_split.n_t - 1 if n_steps is None else check_int("steps", n_steps)
    if Path(out).exists() and not overwrite:  # found now, not after the rollout
        raise DatasetError(f"{out}: file exists; pass overwrite=True (--overwrite) to replace")
    check_writable(out)
    substeps = check_int("substeps", substeps)
    parameter = next(model.parameters())
    q, p, _ = rollout_numpy(
        model,
        data_split.q[:, 0],
        data_split.p[:, 0],
        dataset.dt,
        n,
        integrator,
        substeps,
        parameter.dtype,
        parameter.device,
        progress=progress,
    )
    attrs = {
        "dof": dataset.dof,
        "dt": dataset.dt,
        "source_dataset": str(dataset.path),
        "rollout_of": source,
        "model": json.dumps(model.config(), sort_keys=True),
        "integrator": integrator.name,
        "substeps": substeps,
    }
    t = dataset.dt * np.arange(n + 1, dtype=np.float64)
    return write_dataset(out, {split: Split(t=t, q=q, p=p)}, attrs, overwrite=overwrite)
