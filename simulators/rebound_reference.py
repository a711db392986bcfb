"""Reference trajectories of gravitational N-body systems with REBOUND's IAS15 integrator.

IAS15 (Rein & Spiegel, MNRAS 446, 1424, 2015) is an implicit 15th-order Gauss-Radau integrator
with adaptive steps (step control of Pham, Rein & Spiegel, OJAp 7, 1, 2024) and compensated
summation. REBOUND (Rein & Liu, A&A 537, A128, 2012) runs it in C, one simulation per
trajectory. On our samplers' trajectories without close encounters the relative energy error
stays within a few 1e-15; through very close encounters round-off in the coordinates takes
over (BENCHMARKS.md §3 has the measurements).

How a trajectory is mapped (this module reads and writes REBOUND particles only):

- Positions ``x_i`` are the bodies' coordinates; velocities are ``v_i = p_i / m_i`` (our
  momenta are canonical, ``p = m v``), mapped back as ``p_i = m_i v_i``. A 2-D system runs in
  3-D with ``z = v_z = 0``, which the dynamics keep exactly.
- ``G`` and the Plummer softening ``ε`` are REBOUND's ``sim.G`` and ``sim.softening``: the same
  potential ``-G m_i m_j / sqrt(r² + ε²)`` as `simulators.nbody`.
- Every requested time is reached with ``exact_finish_time=1``: the last step before it is
  shortened so the state *is* the state at that time, with no interpolation error.
- Close encounters are detected, never smoothed over: REBOUND checks after every IAS15 step
  whether a pair is closer than ``encounter_ratio`` times the smallest pair separation of the
  initial state (``sim.exit_min_distance``); the time of the first such step is reported per
  trajectory and the integration continues unchanged.

Trajectories are independent simulations, so the result of each depends on its initial state
and the output times only: never on how many trajectories run together nor on how many worker
processes share them (``workers``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import rebound

from hamgrad.errors import ConfigError, IntegratorError, check_finite, check_int

if TYPE_CHECKING:
    from simulators.nbody import _Gravity

__all__ = [
    "ENCOUNTER_RATIO",
    "PARALLEL_MIN_SAMPLES",
    "REFERENCE_NAME",
    "Ias15Run",
    "default_workers",
    "integrate_ias15",
]

#: What the dataset's ``reference`` attribute says for trajectories computed here.
REFERENCE_NAME = f"rebound IAS15 {rebound.__version__}"
#: A close encounter: a pair closer than this times the smallest initial pair separation.
ENCOUNTER_RATIO = 0.05


@dataclass(frozen=True)
class Ias15Run:
    """Trajectories computed by `integrate_ias15`.

    Attributes
    ----------
    q, p : ndarray, shape ``[n_traj, n_t, dof]``
        Positions and canonical momenta at the requested times (float64).
    encounter_time : ndarray, shape ``[n_traj]``
        Time of the first IAS15 step that ended with a pair closer than the encounter distance;
        NaN for a trajectory without a close encounter.
    encounter_distance : ndarray, shape ``[n_traj]``
        The encounter distance of each trajectory (``encounter_ratio`` times the smallest
        initial pair separation), in length units.
    steps : ndarray of int64, shape ``[n_traj]``
        IAS15 steps taken (including the shortened steps that land on output times).
    """

    q: np.ndarray
    p: np.ndarray
    encounter_time: np.ndarray
    encounter_distance: np.ndarray
    steps: np.ndarray


@dataclass(frozen=True)
class _Bodies:
    """What a worker process needs of the system: plain numbers, cheap to send."""

    masses: tuple[float, ...]
    G: float
    softening: float
    dim: int


def _min_separation(x: np.ndarray) -> float:
    """Smallest pair distance of positions ``[n, dim]``."""
    i, j = np.triu_indices(len(x), 1)
    return float(np.sqrt(((x[i] - x[j]) ** 2).sum(-1)).min())


def _simulate(
    bodies: _Bodies, x0: np.ndarray, v0: np.ndarray, t: np.ndarray, encounter_ratio: float
) -> tuple[np.ndarray, float, float, int]:
    """One IAS15 run: states ``[n_t, n, 6]`` (x, y, z, vx, vy, vz), encounter time, distance."""
    n = len(bodies.masses)
    sim = rebound.Simulation()
    sim.G = bodies.G
    sim.softening = bodies.softening
    sim.integrator = "ias15"
    x3 = np.zeros((n, 3))
    v3 = np.zeros((n, 3))
    x3[:, : bodies.dim], v3[:, : bodies.dim] = x0, v0
    for m, x, v in zip(bodies.masses, x3, v3, strict=True):
        sim.add(m=m, x=x[0], y=x[1], z=x[2], vx=v[0], vy=v[1], vz=v[2])
    distance = encounter_ratio * _min_separation(x0)
    sim.exit_min_distance = distance
    encounter = np.nan
    states = np.empty((len(t), n * 6))
    for k, tk in enumerate(t):
        while True:
            try:
                sim.integrate(float(tk), exact_finish_time=1)
                break
            except rebound.Encounter:
                # Record the first close approach, then carry on from where REBOUND stopped:
                # the exit check runs after a completed step, so nothing is lost or repeated.
                encounter = sim.t
                sim.exit_min_distance = 0.0
            except (rebound.GenericError, rebound.Collision, rebound.Escape) as exc:
                raise IntegratorError(f"REBOUND IAS15 failed at t={sim.t:.17g}: {exc}") from None
        if sim.t != tk:
            raise IntegratorError(
                f"REBOUND IAS15 stopped at t={sim.t!r}, expected exactly {float(tk)!r}"
            )
        sim.serialize_particle_data(xyzvxvyvz=states[k])
    if not np.all(np.isfinite(states)):
        raise IntegratorError(
            "REBOUND IAS15 produced a non-finite state (a collision of "
            "point masses?); use softening > 0"
        )
    return states.reshape(len(t), n, 6), encounter, distance, int(sim.steps_done)


def _run_chunk(
    bodies: _Bodies, x0: np.ndarray, v0: np.ndarray, t: np.ndarray, encounter_ratio: float
) -> list[tuple[np.ndarray, float, float, int]]:
    return [_simulate(bodies, x, v, t, encounter_ratio) for x, v in zip(x0, v0, strict=True)]


#: ``workers=None`` runs a batch of fewer trajectory samples (``n_traj * n_t``) in this process.
#: Forked workers pay only on large batches: on the shared 2-core dev machine (load 2.5 to 3.5,
#: `scripts/bench_simulate.py --suite nbody`, BENCHMARKS.md §3) 300 three-body trajectories of
#: 1001 samples took 13.3 s in one process and 9.4 s on two (16.8 s and 14.0 s in another run),
#: while at 101 samples two processes ranged from 0.83x to 1.25x the speed of one, and the
#: pool's start-up (~0.045 s) dominates anything smaller.
PARALLEL_MIN_SAMPLES = 100_000


def default_workers() -> int:
    """The worker processes of ``workers=None`` on large batches: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def integrate_ias15(
    system: _Gravity,
    q0: np.ndarray,
    p0: np.ndarray,
    t: np.ndarray,
    *,
    encounter_ratio: float = ENCOUNTER_RATIO,
    workers: int | None = 1,
    progress: Callable[[int], None] | None = None,
) -> Ias15Run:
    """Integrate a batch of n-body trajectories with REBOUND IAS15, one simulation each.

    Parameters
    ----------
    system : NBody, ThreeBody or Kepler
        Supplies ``masses``, ``G``, ``softening``, ``n`` and ``dim``.
    q0, p0 : ndarray, shape ``[n_traj, n*dim]``
        Initial positions and canonical momenta at time 0.
    t : ndarray, shape ``[n_t]``
        Output times (increasing, >= 0), each reached exactly.
    encounter_ratio : float
        A close encounter is a pair closer than this times the smallest pair separation of the
        initial state (> 0); see `Ias15Run.encounter_time`.
    workers : int or None
        Worker processes. ``None``: `default_workers` for a batch of at least
        `PARALLEL_MIN_SAMPLES` trajectory samples, else this process alone. Workers are forked
        (POSIX ``fork``), so they import nothing; where ``fork`` is unavailable the batch runs
        in this process. The result never depends on ``workers``.
    progress : callable, optional
        Called with the number of trajectories finished, as they finish.

    Returns
    -------
    Ias15Run

    Raises
    ------
    IntegratorError
        REBOUND fails, a state is not finite, or an output time is not hit exactly.
    """
    encounter_ratio = check_finite("encounter_ratio", encounter_ratio, positive=True)
    if workers is not None:
        workers = check_int("workers", workers)
    n, dim = system.n, system.dim
    q0 = np.asarray(q0, dtype=np.float64)
    p0 = np.asarray(p0, dtype=np.float64)
    if q0.ndim != 2 or q0.shape[1] != n * dim or p0.shape != q0.shape:
        raise ConfigError(
            f"q0 and p0 must both have shape [n_traj, {n * dim}], got {q0.shape} and {p0.shape}"
        )
    t = np.asarray(t, dtype=np.float64)
    if (
        t.ndim != 1
        or len(t) == 0
        or not np.all(np.isfinite(t))
        or t[0] < 0
        or np.any(np.diff(t) <= 0)
    ):
        raise ConfigError(
            f"t must be a non-empty increasing 1-D array of finite times >= 0, got shape {t.shape}"
        )
    masses = np.asarray(system.masses, dtype=np.float64)
    bodies = _Bodies(tuple(float(m) for m in masses), float(system.G), float(system.softening), dim)
    x0 = q0.reshape(-1, n, dim)
    v0 = p0.reshape(-1, n, dim) / masses[:, None]
    n_traj = len(x0)
    if n_traj == 0:
        empty = np.empty((0, len(t), n * dim))
        return Ias15Run(
            q=empty,
            p=empty.copy(),
            encounter_time=np.empty(0),
            encounter_distance=np.empty(0),
            steps=np.empty(0, dtype=np.int64),
        )
    if workers is None:
        workers = default_workers() if n_traj * len(t) >= PARALLEL_MIN_SAMPLES else 1
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1
    workers = min(workers, n_traj)

    if workers <= 1:
        results = []
        for i in range(n_traj):
            results.append(_simulate(bodies, x0[i], v0[i], t, encounter_ratio))
            if progress is not None:
                progress(1)
    else:
        # About four chunks per worker balances trajectories of unequal cost; chunks are
        # contiguous and gathered by position, so the order of completion does not matter.
        bounds = np.linspace(0, n_traj, min(n_traj, 4 * workers) + 1).astype(int)
        spans = list(itertools.pairwise(bounds.tolist()))
        chunks: list[list[tuple[np.ndarray, float, float, int]]] = []
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
            futures = [
                ex.submit(_run_chunk, bodies, x0[a:b], v0[a:b], t, encounter_ratio)
                for a, b in spans
            ]
            for future, (a, b) in zip(futures, spans, strict=True):
                chunks.append(future.result())
                if progress is not None:
                    progress(b - a)
        results = [r for chunk in chunks for r in chunk]

    states = np.stack([r[0] for r in results])  # [n_traj, n_t, n, 6]
    q = np.ascontiguousarray(states[..., :dim].reshape(n_traj, len(t), n * dim))
    v = states[..., 3 : 3 + dim]
    p = np.ascontiguousarray((v * masses[:, None]).reshape(n_traj, len(t), n * dim))
    return Ias15Run(
        q=q,
        p=p,
        encounter_time=np.array([r[1] for r in results]),
        encounter_distance=np.array([r[2] for r in results]),
        steps=np.array([r[3] for r in results], dtype=np.int64),
    )
