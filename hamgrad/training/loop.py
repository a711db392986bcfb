"""The training loop: `train(config) -> TrainResult`, with checkpoints, early stopping, resume.

Reproducibility: the initial weights and the shuffling come from one ``torch.Generator`` seeded
by ``config.seed``; ``last.pt`` stores the model, optimizer, scheduler and that generator's state
after every epoch, so ``train(..., resume=True)`` continues with exactly the state an
uninterrupted run would have had (same final weights on CPU; tested).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hamgrad._atomic import write_json, write_jsonl
from hamgrad._device import DTYPES, resolve_device, set_threads
from hamgrad.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from hamgrad.data import Dataset, load_dataset
from hamgrad.errors import ConfigError, HamgradError
from hamgrad.models import LearnedModel, get_model
from hamgrad.run import RunPaths, dataset_record, read_run_config, run_dataset_path
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


def _new_run_dir(config: TrainConfig, overwrite: bool) -> Path:
    base = Path(config.runs_dir)
    if config.name is not None:
        root = base / config.name
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise ConfigError(
                    f"run directory {root} already exists; expected a new --name, "
                    "--resume to continue it, or --overwrite to replace it"
                )
            shutil.rmtree(root)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root, i = base / stamp, 1
        while root.exists():
            root, i = base / f"{stamp}-{i}", i + 1
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create run directory {root}: {exc.strerror or exc}; "
            "expected a writable location (see --runs-dir)"
        ) from None
    return root


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

    Parameters
    ----------
    config : TrainConfig, optional
        What to train; ``config.data`` must name an existing dataset. Must be None when
        resuming.
    resume : path, optional
        Run directory to continue from its ``last.pt`` with its saved ``config.json`` (and the
        dataset recorded there, checked unchanged).
    overwrite : bool
        Replace an existing run directory of the same name.
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
    dataset = load_dataset(config.data)
    train_split = dataset.split("train")

    generator = torch.Generator().manual_seed(config.seed)
    model = get_model(config.model, dataset.dof, generator=generator, **config.model_params)
    model.fit_normalization(train_split, dataset.dt)
    model.to(device=device, dtype=dtype)
    loss_fn = build_loss(
        config.loss,
        model,
        train_split,
        dataset.dt,
        config.integrator,
        config.substeps,
        **config.integrator_options,
    )
    train_set = loss_fn.samples(train_split, dtype, device)
    val_split = dataset.splits.get("val")
    val_set = loss_fn.samples(val_split, dtype, device) if val_split is not None else None

    optimizer = OPTIMIZERS[config.optimizer](
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = SCHEDULES[config.schedule](optimizer, config)
    state = {"epoch": 0, "best_loss": math.inf, "best_epoch": 0, "bad_epochs": 0}
    rows: list[dict[str, Any]] = []

    if resume is not None:
        paths = RunPaths(resume)
        ckpt = load_checkpoint(find_checkpoint(resume, "last"))
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        generator.set_state(ckpt["rng_state"])
        state = {k: ckpt[k] for k in state}
        if paths.metrics_log.exists():
            rows = [
                json.loads(line)
                for line in paths.metrics_log.read_text().splitlines()
                if line.strip()
            ]
            # An interruption between checkpoint and log can leave rows past the checkpoint.
            rows = [r for r in rows if r["epoch"] <= state["epoch"]]
    else:
        paths = RunPaths(_new_run_dir(config, overwrite))
        write_json(paths.config, _resolved_config(config, model, loss_fn, dataset, device))

    if on_start is not None:
        on_start(paths.root)
    stop_reason = "completed"
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(train_set.batches(config.batch_size, generator)):
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
                    f"training loss became non-finite ({value}) at epoch "
                    f"{epoch}, step {step}; stopped, {kept}"
                )
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            n = next(iter(batch.values())).shape[0]
            total, count = total + value * n, count + n
        train_loss = total / count
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
        improved = monitored < state["best_loss"]
        # Patience counts epochs without a *meaningful* gain: a relative improvement below
        # _MIN_REL_IMPROVEMENT still updates best.pt but does not reset the count.
        significant = monitored < state["best_loss"] * (1 - _MIN_REL_IMPROVEMENT)
        state["epoch"] = epoch
        state["bad_epochs"] = 0 if significant else state["bad_epochs"] + 1
        if improved:
            state.update(best_loss=monitored, best_epoch=epoch)
            save_checkpoint(paths.best, model, epoch=epoch, loss=monitored)
        save_checkpoint(
            paths.last,
            model,
            optimizer_state=optimizer.state_dict(),
            scheduler_state=scheduler.state_dict(),
            rng_state=generator.get_state(),
            **state,
        )
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "best": improved,
            "time_s": time.perf_counter() - started,
        }
        rows.append(row)
        write_jsonl(paths.metrics_log, rows)
        if progress is not None:
            progress(row, config)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if config.patience and val_set is not None and state["bad_epochs"] >= config.patience:
            stop_reason = "early stopping"
            break

    return TrainResult(
        run_dir=paths.root,
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        best_loss=state["best_loss"],
        stop_reason=stop_reason,
        loss=loss_fn.spec,
    )
