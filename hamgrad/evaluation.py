"""Long-horizon evaluation of a learned model against the truth and the integrator's own floor.

Definitions (all reported in ``metrics.json`` and as a table):

- **derivative error (dB)**: ``10 log10( mean_i |f̂(x_i) - f(x_i)|² )`` over every stored state
  of the split, ``f = (dq/dt, dp/dt)`` and the squared norm summed over coordinates (the
  metric of Chaudhari, Pranav & Moura 2025). Targets are the stored derivatives, else the true
  system's field at the stored states.
- **state error (dB) at horizon k**: ``10 log10( mean_traj |x̂_k - x_k|² )`` with
  ``x = (q, p)``, every test trajectory rolled out from its first state, at
  ``k = 1, 10, 100, 1000, ...`` steps (those within the horizon).
- **energy error**: ``r_k = |H(x̂_k) - H(x_0)| / |H(x_0)|`` with the *true* ``H``; reported as
  the max over trajectories and steps, and the drift slope (least-squares slope of
  ``mean_traj r_k`` against time, per time unit).
- **valid prediction time**: per trajectory the first time ``|x̂_k - x_k| / |x_k|`` exceeds the
  threshold (0.1 by default; Jin et al., "SympNets", Neural Networks 2020 use the same
  notion); a trajectory that never exceeds it counts the full horizon (reported as censored).
  Mean over trajectories, in time units.
- **floor**: the same metrics for the true Hamiltonian integrated with the same integrator and
  step, so a model's error is read against what the integrator alone would give.

The truth is the stored test split for the stored horizon; beyond it (``horizon`` larger) it
comes from the ``truth`` callable the caller passes (the CLI passes the dataset's system's
reference solution from ``simulators``). The true system itself (for the energy error and the
floor) is passed in as ``system``, so this module never builds or imports one.

Where results are written (``metrics.json``, curves) is `hamgrad.run`; the text table is
`hamgrad.report`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from hamgrad._device import resolve_device
from hamgrad._resources import check_memory
from hamgrad.data import Dataset, Split
from hamgrad.db import decibels
from hamgrad.errors import ConfigError, DatasetError, IntegratorError, check_finite, check_int
from hamgrad.integrators import Integrator, rollout
from hamgrad.models import HamiltonianModel, LearnedModel

__all__ = [
    "Evaluation",
    "TrueSystem",
    "Truth",
    "check_dof",
    "evaluate",
    "horizons",
    "state_metrics",
]


class TrueSystem(Protocol):
    """What evaluation needs of the true system: its field and its energy (``simulators.System``
    has both)."""

    separable: bool

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor: ...
    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor: ...
    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor: ...


#: ``truth(q0, p0, t) -> (q, p, how)``: reference trajectories ``[n_traj, n_t, dof]`` from
#: initial states ``[n_traj, dof]`` at times ``t [n_t]``, and a one-line description.
Truth = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, str]]

_BATCH = 8192  # states per forward pass in the derivative error
_N_CURVE_TRAJ = 4  # trajectories kept for phase portraits


@dataclass
class Evaluation:
    """Result of `evaluate`: ``metrics`` (JSON, the report) and ``curves`` (arrays, for plots)."""

    metrics: dict[str, Any]
    curves: dict[str, np.ndarray] = field(default_factory=dict)


def horizons(n_steps: int) -> list[int]:
    """``1, 10, 100, ...`` up to ``n_steps`` (inclusive)."""
    return [10**i for i in range(int(math.log10(max(n_steps, 1))) + 1) if 10**i <= n_steps]


def state_metrics(
    q_pred: np.ndarray,
    p_pred: np.ndarray,
    q_true: np.ndarray,
    p_true: np.ndarray,
    dt: float,
    threshold: float = 0.1,
    hamiltonian: Callable[[Tensor, Tensor], Tensor] | None = None,
    divergence: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Error-vs-horizon, energy error and valid prediction time of one set of rollouts.

    A prediction that diverged holds NaN after its last good state (see
    ``rollout(on_failure="stop")``): its metrics cover the steps up to there, horizons past
    it are reported as ``None``, and ``divergence`` says where and why.

    Parameters
    ----------
    q_pred, p_pred, q_true, p_true : ndarray, shape ``[n_traj, n_steps + 1, dof]``
        Predicted and true states, both starting at the same initial state.
    dt : float
        Step between saved states (time units).
    threshold : float
        Relative state error that ends the valid prediction time.
    hamiltonian : callable, optional
        True ``H(q, p)`` on float64 tensors ``[..., dof] -> [...]``; without it the energy
        entries are ``None``.
    divergence : dict, optional
        ``{"step", "time", "reason"}`` of a rollout that stopped (stored-step units).

    Returns
    -------
    metrics : dict
        ``state_error_db`` (horizon -> dB; ``None`` past a divergence, and for an exact
        prediction, whose -inf dB JSON cannot hold),
        ``energy_rel_error_max`` and ``energy_drift_slope`` (over the finite steps),
        ``vpt_time``, ``vpt_steps``, ``vpt_censored``, ``diverged`` (``divergence`` or None).
        Every value is JSON-safe: no NaN or infinity.
    curves : dict of ndarray
        ``state_error_db`` per step ``[n_steps + 1]`` and ``energy_rel_error`` (mean over
        trajectories) per step, or empty when unknown.
    """
    n_steps = q_pred.shape[1] - 1
    x_pred = np.concatenate([q_pred, p_pred], -1)
    x_true = np.concatenate([q_true, p_true], -1)
    sq_err = np.sum((x_pred - x_true) ** 2, axis=-1)  # [n_traj, n_t]
    err_db = decibels(sq_err.mean(axis=0))
    rel = np.sqrt(sq_err) / np.maximum(np.linalg.norm(x_true, axis=-1), 1e-300)
    exceeded = rel > threshold
    # Non-finite predictions count as exceeded (NaN compares False).
    exceeded |= ~np.isfinite(rel)
    first = np.where(exceeded.any(axis=1), exceeded.argmax(axis=1), n_steps)
    metrics: dict[str, Any] = {
        "state_error_db": {str(h): _json_number(err_db[h]) for h in horizons(n_steps)},
        "vpt_steps": float(first.mean()),
        "vpt_time": float(first.mean() * dt),
        "vpt_censored": int((~exceeded.any(axis=1)).sum()),
        "energy_rel_error_max": None,
        "energy_drift_slope": None,
        "diverged": divergence,
    }
    curves = {"state_error_db": err_db}
    if hamiltonian is not None:
        with torch.no_grad():
            h_pred = hamiltonian(torch.from_numpy(q_pred), torch.from_numpy(p_pred)).numpy()
            h0 = hamiltonian(
                torch.from_numpy(q_true[:, :1]), torch.from_numpy(p_true[:, :1])
            ).numpy()
        e_rel = np.abs(h_pred - h0) / np.maximum(np.abs(h0), 1e-300)
        mean_rel = e_rel.mean(axis=0)
        t = dt * np.arange(n_steps + 1)
        finite = np.isfinite(mean_rel)
        metrics["energy_rel_error_max"] = _json_number(np.max(e_rel[:, finite]))
        metrics["energy_drift_slope"] = (
            float(np.polyfit(t[finite], mean_rel[finite], 1)[0]) if finite.sum() >= 2 else None
        )
        curves["energy_rel_error"] = mean_rel
    return metrics, curves


def _json_number(value: Any) -> float | None:
    """``float(value)``, or None when it is NaN or infinite (JSON has neither)."""
    x = float(value)
    return x if math.isfinite(x) else None


def rollout_numpy(
    field: object,
    q0: np.ndarray,
    p0: np.ndarray,
    dt: float,
    n_steps: int,
    integrator: Integrator,
    substeps: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    stop_on_failure: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Roll ``field`` out from numpy states ``[n_traj, dof]`` without gradients.

    ``substeps`` integrator steps per interval ``dt``. Returns float64 ``q``, ``p``
    ``[n_traj, n + 1, dof]`` and, when ``stop_on_failure`` and the rollout failed, the
    divergence ``{"step", "time", "reason"}`` in stored-interval steps (NaN states after it);
    otherwise a failure raises `IntegratorError`.
    """
    q = torch.as_tensor(q0, dtype=dtype, device=device)
    p = torch.as_tensor(p0, dtype=dtype, device=device)
    with torch.no_grad():
        traj = rollout(
            field,
            q,
            p,
            dt / substeps,
            n_steps * substeps,
            method=integrator,
            save_every=substeps,
            on_failure="stop" if stop_on_failure else "raise",
            progress=progress,
        )
    failure = traj.failure
    divergence = (
        None
        if failure is None
        else {
            "step": math.ceil(failure.step / substeps),
            "time": failure.time,
            "reason": failure.reason,
        }
    )
    return (
        traj.q.detach().cpu().double().numpy(),
        traj.p.detach().cpu().double().numpy(),
        divergence,
    )


def _derivative_error_db(
    model: LearnedModel,
    split: Split,
    system: TrueSystem | None,
    dtype: torch.dtype,
    device: torch.device,
) -> float | None:
    q = torch.as_tensor(split.q, dtype=torch.float64).flatten(0, 1)
    p = torch.as_tensor(split.p, dtype=torch.float64).flatten(0, 1)
    if split.dq_dt is not None and split.dp_dt is not None:
        target = torch.cat(
            [
                torch.as_tensor(split.dq_dt).flatten(0, 1),
                torch.as_tensor(split.dp_dt).flatten(0, 1),
            ],
            -1,
        )
    elif system is not None:
        with torch.no_grad():
            target = torch.cat([system.dH_dp(q, p), -system.dH_dq(q, p)], -1)
    else:
        return None
    total = 0.0
    with torch.no_grad():
        for start in range(0, q.shape[0], _BATCH):
            sl = slice(start, start + _BATCH)
            dq, dp = model.time_derivative(q[sl].to(device, dtype), p[sl].to(device, dtype))
            pred = torch.cat([dq, dp], -1).double().cpu()
            total += float((pred - target[sl]).square().sum())
    return decibels(total / q.shape[0])


def _truth(
    dataset: Dataset, split: Split, truth: Truth | None, n_steps: int
) -> tuple[np.ndarray, np.ndarray, str]:
    stored = split.n_t - 1
    if n_steps <= stored:
        return split.q[:, : n_steps + 1], split.p[:, : n_steps + 1], "stored"
    if truth is None:
        raise ConfigError(
            f"horizon {n_steps} exceeds the {stored} stored steps and no true "
            f"system was given to generate the rest; expected --horizon <= "
            f"{stored}, or a dataset whose system is known"
        )
    t = dataset.dt * np.arange(n_steps + 1)
    q, p, how = truth(split.q[:, 0], split.p[:, 0], t)
    return q, p, f"generated ({how})"


def evaluate(
    model: LearnedModel,
    dataset: Dataset,
    *,
    system: TrueSystem | None = None,
    truth: Truth | None = None,
    split: str = "test",
    horizon: int | None = None,
    method: str | Integrator | None = None,
    substeps: int = 1,
    threshold: float = 0.1,
    device: torch.device | str = "cpu",
    floor: bool = True,
    learned_energy: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Evaluate ``model`` on split ``split`` of a loaded `hamgrad.data.Dataset`.

    Parameters
    ----------
    model : LearnedModel
        A trained model (see `hamgrad.checkpoint.load_model`).
    dataset : Dataset
        Data with the same ``dof``.
    system : TrueSystem, optional
        The true system (e.g. ``simulators.system_from_dataset(dataset)``): gives the energy
        error, the floor, and derivative targets when the file stores none. Without it those
        entries are ``None``.
    truth : callable, optional
        ``truth(q0, p0, t) -> (q, p, how)`` reference trajectories, needed only when
        ``horizon`` exceeds the stored steps (e.g. a partial of
        ``simulators.reference_solution`` on the system).
    split : str
        Split to evaluate on (default ``test``).
    horizon : int, optional
        Steps to roll out (default: the stored ``n_t - 1``).
    method : str or Integrator, optional
        Rollout method (default: the model's ``default_integrator``); pass an `Integrator`
        to set its options (``get_integrator("tao2", omega=50)``).
    substeps : int
        Integrator steps per stored interval (step ``dt / substeps``).
    threshold : float
        Relative state error ending the valid prediction time.
    device : str or torch.device
        Where the model runs.
    floor : bool
        Also roll out the true system with the same integrator (the floor). A failed floor
        rollout (e.g. the true system's implicit solve at a close encounter) is reported in
        ``floor_note`` and never discards the model's metrics.
    learned_energy : bool
        Also compute the model's learned-energy curve (for the energy plot). It costs a
        line-integral potential per saved state, most of an evaluation's time for GradNets;
        benchmarks that only need the metrics switch it off.
    progress : callable, optional
        ``progress(step, n_steps)`` during the model's rollout (integrator steps), for a
        progress bar on long horizons.

    A model whose rollout diverges (non-finite state, failed implicit solve, Tao's defect)
    still gets its metrics, computed up to its last good state, with
    ``model_metrics["diverged"]`` saying where and why.

    Raises
    ------
    DatasetError
        Missing split, or ``dof`` differs from the model's.
    IntegratorError
        The integrator does not apply to the model, or a rollout failed.
    ConfigError
        Bad horizon / threshold / substeps, or a horizon past the stored data without
        ``truth``.
    """
    data_split = dataset.split(split)
    check_dof(model, dataset)
    integrator = model.integrator(method)
    substeps = check_int("substeps", substeps)
    threshold = check_finite("threshold", threshold, positive=True)
    n_steps = data_split.n_t - 1 if horizon is None else check_int("horizon", horizon)
    if n_steps < 1:
        raise DatasetError(
            f"{dataset.path}: split {split!r} has a single time sample; "
            "expected trajectories of at least 2 samples"
        )
    # truth, model and floor rollouts: q and p of each, with the rollout's own working copies
    check_memory(
        f"a horizon of {n_steps} steps",
        10 * data_split.q[:, :1].nbytes * (n_steps + 1),
        "expected a shorter --horizon",
    )
    device = resolve_device(device)
    model = model.to(device)
    dtype = next(model.parameters()).dtype
    q_true, p_true, truth_source = _truth(dataset, data_split, truth, n_steps)
    q0, p0 = data_split.q[:, 0], data_split.p[:, 0]
    hamiltonian = system.hamiltonian if system is not None else None

    q_hat, p_hat, divergence = rollout_numpy(
        model,
        q0,
        p0,
        dataset.dt,
        n_steps,
        integrator,
        substeps,
        dtype,
        device,
        stop_on_failure=True,
        progress=progress,
    )
    model_metrics, model_curves = state_metrics(
        q_hat, p_hat, q_true, p_true, dataset.dt, threshold, hamiltonian, divergence
    )
    model_metrics["derivative_error_db"] = _derivative_error_db(
        model, data_split, system, dtype, device
    )
    floor_metrics, floor_curves, floor_note = _floor(
        system, integrator, floor, q0, p0, q_true, p_true, dataset.dt, n_steps, substeps, threshold
    )
    metrics = {
        "model": model.config(),
        "dataset": str(dataset.path),
        "split": split,
        "integrator": integrator.name,
        "integrator_options": integrator.options(),
        "dt": dataset.dt,
        "substeps": substeps,
        "horizon_steps": n_steps,
        "horizon_time": n_steps * dataset.dt,
        "n_trajectories": int(q0.shape[0]),
        "threshold": threshold,
        "truth": truth_source,
        "system": dataset.system,
        "model_metrics": model_metrics,
        "floor_metrics": floor_metrics,
        "floor_note": floor_note,
    }
    k = min(_N_CURVE_TRAJ, q0.shape[0])
    curves: dict[str, np.ndarray] = {
        "t": dataset.dt * np.arange(n_steps + 1),
        "q_true": q_true[:k],
        "p_true": p_true[:k],
        "q_model": q_hat[:k],
        "p_model": p_hat[:k],
    }
    curves.update({f"model_{name}": v for name, v in model_curves.items()})
    if divergence is not None:
        curves["model_diverged_time"] = np.array([divergence["time"]])
    curves.update({f"floor_{name}": v for name, v in floor_curves.items()})
    if isinstance(model, HamiltonianModel) and learned_energy:
        curves["model_learned_energy_change"] = _learned_energy_change(
            model, q_hat[:k], p_hat[:k], dtype, device
        )
    return Evaluation(metrics=metrics, curves=curves)


def _floor(
    system: TrueSystem | None,
    integrator: Integrator,
    wanted: bool,
    q0: np.ndarray,
    p0: np.ndarray,
    q_true: np.ndarray,
    p_true: np.ndarray,
    dt: float,
    n_steps: int,
    substeps: int,
    threshold: float,
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], str | None]:
    """The true system rolled out with the model's integrator: ``(metrics, curves, note)``."""
    if not wanted:
        return None, {}, "not requested"
    if system is None:
        return None, {}, "no true system was given"
    problem = integrator.mismatch(system)
    if problem is not None:
        return None, {}, problem
    try:
        q_f, p_f, divergence = rollout_numpy(
            system,
            q0,
            p0,
            dt,
            n_steps,
            integrator,
            substeps,
            torch.float64,
            torch.device("cpu"),
            stop_on_failure=True,
        )
    except IntegratorError as exc:
        return None, {}, f"the true system's rollout failed: {exc}"
    metrics, curves = state_metrics(
        q_f, p_f, q_true, p_true, dt, threshold, system.hamiltonian, divergence
    )
    return metrics, curves, None


def _learned_energy_change(
    model: HamiltonianModel, q: np.ndarray, p: np.ndarray, dtype: torch.dtype, device: torch.device
) -> np.ndarray:
    """Mean over trajectories of ``|H_model(x_k) − H_model(x_0)| / c`` per step.

    The learned H has an arbitrary additive constant, so its change is measured against the
    model's energy scale c (the spread of H over the training data), not against ``|H(0)|``.
    """
    with torch.no_grad():
        learned = model.hamiltonian(
            torch.as_tensor(q, dtype=dtype, device=device),
            torch.as_tensor(p, dtype=dtype, device=device),
        )
    values = learned.double().cpu().numpy()
    scale = max(float(model.normalizer.energy_scale), 1e-300)
    return (np.abs(values - values[:, :1]) / scale).mean(axis=0)


def check_dof(model: LearnedModel, dataset: Dataset) -> None:
    """Raise `DatasetError` when ``dataset`` has another ``dof`` than ``model``."""
    if dataset.dof != model.dof:
        raise DatasetError(
            f"{dataset.path}: dof is {dataset.dof} but the checkpoint's model "
            f"{model.name!r} expects dof {model.dof}"
        )
