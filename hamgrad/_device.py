"""Devices and floating-point types by name, shared by training, evaluation and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from hamgrad.errors import ConfigError

__all__ = ["DEVICES", "DTYPES", "default_dtype", "dtype_name", "resolve_device", "set_threads"]

#: Device names accepted by `resolve_device`.
DEVICES = ("auto", "cpu", "cuda")

#: Floating-point precisions by name.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cpu`` / ``cuda`` as given (CUDA checked).

    Raises
    ------
    ConfigError
        Unknown name, or ``cuda`` on a machine without CUDA.
    """
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' requested but CUDA is not available; expected --device cpu or auto"
        )
    return torch.device(name)


def dtype_name(dtype: torch.dtype) -> str:
    """The key of `DTYPES` for ``dtype`` (raises `ConfigError` for other types)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ConfigError(f"dtype {dtype} is not supported; expected one of {', '.join(DTYPES)}")


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Make ``dtype`` torch's default floating type inside the block, then restore it."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch's intra-op work; 0 keeps torch's default.

    One thread is the default of every command: hamgrad's models are small, and intra-op
    parallelism costs more than it gains on their tiny matrices (measured on a busy 2-core
    machine: 0.29 s per default training epoch on 1 thread, 17 s on 2).
    """
    if n:
        torch.set_num_threads(n)
