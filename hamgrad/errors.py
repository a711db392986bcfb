"""Errors raised by hamgrad.

Every message says what was received and what was expected, on one line, so the CLI can print
it as-is (``hamgrad: error: ...``) and exit with code 2 without a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class HamgradError(ValueError):
    """Base class of every error hamgrad raises on bad input or a failed computation."""


class ConfigError(HamgradError):
    """An argument, option or configuration value is invalid."""


class DatasetError(HamgradError):
    """A dataset file is missing, unreadable or does not follow the format."""


class IntegratorError(HamgradError):
    """An integrator cannot be applied, failed to converge, or met a non-finite state."""


class CheckpointError(HamgradError):
    """A checkpoint or run directory is missing, malformed or incompatible."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """Build the error for a name missing from a registry, listing the valid names sorted."""
    choices = ", ".join(sorted(valid))
    return ConfigError(f"unknown {kind} {name!r}; expected one of: {choices}")


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[minimum, maximum]``, else raise `ConfigError`.

    ``minimum`` defaults to 1 (a count); pass ``minimum=0`` where zero is meaningful. NumPy
    integers are accepted, booleans are not (``True`` is no count).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be an integer <= {maximum}, got {value!r}")
    return value


def check_finite(name: str, value: object, positive: bool = False) -> float:
    """Return ``value`` as float if finite (and > 0 when ``positive``), else raise `ConfigError`.

    A number means a number: booleans (TOML ``lr = true``) and strings (``lr = "0.1"``) are
    refused, not converted.
    """
    if isinstance(value, (bool, str, bytes)):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x) or (positive and x <= 0):
        need = "a finite positive number" if positive else "a finite number"
        raise ConfigError(f"{name} must be {need}, got {value!r}")
    return x
