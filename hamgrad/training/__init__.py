"""Training learned Hamiltonians: config, losses, loop, run directories and checkpoints.

Public API: `TrainConfig`, `train`, `TrainResult`, `TrainingError`, `load_model`,
`load_checkpoint`, `RunPaths`, `read_run_config`, the loss classes and `default_dataset`.
"""

from hamgrad.training.checkpoint import (
    RunPaths,
    find_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from hamgrad.training.config import DEFAULT_DATA, OPTIMIZERS, SCHEDULES, TrainConfig, parse_loss
from hamgrad.training.loop import (
    TrainingError,
    TrainResult,
    default_dataset,
    read_run_config,
    train,
)
from hamgrad.training.losses import DerivativeLoss, RolloutLoss, build_loss

__all__ = [
    "DEFAULT_DATA",
    "OPTIMIZERS",
    "SCHEDULES",
    "DerivativeLoss",
    "RolloutLoss",
    "RunPaths",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "build_loss",
    "default_dataset",
    "find_checkpoint",
    "load_checkpoint",
    "load_model",
    "parse_loss",
    "read_run_config",
    "save_checkpoint",
    "train",
]
