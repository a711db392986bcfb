"""The evaluation report as text: `format_table` (its pictures are `hamgrad.plotting`).

Input is ``Evaluation.metrics`` (`hamgrad.evaluation`), also stored as ``metrics.json`` in a run
directory, so a saved report can be printed again without recomputing it.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_table"]


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def format_table(metrics: dict[str, Any]) -> str:
    """The evaluation report as an aligned text table (model vs floor)."""
    model, floor = metrics["model_metrics"], metrics["floor_metrics"] or {}
    rows: list[tuple[str, str, str]] = [
        ("derivative error (dB)", _fmt(model.get("derivative_error_db"), ".2f"), "-"),
    ]
    for h in model["state_error_db"]:
        rows.append(
            (
                f"state error @ {h} steps (dB)",
                _fmt(model["state_error_db"][h], ".2f"),
                _fmt(floor.get("state_error_db", {}).get(h), ".2f"),
            )
        )
    rows += [
        (
            "energy rel. error, max",
            _fmt(model["energy_rel_error_max"], ".3e"),
            _fmt(floor.get("energy_rel_error_max"), ".3e"),
        ),
        (
            "energy rel. error drift (1/time)",
            _fmt(model["energy_drift_slope"], ".3e"),
            _fmt(floor.get("energy_drift_slope"), ".3e"),
        ),
        (
            f"valid prediction time (err > {metrics['threshold']:g})",
            f"{model['vpt_time']:.3f} ({model['vpt_censored']} censored)",
            f"{floor['vpt_time']:.3f} ({floor['vpt_censored']} censored)" if floor else "n/a",
        ),
    ]
    head = (
        f"{metrics['model']['name']} on {metrics['dataset']} [{metrics['split']}], "
        f"{metrics['n_trajectories']} trajectories, {metrics['horizon_steps']} steps of "
        f"{metrics['integrator']} (dt={metrics['dt']:g}), truth: {metrics['truth']}"
    )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in [*rows, ("", "model", "")])
    lines = [head, f"{'metric':<{w0}}  {'model':>{w1}}  floor (true H, same integrator)"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    if metrics.get("floor_note"):
        lines.append(f"floor not computed: {metrics['floor_note']}")
    return "\n".join(lines)
