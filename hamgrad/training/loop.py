"""The training loop: `train(config) -> TrainResult`, with checkpoints, early stopping, resume.

Reproducibility: the initial weights and the shuffling come from one ``torch.Generator`` seeded
by ``config.seed``; ``last.pt`` stores the model, optimizer, scheduler and that generator's state
after every epoch, so ``train(..., resume=True)`` continues with exactly the state an
uninterrupted run would have had (same final weights on CPU; tested).

Scale-out. The training split is read lazily from the file (`hamgrad.data.open_dataset`) and
held or streamed within ``config.buffer_mib`` (`hamgrad.training.samples`). Under ``torchrun``
(see `hamgrad.training.distributed`) every process trains the same model with
``DistributedDataParallel`` on its shard of each global batch of ``config.batch_size``
samples; each rank's loss is its sum of per-sample losses times ``world_size / n`` for a
global batch of ``n``, so DDP's gradient average is exactly the single-process batch mean,
and the order of samples does not depend on the number of processes: a run on W processes
reaches the weights of a single-process run up to rounding (tested), and any number of
processes may resume any run. Rank 0 alone holds the run lock, writes the run directory and
reports progress; validation losses are summed over ranks.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from hamgrad._atomic import write_json, write_jsonl
from hamgrad._device import DTYPES, default_dtype, resolve_device, set_threads
from hamgrad._resources import check_memory
from hamgrad.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from hamgrad.data import DatasetReader, open_dataset
from hamgrad.errors import CheckpointError, ConfigError, HamgradError
from hamgrad.models import LearnedModel, get_model, hparams_for_data, model_from_config
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
from hamgrad.training.distributed import (
    PeerFailure,
    Ranks,
    env_rank,
    local_device,
    process_group,
    resolve_backend,
    will_create_group,
)
from hamgrad.training.losses import Loss, RolloutLoss, SampleSet, build_loss
from hamgrad.training.step import Objective, TrainStep

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


def _mean_loss(loss_fn: Loss, model: LearnedModel, samples: SampleSet, ranks: Ranks) -> float:
    """Sample-weighted mean loss over a whole split, without gradients, summed over ranks.

    A rank that cannot read its part stops every rank (see `Ranks.step_sum`).
    """
    total = torch.zeros(2, dtype=torch.float64)
    error: Exception | None = None
    with torch.no_grad():
        try:
            for batch, _ in samples.batches(_EVAL_BATCH, None, ranks.rank, ranks.world_size):
                errors = loss_fn.errors(model, batch)
                total += torch.stack([errors.sum().double().cpu(), torch.tensor(errors.numel())])
        except Exception as exc:
            error = exc
    summed, failed = ranks.step_sum(total, error is not None)
    _raise_if_failed(ranks, failed, error, "validation")
    return float(summed[0] / max(float(summed[1]), 1.0))


def _raise_if_failed(ranks: Ranks, failed: int | None, error: Exception | None, where: str) -> None:
    """After `Ranks.step_sum`: the lowest failing rank raises its error, the others stop."""
    if failed is None:
        return
    if failed == ranks.rank and error is not None:
        raise error
    raise PeerFailure(f"rank {ranks.rank}: stopped because rank {failed} failed ({where})")


def _agreed(ranks: Ranks, error: HamgradError) -> HamgradError:
    """An error every rank found at once: rank 0 reports it, the others stop quietly."""
    if ranks.is_main:
        return error
    return PeerFailure(f"rank {ranks.rank}: stopped with rank 0: {error}")


def _resolved_config(
    config: TrainConfig,
    model: LearnedModel,
    loss: Loss,
    dataset: DatasetReader,
    device: torch.device,
    ranks: Ranks,
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
            "processes": ranks.world_size,
            "backend": dist.get_backend() if ranks.distributed else None,
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


#: Param-group keys that choose the optimizer's kernel, not its state: a resumed run keeps
#: the ones this process built (torch's `load_state_dict` would bring back the saved ones, so
#: a checkpoint written before fused Adam would resume without the fused kernel).
_KERNEL_KEYS = ("fused", "foreach")


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping this process's kernel choice."""
    kernels = [{k: g[k] for k in _KERNEL_KEYS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, chosen in zip(optimizer.param_groups, kernels, strict=True):
        group.update(chosen)


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
        _load_optimizer_state(optimizer, ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        generator.set_state(ckpt["rng_state"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed ({first}); expected the "
            "last.pt hamgrad train wrote for this run"
        ) from None


@dataclass
class _Setup:
    """What every rank builds before the first epoch."""

    dataset: DatasetReader
    model: LearnedModel
    loss: Loss
    train_set: SampleSet
    val_set: SampleSet | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator


def _build(config: TrainConfig, device: torch.device, stack: ExitStack) -> _Setup:
    """Open the data, build model, loss, samples and optimizer (identically on every rank)."""
    dtype = DTYPES[config.dtype]
    dataset = stack.enter_context(open_dataset(str(config.data)))  # validate(): a path
    train_split = dataset.split("train")
    # Choices left to the data (``features=auto``) are made here and recorded in config.json.
    params = hparams_for_data(
        config.model, config.model_params, dataset.system, dataset.system_params
    )
    _check_model_size(config.model, params, dataset.dof, dtype)
    generator = torch.Generator().manual_seed(config.seed)
    with default_dtype(dtype):  # initial weights drawn in the run's precision, whatever the
        # caller's default: a float64 run starts from the same weights in any session
        model = get_model(config.model, dataset.dof, generator=generator, **params)
    # Cast first: statistics fitted into float32 buffers and then cast to float64 would carry
    # float32 rounding into a float64 run.
    model.to(device=device, dtype=dtype)
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
    buffer = int(config.buffer_mib * 2**20)
    train_set = loss_fn.samples(train_split, dtype, device, buffer)
    val_split = dataset.splits.get("val")
    val_set = loss_fn.samples(val_split, dtype, device, buffer) if val_split is not None else None
    optimizer = OPTIMIZERS[config.optimizer](
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = SCHEDULES[config.schedule](optimizer, config)
    return _Setup(dataset, model, loss_fn, train_set, val_set, optimizer, scheduler, generator)


def _fit_normalization(setup: _Setup, ranks: Ranks) -> None:
    """Rank 0 reads the training split once for the statistics; every rank gets them."""

    def fit() -> dict[str, Tensor]:
        setup.model.fit_normalization(setup.dataset.split("train"), setup.dataset.dt)
        return {k: v.cpu() for k, v in setup.model.normalizer.state_dict().items()}

    statistics = ranks.together(fit, main_only=True)
    if not ranks.is_main:
        setup.model.normalizer.load_state_dict(statistics)


def _built_hparams(model: Any, requested: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a run's model was built with, from its ``config.json["model"]``.

    A resumed run rebuilds that model, not what today's defaults or data-driven choices would
    make of its ``model_params``: a key an older version did not record takes the value it had
    then (the class default, e.g. ``features = "affine"``). Falls back to ``requested`` for a
    config without a model record.
    """
    if not isinstance(model, dict) or not isinstance(model.get("hparams"), dict):
        return requested
    with torch.device("meta"):  # no weights, no random draws
        return dict(model_from_config(model).hparams)


def _resolve_config(config: TrainConfig | None, resume: str | Path | None) -> TrainConfig:
    """The configuration to train with: ``config``, or the one saved in the run to resume."""
    if resume is not None:
        if config is not None:
            raise ConfigError(
                f"resume continues with the run's saved config.json; got new "
                f"settings too ({', '.join(config.changed_fields())}); expected "
                "resume alone"
            )
        saved = read_run_config(resume)
        config = TrainConfig.from_mapping(saved.get("train", {}), source=f"{resume}/config.json")
        config.data = str(run_dataset_path(resume, verify=False))  # rank 0 verifies it
        config.model_params = _built_hparams(saved.get("model"), config.model_params)
    if config is None:
        raise ConfigError("train needs a TrainConfig (with data = the dataset path) or resume")
    config.validate()
    return config


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

    Under ``torchrun`` (``WORLD_SIZE > 1``), or inside a caller's initialised default process
    group, every process calls ``train`` with the same arguments and they train one model
    together (see the module docstring); ``progress`` and ``on_start`` are called on rank 0
    only, ``on_epoch_end`` on every rank, and every rank returns the same `TrainResult`.

    Parameters
    ----------
    config : TrainConfig, optional
        What to train; ``config.data`` must name an existing dataset. Must be None when
        resuming.
    resume : path, optional
        Run directory to continue from its ``last.pt`` with its saved ``config.json`` (and the
        dataset recorded there, checked unchanged). Any number of processes may resume a run
        made by any number.
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
    PeerFailure
        On every rank but the one that reports the failure (distributed runs only).
    """
    try:
        config = _resolve_config(config, resume)
        device = local_device(resolve_device(config.device))
        if will_create_group():
            resolve_backend(config.backend, device)
    except HamgradError as exc:
        if env_rank() == 0 or not will_create_group():
            raise
        # Before the process group exists every rank finds the same problem: rank 0 says it.
        raise PeerFailure(f"rank {env_rank()}: {exc}") from None
    set_threads(config.threads)
    with (
        process_group(config.backend, device, config.dist_timeout) as ranks,
        ExitStack() as stack,
    ):
        if resume is not None:
            ranks.together(lambda: run_dataset_path(resume), main_only=True)
        setup = ranks.together(lambda: _build(config, device, stack))
        _fit_normalization(setup, ranks)
        model, optimizer, generator = setup.model, setup.optimizer, setup.generator
        if config.init is not None and (resume is None or not RunPaths(Path(resume)).last.exists()):
            # A new run, or one resumed before its first checkpoint (which starts over): every
            # rank reads the same file; replaces the statistics fitted above too.
            ranks.together(lambda: _load_init(model, str(config.init)))

        def claim() -> Path:
            run = (
                RunLock(resume)
                if resume is not None
                else claim_run_dir(_run_root(config), overwrite)
            )
            return stack.enter_context(run).paths.root

        paths = RunPaths(ranks.together(claim, main_only=True))
        state, ckpt = ranks.together(
            lambda: _start_state(paths, config, resume, setup, device, ranks), main_only=True
        )
        if ckpt is not None:
            ranks.together(
                lambda: _restore(ckpt, paths.last, model, optimizer, setup.scheduler, generator)
            )
        if on_start is not None and ranks.is_main:
            on_start(paths.root)
        objective: torch.nn.Module = Objective(model, setup.loss)
        if ranks.distributed:
            with ranks.collective():
                objective = DistributedDataParallel(
                    objective,
                    device_ids=[device.index] if device.type == "cuda" else None,
                    forward_sync_buffers=False,  # identical on every rank; never changed
                )
        step = TrainStep(objective, optimizer, config.grad_clip, compile=config.compile)
        stop_reason = "completed"
        first_epoch = state.epoch + 1  # of this process: a resumed run compiles again
        for epoch in range(state.epoch + 1, config.epochs + 1):
            started = time.perf_counter()
            train_loss = _train_epoch(
                model, step, setup.train_set, config, generator, epoch, paths, ranks
            )
            model.eval()
            val_set = setup.val_set
            val_loss = (
                _mean_loss(setup.loss, model, val_set, ranks) if val_set is not None else None
            )
            if val_loss is not None and not math.isfinite(val_loss):
                raise _agreed(
                    ranks,
                    TrainingError(
                        f"validation loss became non-finite at epoch {epoch}; stopped, "
                        f"last good checkpoint kept at {paths.last}"
                    ),
                )
            lr = optimizer.param_groups[0]["lr"]
            setup.scheduler.step()

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
            if step.compile_seconds is not None and epoch == first_epoch:
                row["compile_s"] = step.compile_seconds
            state.history.append(row)
            if improved:
                state.best_loss, state.best_epoch = monitored, epoch

            ranks.together(
                functools.partial(
                    _save_epoch, paths, setup, state, row, improved, monitored, progress, config
                ),
                main_only=True,
            )
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
        loss=setup.loss.spec,
    )


def _load_init(model: LearnedModel, init: str) -> None:
    """Start from the weights (and normalisation) of run or checkpoint ``init``."""
    path = find_checkpoint(init, "best")
    ckpt = load_checkpoint(path)
    try:
        saved = json.loads(ckpt["model_config"])
    except (TypeError, json.JSONDecodeError):
        saved = None
    if isinstance(saved, dict) and "hparams" in saved:
        # An older checkpoint lacks keys added since: compare what it builds, not its text.
        saved = {**saved, "hparams": _built_hparams(saved, {})}
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


def _save_epoch(
    paths: RunPaths,
    setup: _Setup,
    state: _TrainState,
    row: dict[str, Any],
    improved: bool,
    monitored: float,
    progress: ProgressFn | None,
    config: TrainConfig,
) -> None:
    """On rank 0 after an epoch: ``best.pt`` if improved, ``last.pt``, the log, progress."""
    if improved:
        save_checkpoint(paths.best, setup.model, epoch=state.epoch, loss=monitored)
    save_checkpoint(
        paths.last,
        setup.model,
        optimizer_state=setup.optimizer.state_dict(),
        scheduler_state=setup.scheduler.state_dict(),
        rng_state=setup.generator.get_state(),
        **state.as_checkpoint(),
    )
    write_jsonl(paths.metrics_log, state.history)
    if progress is not None:
        progress(row, config)


def _start_state(
    paths: RunPaths,
    config: TrainConfig,
    resume: str | Path | None,
    setup: _Setup,
    device: torch.device,
    ranks: Ranks,
) -> tuple[_TrainState, dict[str, Any] | None]:
    """On rank 0: the state to start from and the checkpoint to restore (None: fresh start).

    A resumed run's ``metrics.jsonl`` is rewritten from the checkpoint's history; a new run
    writes its ``config.json``.
    """
    if resume is None:
        write_json(
            paths.config,
            _resolved_config(config, setup.model, setup.loss, setup.dataset, device, ranks),
        )
        return _TrainState(), None
    if not paths.last.exists():
        # Interrupted before its first checkpoint: everything is rebuilt from the seed
        # exactly as a fresh run would, so starting over is the exact continuation.
        write_jsonl(paths.metrics_log, [])
        return _TrainState(), None
    ckpt = load_checkpoint(paths.last)
    state = _TrainState.from_checkpoint(ckpt, paths.last, config.epochs)
    if "history" not in ckpt:
        state.history = _legacy_history(paths, state.epoch)
    write_jsonl(paths.metrics_log, state.history)  # repairs a log cut by a kill
    return state, ckpt


def _check_model_size(name: str, params: dict[str, Any], dof: int, dtype: torch.dtype) -> None:
    """Refuse a model too large for memory from its shape alone (built on the meta device)."""
    with torch.device("meta"):
        n = count_parameters(get_model(name, dof, **params))
    # weights, gradients and Adam's two moments
    nbytes = 4 * n * torch.empty((), dtype=dtype).element_size()
    check_memory(
        f"model {name!r} with {n:,} parameters",
        nbytes,
        "use a smaller hidden width or depth",
    )


def _train_epoch(
    model: LearnedModel,
    step: TrainStep,
    samples: SampleSet,
    config: TrainConfig,
    generator: torch.Generator,
    epoch: int,
    paths: RunPaths,
    ranks: Ranks,
) -> float:
    """One pass over the shuffled training samples; returns the sample-weighted mean loss.

    Each step reduces one tensor over the ranks (`Ranks.step_sum`): the loss sum and a flag
    per rank, so a batch one rank could not read, or a non-finite loss, stops all of them at
    the same step, before any update.
    """
    model.train()
    total, count = 0.0, 0
    batches = samples.batches(config.batch_size, generator, ranks.rank, ranks.world_size)
    for number in itertools.count():
        error: Exception | None = None
        try:
            item = next(batches, None)
        except Exception as exc:  # this rank's data: the others learn of it below
            error, item = exc, (samples.empty(), 1)
        if item is None:
            break
        batch, n = item
        with ranks.collective():  # DDP's forward may broadcast (bucket rebuild, once)
            loss, local = step.forward(batch, ranks.world_size / n)
        summed, failed = ranks.step_sum(local, error is not None)  # the step's one host sync
        value = float(summed)
        _raise_if_failed(ranks, failed, error, f"epoch {epoch}, step {number}")
        if not math.isfinite(value):
            kept = (
                f"last good checkpoint kept at {paths.last}"
                if paths.last.exists()
                else "no checkpoint was written"
            )
            raise _agreed(
                ranks,
                TrainingError(
                    f"training loss became non-finite ({value / n}) at epoch {epoch}, "
                    f"step {number}; stopped, {kept}"
                ),
            )
        with ranks.collective():  # DDP's backward all-reduces the gradients
            step.update(loss)
        total, count = total + value, count + n
    return total / count
