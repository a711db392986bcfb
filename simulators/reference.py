"""Reference trajectories: the exact flow where a system has one, else a numerical reference.

Which numerical reference a system uses is declared on the system, not decided here: its
class attribute ``reference_method`` names an entry of `REFERENCE_METHODS`,

- ``"dop853"``: batched scipy DOP853 (`integrate`), the default of `simulators.System`;
- ``"ias15"``: REBOUND's IAS15, one simulation per trajectory (`simulators.rebound_reference`),
  declared by the gravitational systems (`NBody`, `ThreeBody`, `Kepler` when unbound).

Reference data never uses hamgrad's own integrators, so a bug there cannot corrupt both the
data and what is tested against it.

Note on DOP853's accuracy: the numerical path integrates a whole batch in *one*
``scipy.integrate.solve_ivp`` call: the ``B`` trajectories are flattened into a single state
vector of length ``2 B dof``, so the Python overhead per step is paid once for the batch
instead of once per trajectory (the per-trajectory loop of the published HNN code). scipy
measures the local error by the RMS over all components, so in a batch a single component may
carry an error up to ``sqrt(2 B dof)`` times the tolerance where the others are much smaller.
``per_component=True`` divides the tolerances by that factor so every component meets them
(costs about ``(2 B dof)^(1/16)`` more steps with DOP853); the divided tolerance is floored at
scipy's limit ``100 eps`` (2.2e-14), so keep batches modest (``batch_size``, 32 by default).
One batch also shares one step size, set by its fastest trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from scipy.integrate import solve_ivp

from hamgrad.errors import ConfigError, IntegratorError, check_finite, check_int, unknown_name
from simulators.base import System
from simulators.rebound_reference import ENCOUNTER_RATIO, REFERENCE_NAME, integrate_ias15

__all__ = [
    "REFERENCE_METHODS",
    "Reference",
    "ReferenceSettings",
    "integrate",
    "reference_solution",
    "reference_trajectories",
]


def _check_inputs(
    system: System, q0: np.ndarray, p0: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q0 = np.asarray(q0, dtype=np.float64)
    p0 = np.asarray(p0, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    want = (q0.shape[0] if q0.ndim == 2 else -1, system.dof)
    if q0.ndim != 2 or q0.shape[1] != system.dof or p0.shape != q0.shape:
        raise ConfigError(
            f"q0 and p0 must both have shape [n_traj, dof={system.dof}], got "
            f"{q0.shape} and {p0.shape} (expected {want})"
        )
    if t.ndim != 1 or len(t) == 0 or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ConfigError(
            f"t must be a non-empty increasing 1-D array of times >= 0, got shape {t.shape}"
        )
    return q0, p0, t


def integrate(
    system: System,
    q0: np.ndarray,
    p0: np.ndarray,
    t: np.ndarray,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    method: str = "DOP853",
    per_component: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
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
    sol = solve_ivp(rhs, (0.0, float(t[-1])), y0, method=method, t_eval=t, rtol=rtol, atol=atol)
    if not sol.success or not np.all(np.isfinite(sol.y)):
        raise IntegratorError(f"scipy {method} failed for system {system.name!r}: {sol.message}")
    y = sol.y.T.reshape(len(t), *shape)  # [n_t, 2, n_traj, dof]
    return np.ascontiguousarray(y[:, 0].transpose(1, 0, 2)), np.ascontiguousarray(
        y[:, 1].transpose(1, 0, 2)
    )


@dataclass(frozen=True)
class ReferenceSettings:
    """Settings of the numerical references; each method reads the ones that concern it.

    Attributes
    ----------
    rtol, atol : float
        DOP853 tolerances (see the module note on ``per_component``).
    per_component : bool
        DOP853: enforce the tolerances on every component, not only on the batch RMS.
    batch_size : int
        DOP853: trajectories per vectorised ``solve_ivp`` call. Blocks start at multiples of
        ``batch_size`` of the given batch, so a trajectory is integrated with the same
        neighbours wherever the batch is cut at such multiples.
    workers : int or None
        IAS15: worker processes (None: every CPU this process may use); never changes the
        result.
    encounter_ratio : float
        IAS15: a close encounter is a pair closer than this times the smallest initial pair
        separation.
    progress : callable or None
        Called with the number of trajectories finished, as they finish.
    """

    rtol: float = 1e-12
    atol: float = 1e-12
    per_component: bool = True
    batch_size: int = 32
    workers: int | None = 1
    encounter_ratio: float = ENCOUNTER_RATIO
    progress: Callable[[int], None] | None = None


@dataclass(frozen=True)
class Reference:
    """Reference trajectories of a batch and how they were computed.

    Attributes
    ----------
    q, p : ndarray, shape ``[n_traj, n_t, dof]``
        Positions and momenta at the requested times (float64).
    how : str
        One line: the method and its version or settings (a dataset's ``reference``).
    encounter_time : ndarray, shape ``[n_traj]``, or None
        For references that detect close encounters (IAS15): the time of each trajectory's
        first close encounter, NaN where there was none; None for the others.
    """

    q: np.ndarray
    p: np.ndarray
    how: str
    encounter_time: np.ndarray | None = None


#: A numerical reference: ``(system, q0 [B, dof], p0 [B, dof], t [n_t], settings) -> Reference``.
ReferenceMethod = Callable[
    [System, np.ndarray, np.ndarray, np.ndarray, ReferenceSettings], Reference
]


def _dop853(
    system: System, q0: np.ndarray, p0: np.ndarray, t: np.ndarray, settings: ReferenceSettings
) -> Reference:
    qs, ps = [], []
    for start in range(0, len(q0), settings.batch_size):
        block = slice(start, start + settings.batch_size)
        q, p = integrate(
            system,
            q0[block],
            p0[block],
            t,
            rtol=settings.rtol,
            atol=settings.atol,
            per_component=settings.per_component,
        )
        qs.append(q)
        ps.append(p)
        if settings.progress is not None:
            settings.progress(len(q))
    scope = " per component" if settings.per_component else ""
    return Reference(
        np.concatenate(qs),
        np.concatenate(ps),
        f"scipy DOP853 rtol={settings.rtol:g} atol={settings.atol:g}{scope}",
    )


def _ias15(
    system: System, q0: np.ndarray, p0: np.ndarray, t: np.ndarray, settings: ReferenceSettings
) -> Reference:
    for attr in ("n", "dim", "masses", "G", "softening"):
        if not hasattr(system, attr):
            raise ConfigError(
                f"reference 'ias15' needs a gravitational n-body system (with "
                f"n, dim, masses, G, softening), got {system.name!r}"
            )
    run = integrate_ias15(
        cast(Any, system),  # duck-typed above: any system with the n-body attributes
        q0,
        p0,
        t,
        encounter_ratio=settings.encounter_ratio,
        workers=settings.workers,
        progress=settings.progress,
    )
    return Reference(run.q, run.p, REFERENCE_NAME, encounter_time=run.encounter_time)


#: Numerical references by name; a system names its own in ``reference_method``.
REFERENCE_METHODS: dict[str, ReferenceMethod] = {"dop853": _dop853, "ias15": _ias15}


def reference_trajectories(
    system: System,
    q0: np.ndarray,
    p0: np.ndarray,
    t: np.ndarray,
    *,
    method: str | None = None,
    use_exact: bool = True,
    settings: ReferenceSettings | None = None,
) -> Reference:
    """The most accurate trajectories available: the exact flow if any, else a numerical one.

    Parameters
    ----------
    system : System
        The system; its ``exact_solution`` is tried first (when ``use_exact``), then the
        numerical reference it names in ``reference_method``.
    q0, p0 : ndarray, shape ``[n_traj, dof]``
        Initial states at time 0.
    t : ndarray, shape ``[n_t]``
        Output times (increasing, >= 0).
    method : str, optional
        A key of `REFERENCE_METHODS` to use instead of the system's own (e.g. ``"dop853"``
        for an n-body system, to compare).
    use_exact : bool
        Use the closed-form flow where the system has one.
    settings : ReferenceSettings, optional
        Tolerances, batch size, worker processes, encounter criterion, progress callback.

    Returns
    -------
    Reference
    """
    q0, p0, t = _check_inputs(system, q0, p0, t)
    settings = ReferenceSettings() if settings is None else settings
    check_finite("rtol", settings.rtol, positive=True)
    check_finite("atol", settings.atol, positive=True)
    check_int("batch_size", settings.batch_size)
    name = system.reference_method if method is None else method
    if name not in REFERENCE_METHODS:
        raise unknown_name("reference method", name, REFERENCE_METHODS)
    numerical = REFERENCE_METHODS[name]
    if not (use_exact and system.exact_method is not None):
        return numerical(system, q0, p0, t, settings)
    # The closed form, block by block (blocks of batch_size, like DOP853's): a block it does
    # not cover (None, e.g. an unbound Kepler orbit) goes to the numerical reference, so which
    # trajectories take which path does not depend on how a batch is sharded.
    size = settings.batch_size
    starts = range(0, len(q0), size)
    exact = [system.exact_solution(q0[a : a + size], p0[a : a + size], t) for a in starts]
    missing = [a for a, e in zip(starts, exact, strict=True) if e is None]
    if settings.progress is not None:
        settings.progress(len(q0) - sum(len(q0[a : a + size]) for a in missing))
    if not missing:
        return Reference(
            np.concatenate([e[0] for e in exact if e is not None]),
            np.concatenate([e[1] for e in exact if e is not None]),
            system.exact_method,
        )
    rows = np.concatenate([np.arange(a, min(a + size, len(q0))) for a in missing])
    num = numerical(system, q0[rows], p0[rows], t, settings)
    q = np.empty((len(q0), len(t), system.dof))
    p = np.empty_like(q)
    q[rows], p[rows] = num.q, num.p
    for a, e in zip(starts, exact, strict=True):
        if e is not None:
            q[a : a + size], p[a : a + size] = e
    encounter = None
    if num.encounter_time is not None:
        encounter = np.full(len(q0), np.nan)
        encounter[rows] = num.encounter_time
    how = num.how if len(rows) == len(q0) else f"{system.exact_method}; {num.how}"
    return Reference(q, p, how, encounter_time=encounter)


def reference_solution(
    system: System,
    q0: np.ndarray,
    p0: np.ndarray,
    t: np.ndarray,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    use_exact: bool = True,
    per_component: bool = True,
    method: str | None = None,
    workers: int | None = 1,
) -> tuple[np.ndarray, np.ndarray, str]:
    """`reference_trajectories` as ``(q, p, how)``: the most accurate trajectories available.

    ``rtol``, ``atol`` and ``per_component`` concern the DOP853 reference, ``workers`` the
    IAS15 one (see `ReferenceSettings`); ``method`` overrides the system's own reference.

    Returns
    -------
    (q, p, how) : ``q``, ``p`` of shape ``[n_traj, n_t, dof]`` and a one-line description of
        how they were computed (stored as the dataset's ``reference`` attribute).
    """
    ref = reference_trajectories(
        system,
        q0,
        p0,
        t,
        method=method,
        use_exact=use_exact,
        settings=ReferenceSettings(
            rtol=rtol, atol=atol, per_component=per_component, workers=workers
        ),
    )
    return ref.q, ref.p, ref.how
