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


def _state_error(metrics: dict[str, Any], horizon: str) -> str:
    """A horizon's dB, or "diverged" when the rollout had stopped before it."""
    value = metrics.get("state_error_db", {}).get(horizon)
    diverged = metrics.get("diverged")
    if value is None and diverged is not None and int(horizon) >= diverged["step"]:
        return "diverged"
    return _fmt(value, ".2f")


def _divergence_line(who: str, metrics: dict[str, Any]) -> list[str]:
    d = metrics.get("diverged")
    if not d:
        return []
    return [
        f"{who} diverged at step {d['step']} (t = {d['time']:.6g}); metrics cover the steps "
        f"before it: {d['reason']}"
    ]


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
                _state_error(model, h),
                _state_error(floor, h) if floor else "n/a",
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
    lines += _divergence_line("model", model) + _divergence_line("floor", floor)
    if metrics.get("floor_note"):
        lines.append(f"floor not computed: {metrics['floor_note']}")
    return "\n".join(lines)
