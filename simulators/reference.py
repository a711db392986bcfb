"""Reference trajectories: the exact flow where a system has one, else batched scipy DOP853.

Reference data never uses hamgrad's own integrators, so a bug there cannot corrupt both the
data and what is tested against it. The numerical path integrates a whole batch in *one*
``scipy.integrate.solve_ivp`` call: the ``B`` trajectories are flattened into a single state
vector of length ``2 B dof``, so the Python overhead per step is paid once for the batch
instead of once per trajectory (the per-trajectory loop of the published HNN code).

Note on accuracy: scipy measures the local error by the RMS over all components, so in a
batch a single component may carry an error up to ``sqrt(2 B dof)`` times the tolerance where
the others are much smaller. ``per_component=True`` divides the tolerances by that factor so
every component meets them (costs about ``(2 B dof)^(1/16)`` more steps with DOP853); the
divided tolerance is floored at scipy's limit ``100 eps`` (2.2e-14), so keep batches modest
(``generate`` uses 32 by default). One batch also shares one step size, set by its fastest
trajectory: another reason for modest batches on systems with close encounters.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp

from hamgrad.errors import ConfigError, IntegratorError
from simulators.base import System

__all__ = ["integrate", "reference_solution"]


def _check_inputs(system: System, q0: np.ndarray, p0: np.ndarray,
                  t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q0 = np.asarray(q0, dtype=np.float64)
    p0 = np.asarray(p0, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    want = (q0.shape[0] if q0.ndim == 2 else -1, system.dof)
    if q0.ndim != 2 or q0.shape[1] != system.dof or p0.shape != q0.shape:
        raise ConfigError(f"q0 and p0 must both have shape [n_traj, dof={system.dof}], got "
                          f"{q0.shape} and {p0.shape} (expected {want})")
    if t.ndim != 1 or len(t) == 0 or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ConfigError("t must be a non-empty increasing 1-D array of times >= 0, got "
                          f"shape {t.shape}")
    return q0, p0, t


def integrate(system: System, q0: np.ndarray, p0: np.ndarray, t: np.ndarray, *,
              rtol: float = 1e-12, atol: float = 1e-12, method: str = "DOP853",
              per_component: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integrate Hamilton's equations for a batch with one scipy ``solve_ivp`` call.

    Parameters
    ----------
    system : System
        Any system; its torch ``dH_dq`` / ``dH_dp`` are evaluated in float64 on the CPU.
    q0, p0 : ndarray, shape ``[n_traj, dof]``
        Initial states at time 0.
    t : ndarray, shape ``[n_t]``
        Output times (increasing, >= 0), reached by the method's dense output.
    rtol, atol : float
        Tolerances passed to scipy (see module note on ``per_component``).
    method : str
        Any ``solve_ivp`` method; DOP853 (Hairer, Nørsett & Wanner, 1993) by default.

    Returns
    -------
    (q, p) : ndarrays of shape ``[n_traj, n_t, dof]``, float64.

    Raises
    ------
    IntegratorError
        When scipy reports failure or the solution is not finite.
    """
    q0, p0, t = _check_inputs(system, q0, p0, t)
    shape = (2, *q0.shape)
    if per_component:
        factor = np.sqrt(np.prod(shape))
        floor = 100 * np.finfo(np.float64).eps  # scipy raises smaller rtol to this anyway
        rtol, atol = max(rtol / factor, floor), atol / factor

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y.reshape(shape))
        dq, dp = system.time_derivative(state[0], state[1])
        return torch.stack((dq, dp)).numpy().reshape(-1)

    y0 = np.stack((q0, p0)).reshape(-1)
    sol = solve_ivp(rhs, (0.0, float(t[-1])), y0, method=method, t_eval=t, rtol=rtol,
                    atol=atol)
    if not sol.success or not np.all(np.isfinite(sol.y)):
        raise IntegratorError(f"scipy {method} failed for system {system.name!r}: "
                              f"{sol.message}")
    y = sol.y.T.reshape(len(t), *shape)  # [n_t, 2, n_traj, dof]
    return np.ascontiguousarray(y[:, 0].transpose(1, 0, 2)), np.ascontiguousarray(
        y[:, 1].transpose(1, 0, 2))


def reference_solution(system: System, q0: np.ndarray, p0: np.ndarray, t: np.ndarray, *,
                       rtol: float = 1e-12, atol: float = 1e-12, use_exact: bool = True,
                       per_component: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """The most accurate trajectories available: exact flow if any, else `integrate`.

    Returns
    -------
    (q, p, how) : ``q``, ``p`` of shape ``[n_traj, n_t, dof]`` and a one-line description of
        how they were computed (stored as the dataset's ``reference`` attribute).
    """
    q0, p0, t = _check_inputs(system, q0, p0, t)
    if use_exact and system.exact_method is not None:
        exact = system.exact_solution(q0, p0, t)
        if exact is not None:
            return exact[0], exact[1], system.exact_method
    q, p = integrate(system, q0, p0, t, rtol=rtol, atol=atol, per_component=per_component)
    scope = " per component" if per_component else ""
    return q, p, f"scipy DOP853 rtol={rtol:g} atol={atol:g}{scope}"
