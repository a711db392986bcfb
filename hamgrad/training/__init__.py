"""Training learned Hamiltonians: configuration, losses and the loop.

Public API: `TrainConfig`, `train`, `TrainResult`, `TrainingError`, the loss classes and
`build_loss`. Checkpoints are `hamgrad.checkpoint`; run directories are `hamgrad.run`.
"""

import warnings

from hamgrad import checkpoint as _checkpoint
from hamgrad import run as _run
from hamgrad.training.config import OPTIMIZERS, SCHEDULES, TrainConfig, parse_loss
from hamgrad.training.loop import TrainingError, TrainResult, train
from hamgrad.training.losses import DerivativeLoss, RolloutLoss, build_loss

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "DerivativeLoss",
    "RolloutLoss",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "build_loss",
    "parse_loss",
    "train",
]

# Names that moved in 0.2, still importable from here for one release (with a warning).
_MOVED = {
    "RunPaths": _run,
    "read_run_config": _run,
    "find_checkpoint": _checkpoint,
    "load_checkpoint": _checkpoint,
    "load_model": _checkpoint,
    "save_checkpoint": _checkpoint,
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(
            f"hamgrad.training.{name} moved to {module.__name__}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
