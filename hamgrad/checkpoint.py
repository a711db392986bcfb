"""Model checkpoints: tensors and JSON only, loaded with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of tensors, numbers and strings; the model's hyperparameters travel as a
JSON string, so loading never unpickles code. Files are replaced atomically
(`hamgrad._atomic`). Where checkpoints live in a run directory is `hamgrad.run.RunPaths`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hamgrad._atomic import write_torch
from hamgrad._device import DTYPES, dtype_name
from hamgrad.errors import CheckpointError
from hamgrad.models import LearnedModel, model_from_config

__all__ = [
    "CHECKPOINT_FORMAT",
    "find_checkpoint",
    "load_checkpoint",
    "load_model",
    "model_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "hamgrad.checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("format", "format_version", "model_config", "model_state", "dtype")


def model_checkpoint(model: LearnedModel) -> dict[str, Any]:
    """The model part of a checkpoint: format tags, JSON config, state dict, dtype name."""
    dtype = next(
        (t.dtype for t in model.state_dict().values() if t.is_floating_point()),
        torch.get_default_dtype(),
    )
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_config": json.dumps(model.config(), sort_keys=True),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dtype": dtype_name(dtype),
    }


def save_checkpoint(path: str | os.PathLike, model: LearnedModel, **extra: Any) -> Path:
    """Atomically write the model plus ``extra`` entries (tensors / JSON-like values)."""
    return write_torch(path, {**model_checkpoint(model), **extra})


def find_checkpoint(run_or_file: str | os.PathLike, which: str = "best") -> Path:
    """``run_or_file`` itself if it is a file, else ``<run>/<which>.pt``.

    Raises
    ------
    CheckpointError
        Nothing there.
    """
    path = Path(run_or_file)
    if path.is_dir():
        path = path / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; expected a run directory holding "
            f"{which}.pt or a checkpoint file"
        )
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint with ``torch.load(..., weights_only=True)`` on the CPU.

    Raises
    ------
    CheckpointError
        Unreadable file, not a hamgrad checkpoint, or a newer format version.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an untrusted file: any failure of the safe unpickler is bad input
        # (a truncated zip reaches us as OSError "Invalid argument", without the file name)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} could not be read ({detail}); expected a file written by "
            "hamgrad train"
        ) from None
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("format"), str)
        or ckpt["format"] != CHECKPOINT_FORMAT
    ):
        raise CheckpointError(
            f"checkpoint {path} is not a hamgrad checkpoint; expected format {CHECKPOINT_FORMAT!r}"
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks field {missing[0]!r}")
    if ckpt["format_version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {ckpt['format_version']!r}; "
            f"expected {CHECKPOINT_VERSION}"
        )
    return ckpt


def load_model(
    run_or_file: str | os.PathLike, which: str = "best", device: torch.device | str = "cpu"
) -> tuple[LearnedModel, dict[str, Any]]:
    """Rebuild the model saved in a run directory (or checkpoint file), in eval mode.

    Returns
    -------
    model : LearnedModel
        Weights and normalisation restored, in the checkpoint's dtype, on ``device``.
    checkpoint : dict
        The raw checkpoint (for its other entries).

    Raises
    ------
    CheckpointError
        Missing / unreadable checkpoint, unknown model name, or weights that do not fit.
    """
    path = find_checkpoint(run_or_file, which)
    ckpt = load_checkpoint(path)
    try:
        config = json.loads(ckpt["model_config"])
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path}: model_config is not valid JSON") from None
    model = model_from_config(config)
    if ckpt["dtype"] not in DTYPES:
        raise CheckpointError(
            f"checkpoint {path}: unknown dtype {ckpt['dtype']!r}; expected "
            f"one of {', '.join(DTYPES)}"
        )
    model.to(dtype=DTYPES[ckpt["dtype"]])
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit model {config['name']!r} ({first})"
        ) from None
    model.to(device)
    model.eval()
    return model, ckpt
