"""The training loop: `train(config) -> TrainResult`, with checkpoints, early stopping, resume.

Reproducibility: the initial weights and the shuffling come from one ``torch.Generator`` seeded
by ``config.seed``; ``last.pt`` stores the model, optimizer, scheduler and that generator's state
after every epoch, so ``train(..., resume=True)`` continues with exactly the state an
uninterrupted run would have had (same final weights on CPU; tested).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hamgrad._atomic import write_json, write_jsonl
from hamgrad._device import DTYPES, resolve_device, set_threads
from hamgrad._resources import check_memory
from hamgrad.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from hamgrad.data import Dataset, load_dataset
from hamgrad.errors import CheckpointError, ConfigError, HamgradError
from hamgrad.models import LearnedModel, get_model
from hamgrad.nets import count_parameters
from hamgrad.run import (
    RUN_FORMAT,
    RunLock,
    RunPaths,
    claim_run_dir,
    dataset_record,
    read_run_config,
    run_dataset_path,
)
from hamgrad.training.config import OPTIMIZERS, SCHEDULES, TrainConfig
from hamgrad.training.losses import Loss, RolloutLoss, SampleSet, build_loss

__all__ = ["TrainResult", "TrainingError", "train"]

# Validation batches only need forward passes, so they can be larger than training batches.
_EVAL_BATCH = 8192
# Early stopping: relative validation gain below which an epoch counts as "no improvement".
_MIN_REL_IMPROVEMENT = 1e-4


class TrainingError(HamgradError):
    """Training could not continue (e.g. the loss became non-finite)."""


@dataclass
class TrainResult:
    """Outcome of `train`.

    Attributes
    ----------
    run_dir : Path
        The run directory.
    epochs : int
        Last finished epoch (counting from 1).
    best_epoch : int
        Epoch of ``best.pt``.
    best_loss : float
        Its validation loss (training loss when the data has no validation split).
    stop_reason : str
        ``"completed"`` or ``"early stopping"``.
    loss : str
        The resolved loss spec (``derivative`` / ``rollout:K``).
    """

    run_dir: Path
    epochs: int
    best_epoch: int
    best_loss: float
    stop_reason: str
    loss: str


ProgressFn = Callable[[dict[str, Any], TrainConfig], None]


@dataclass
class _TrainState:
    """Where training stands after an epoch: what ``last.pt`` holds besides the tensors.

    ``history`` is the metrics row of every finished epoch. ``metrics.jsonl`` is written from
    it after each checkpoint, so the log and the checkpoint always agree: after any
    interruption and ``--resume`` the log has every epoch exactly once, in order.
    """

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_checkpoint(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], path: Path, epochs: int) -> _TrainState:
        """Read and check the state of ``last.pt``; a version-0.1 checkpoint has no history."""
        try:
            state = cls(
                epoch=ckpt["epoch"],
                best_loss=float(ckpt["best_loss"]),
                best_epoch=ckpt["best_epoch"],
                bad_epochs=ckpt["bad_epochs"],
                history=list(ckpt.get("history", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path} cannot be resumed: {type(exc).__name__} "
                f"{exc}; expected the last.pt hamgrad train wrote"
            ) from None
        for name in ("epoch", "best_epoch", "bad_epochs"):
            value = getattr(state, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= epochs:
                raise CheckpointError(
                    f"checkpoint {path}: {name} is {value!r}; expected an "
                    f"integer in 0..{epochs} (the run's epochs)"
                )
        return state


def _legacy_history(paths: RunPaths, epoch: int) -> list[dict[str, Any]]:
    """The metrics rows of a version-0.1 run (whose last.pt holds none), up to ``epoch``."""
    if not paths.metrics_log.exists():
        return []
    rows = []
    for number, line in enumerate(paths.metrics_log.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            keep = row["epoch"] <= epoch
        except (json.JSONDecodeError, TypeError, KeyError):
            raise CheckpointError(
                f"{paths.metrics_log}, line {number}: not a metrics row; "
                "expected one JSON object per epoch"
            ) from None
        if keep:
            rows.append(row)
    return rows


def _mean_loss(loss_fn: Loss, model: LearnedModel, samples: SampleSet) -> float:
    """Sample-weighted mean loss over a whole split, without gradients."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in samples.batches(_EVAL_BATCH):
            n = next(iter(batch.values())).shape[0]
            total += float(loss_fn(model, batch)) * n
            count += n
    return total / max(count, 1)


def _resolved_config(
    config: TrainConfig, model: LearnedModel, loss: Loss, dataset: Dataset, device: torch.device
) -> dict[str, Any]:
    integrator = loss.integrator if isinstance(loss, RolloutLoss) else None
    return {
        "format": RUN_FORMAT,
        "format_version": 1,
        "train": config.to_dict(),
        "resolved": {
            "loss": loss.spec,
            "integrator": None if integrator is None else integrator.name,
            "integrator_options": None if integrator is None else integrator.options(),
            "device": str(device),
            "torch": torch.__version__,
        },
        "model": model.config(),
        "dataset": dataset_record(dataset),
    }


def _run_root(config: TrainConfig) -> Path:
    """``runs_dir/name``, or ``runs_dir/<timestamp>`` (made unique) when no name is given."""
    base = Path(config.runs_dir)
    if config.name is not None:
        return base / config.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root, i = base / stamp, 1
    while root.exists():
        root, i = base / f"{stamp}-{i}", i + 1
    return root


def _restore(
    ckpt: dict[str, Any],
    path: Path,
    model: LearnedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
) -> None:
    """Load ``last.pt`` into the freshly built objects; any mismatch is a `CheckpointError`."""
    try:
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        generator.set_state(ckpt["rng_state"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed ({first}); expected the "
            "last.pt hamgrad train wrote for this run"
        ) from None


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    on_start: Callable[[Path], None] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a model; write the run directory; return where it went and how it ended.

    The run directory is locked (`hamgrad.run.RunLock`) for the whole call: a second
    ``train`` on it, with or without ``overwrite``, is refused with the holder's PID.

    Parameters
    ----------
    config : TrainConfig, optional
        What to train; ``config.data`` must name an existing dataset. Must be None when
        resuming.
    resume : path, optional
        Run directory to continue from its ``last.pt`` with its saved ``config.json`` (and the
        dataset recorded there, checked unchanged).
    overwrite : bool
        Replace an existing run of the same name (only a hamgrad run directory is emptied).
    progress : callable, optional
        Called after each epoch with the metrics row and the config (for a progress bar).
    on_start : callable, optional
        Called with the run directory once it exists, before the first epoch.
    on_epoch_end : callable, optional
        Called with the epoch number after its checkpoint is written (tests use it to simulate
        an interruption).

    Raises
    ------
    ConfigError, DatasetError, IntegratorError, CheckpointError
        Bad configuration or input, before anything is written.
    TrainingError
        The loss became non-finite; ``last.pt`` keeps the last good epoch.
    """
    if resume is not None:
        if config is not None:
            raise ConfigError(
                f"resume continues with the run's saved config.json; got new "
                f"settings too ({', '.join(config.changed_fields())}); expected "
                "resume alone"
            )
        saved = read_run_config(resume)
        config = TrainConfig.from_mapping(saved.get("train", {}), source=f"{resume}/config.json")
        config.data = str(run_dataset_path(resume))
    if config is None:
        raise ConfigError("train needs a TrainConfig (with data = the dataset path) or resume")
    config.validate()
    set_threads(config.threads)
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    dataset = load_dataset(str(config.data))  # validate() checked it is a path
    train_split = dataset.split("train")

    _check_model_size(config, dataset.dof, dtype)
    generator = torch.Generator().manual_seed(config.seed)
    model = get_model(config.model, dataset.dof, generator=generator, **config.model_params)
    # Cast first: statistics fitted into float32 buffers and then cast to float64 would carry
    # float32 rounding into a float64 run.
    model.to(device=device, dtype=dtype)
    model.fit_normalization(train_split, dataset.dt)
    if config.init is not None and resume is None:
        _load_init(model, config.init)
    loss_fn = build_loss(
        config.loss,
        model,
        train_split,
        dataset.dt,
        config.integrator,
        config.substeps,
        adjoint=config.adjoint,
        **config.integrator_options,
    )
    train_set = loss_fn.samples(train_split, dtype, device)
    val_split = dataset.splits.get("val")
    val_set = loss_fn.samples(val_split, dtype, device) if val_split is not None else None
    optimizer = OPTIMIZERS[config.optimizer](
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = SCHEDULES[config.schedule](optimizer, config)

    run = RunLock(resume) if resume is not None else claim_run_dir(_run_root(config), overwrite)
    with run as lock:
        paths = lock.paths
        if resume is not None and paths.last.exists():
            ckpt = load_checkpoint(paths.last)
            state = _TrainState.from_checkpoint(ckpt, paths.last, config.epochs)
            _restore(ckpt, paths.last, model, optimizer, scheduler, generator)
            if "history" not in ckpt:
                state.history = _legacy_history(paths, state.epoch)
            write_jsonl(paths.metrics_log, state.history)  # repairs a log cut by a kill
        elif resume is not None:
            # Interrupted before its first checkpoint: everything is rebuilt from the seed
            # exactly as a fresh run would, so starting over is the exact continuation.
            state = _TrainState()
            write_jsonl(paths.metrics_log, state.history)
        else:
            state = _TrainState()
            write_json(paths.config, _resolved_config(config, model, loss_fn, dataset, device))
        if on_start is not None:
            on_start(paths.root)
        stop_reason = "completed"
        for epoch in range(state.epoch + 1, config.epochs + 1):
            started = time.perf_counter()
            train_loss = _train_epoch(
                model, loss_fn, train_set, optimizer, config, generator, epoch, paths
            )
            model.eval()
            val_loss = _mean_loss(loss_fn, model, val_set) if val_set is not None else None
            if val_loss is not None and not math.isfinite(val_loss):
                raise TrainingError(
                    f"validation loss became non-finite at epoch {epoch}; stopped, "
                    f"last good checkpoint kept at {paths.last}"
                )
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()

            monitored = val_loss if val_loss is not None else train_loss
            improved = monitored < state.best_loss
            # Patience counts epochs without a *meaningful* gain: a relative improvement below
            # _MIN_REL_IMPROVEMENT still updates best.pt but does not reset the count.
            significant = monitored < state.best_loss * (1 - _MIN_REL_IMPROVEMENT)
            state.epoch = epoch
            state.bad_epochs = 0 if significant else state.bad_epochs + 1
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "best": improved,
                "time_s": time.perf_counter() - started,
            }
            state.history.append(row)
            if improved:
                state.best_loss, state.best_epoch = monitored, epoch
                save_checkpoint(paths.best, model, epoch=epoch, loss=monitored)
            save_checkpoint(
                paths.last,
                model,
                optimizer_state=optimizer.state_dict(),
                scheduler_state=scheduler.state_dict(),
                rng_state=generator.get_state(),
                **state.as_checkpoint(),
            )
            write_jsonl(paths.metrics_log, state.history)
            if progress is not None:
                progress(row, config)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if config.patience and val_set is not None and state.bad_epochs >= config.patience:
                stop_reason = "early stopping"
                break

    return TrainResult(
        run_dir=paths.root,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_loss=state.best_loss,
        stop_reason=stop_reason,
        loss=loss_fn.spec,
    )


def _load_init(model: LearnedModel, init: str) -> None:
    """Start from the weights (and normalisation) of run or checkpoint ``init``."""
    path = find_checkpoint(init, "best")
    ckpt = load_checkpoint(path)
    try:
        saved = json.loads(ckpt["model_config"])
    except (TypeError, json.JSONDecodeError):
        saved = None
    if saved != model.config():
        raise CheckpointError(
            f"init checkpoint {path} holds model {saved}; expected the model of this run, "
            f"{model.config()}"
        )
    try:
        model.load_state_dict(ckpt["model_state"])  # copies into this run's dtype and device
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"init checkpoint {path}: weights do not fit ({first})") from None


def _check_model_size(config: TrainConfig, dof: int, dtype: torch.dtype) -> None:
    """Refuse a model too large for memory from its shape alone (built on the meta device)."""
    with torch.device("meta"):
        n = count_parameters(get_model(config.model, dof, **config.model_params))
    # weights, gradients and Adam's two moments
    nbytes = 4 * n * torch.empty((), dtype=dtype).element_size()
    check_memory(
        f"model {config.model!r} with {n:,} parameters",
        nbytes,
        "use a smaller hidden width or depth",
    )


def _train_epoch(
    model: LearnedModel,
    loss_fn: Loss,
    samples: SampleSet,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    generator: torch.Generator,
    epoch: int,
    paths: RunPaths,
) -> float:
    """One pass over the shuffled training samples; returns the sample-weighted mean loss."""
    model.train()
    total, count = 0.0, 0
    for step, batch in enumerate(samples.batches(config.batch_size, generator)):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        value = loss.item()  # the step's one host sync
        if not math.isfinite(value):
            kept = (
                f"last good checkpoint kept at {paths.last}"
                if paths.last.exists()
                else "no checkpoint was written"
            )
            raise TrainingError(
                f"training loss became non-finite ({value}) at epoch {epoch}, "
                f"step {step}; stopped, {kept}"
            )
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        n = next(iter(batch.values())).shape[0]
        total, count = total + value * n, count + n
    return total / count
