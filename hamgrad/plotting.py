"""PNG plots of an evaluation: phase portraits, energy vs time, error vs horizon.

Uses matplotlib's non-interactive Agg backend (no display needed). Input is the ``curves``
dict of `hamgrad.evaluation.Evaluation` (also stored as ``evaluation.npz`` in the run
directory); every figure is written atomically.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless rendering

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hamgrad._atomic import atomic_write

__all__ = ["PLOTS", "write_plots"]

Curves = Mapping[str, np.ndarray]


def _mark_divergence(ax: Any, curves: Curves, per_step: bool) -> None:
    """A vertical line where the model's rollout diverged (its curves stop there)."""
    if "model_diverged_time" not in curves:
        return
    t = float(curves["model_diverged_time"][0])
    x = t / float(curves["t"][1] - curves["t"][0]) if per_step else t
    ax.axvline(x, color="red", ls=":", lw=1.2, label="model diverged")


def _phase_portrait(curves: Curves) -> Figure:
    """``p_0`` against ``q_0`` for the first few test trajectories, truth vs model.

    The truth is a wide translucent band and the model a thin line of the same colour on
    top, so both stay visible where they agree (a thin truth line under the model's used to
    disappear).
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i in range(curves["q_true"].shape[0]):
        ax.plot(
            curves["q_true"][i, :, 0],
            curves["p_true"][i, :, 0],
            color=f"C{i}",
            lw=5,
            alpha=0.3,
            solid_capstyle="round",
            label="truth (wide)" if i == 0 else None,
        )
        ax.plot(
            curves["q_model"][i, :, 0],
            curves["p_model"][i, :, 0],
            color=f"C{i}",
            lw=1,
            label=f"model, trajectory {i}",
        )
        ax.plot(curves["q_true"][i, 0, 0], curves["p_true"][i, 0, 0], "o", color=f"C{i}", ms=4)
    ax.set_xlabel("q[0]")
    ax.set_ylabel("p[0]")
    ax.set_title("Phase portrait (first coordinate)")
    ax.legend(fontsize=8)
    return fig


def _energy(curves: Curves) -> Figure:
    """Relative error of the true energy along the model's and the floor's rollouts."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    t = curves["t"]
    series = [
        ("model_energy_rel_error", "model: true H along prediction"),
        ("floor_energy_rel_error", "floor: true H, same integrator"),
        ("model_learned_energy_change", "model: its learned H, change / energy scale"),
    ]
    drawn = False
    for key, label in series:
        if key in curves:
            ax.semilogy(t[1:], np.maximum(curves[key][1:], 1e-17), label=label)
            drawn = True
    if not drawn:
        ax.text(
            0.5, 0.5, "no Hamiltonian known for this dataset", ha="center", transform=ax.transAxes
        )
    _mark_divergence(ax, curves, per_step=False)
    ax.set_xlabel("time")
    ax.set_ylabel("|H(t) - H(0)| / |H(0)|  (mean over trajectories)")
    ax.set_title("Energy vs time")
    if drawn:
        ax.legend(fontsize=8)
    return fig


def _error_vs_horizon(curves: Curves) -> Figure:
    """State error (dB) per step, model and floor, on a log step axis."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    steps = np.arange(1, len(curves["t"]))
    ax.semilogx(steps, curves["model_state_error_db"][1:], label="model")
    if "floor_state_error_db" in curves:
        ax.semilogx(steps, curves["floor_state_error_db"][1:], label="floor (true H)")
    _mark_divergence(ax, curves, per_step=True)
    ax.set_xlabel("steps")
    ax.set_ylabel("state error (dB)")
    ax.set_title("Error vs horizon")
    ax.legend(fontsize=8)
    return fig


#: File name -> figure builder.
PLOTS: dict[str, Callable[[Curves], Figure]] = {
    "phase_portrait.png": _phase_portrait,
    "energy.png": _energy,
    "error_vs_horizon.png": _error_vs_horizon,
}


def _save_png(fig: Figure, fh: BinaryIO) -> None:
    fig.savefig(fh, format="png", dpi=110)


def write_plots(curves: Curves, out_dir: str | os.PathLike) -> list[Path]:
    """Render every figure of `PLOTS` into ``out_dir`` (created); return the paths written."""
    out = Path(out_dir)  # created, or refused with a clear error, by the atomic writer
    written = []
    for name, build in PLOTS.items():
        fig = build(curves)
        try:
            fig.tight_layout()
            written.append(atomic_write(out / name, functools.partial(_save_png, fig)))
        finally:
            plt.close(fig)
    return written
