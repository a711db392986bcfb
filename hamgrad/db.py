"""The error metric of the Gradient Networks paper, in decibels.

``error_dB = 10 · log10( mean_i ‖f̂(x_i) − f(x_i)‖² )``: the squared norm is summed over output
coordinates, not averaged, and the mean runs over points (Chaudhari, Pranav & Moura, "Gradient
Networks", IEEE TSP 73, 2025, experiments section). Lower is better; −10 dB is a ten times
smaller mean squared error. Every dB figure hamgrad reports goes through `decibels`.
"""

from __future__ import annotations

from typing import overload

import numpy as np

__all__ = ["decibels"]


@overload
def decibels(mean_squared_error: float) -> float: ...
@overload
def decibels(mean_squared_error: np.ndarray) -> np.ndarray: ...


def decibels(mean_squared_error: float | np.ndarray) -> float | np.ndarray:
    """``10 · log10(mse)``, element-wise for arrays; ``-inf`` for an exact fit (mse = 0)."""
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(mean_squared_error)
    return float(out) if np.ndim(out) == 0 else out
