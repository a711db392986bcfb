"""Generate a version-1 HDF5 dataset from a system: `generate` (API).

Determinism: trajectory ``i`` of split ``s`` draws its initial state, then its observation
noise, from ``numpy.random.default_rng([seed, s, i])`` alone (``s`` = 0, 1, 2 for train, val,
test). A DOP853 reference integrates blocks of ``batch_size`` trajectories whose boundaries
are fixed multiples of ``batch_size``, so trajectory ``i`` is computed together with the same
neighbours whichever shard computes it; an IAS15 reference integrates each trajectory alone,
in as many worker processes as pay. Either way the same seed gives the same bytes, whatever
the number of processes, and shards ``(0, n) ... (n-1, n)`` concatenated
(`hamgrad.data.concatenate_datasets`) give the unsharded file.

Self-audit: each split records ``max_rel_energy_error``, ``max |H(t) - H(0)| / |H(0)|`` over its
reference trajectories. References that detect close encounters (IAS15) report every
trajectory that had one in a `CloseEncounterWarning` naming the split, the trajectory indices
and the energy error of those trajectories against the others'.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from hamgrad._resources import check_memory
from hamgrad._version import __version__
from hamgrad.data import SPLIT_NAMES, Split, check_compression, write_dataset
from hamgrad.errors import ConfigError, DatasetError, check_finite, check_int
from simulators.base import System
from simulators.rebound_reference import ENCOUNTER_RATIO
from simulators.reference import ReferenceSettings, reference_trajectories
from simulators.registry import get_system

__all__ = ["CloseEncounterWarning", "generate", "shard_range"]


T = TypeVar("T")


class CloseEncounterWarning(UserWarning):
    """Trajectories of a generated split met in close encounters (see `generate`)."""


def shard_range(n: int, batch_size: int, shard: tuple[int, int] | None) -> range:
    """Trajectory indices of one shard: whole blocks of ``batch_size``, split evenly.

    Shard ``i`` of ``k`` gets blocks ``floor(i B / k) .. floor((i+1) B / k) - 1`` of the
    ``B = ceil(n / batch_size)`` blocks, so the shards partition ``range(n)`` in order.
    """
    if shard is None:
        return range(n)
    index, count = shard
    blocks = -(-n // batch_size)
    lo, hi = index * blocks // count, (index + 1) * blocks // count
    return range(min(lo * batch_size, n), min(hi * batch_size, n))


def _sample(system: System, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    q, p = system.sample_state(rng)
    q, p = np.asarray(q, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if q.shape != (system.dof,) or p.shape != (system.dof,):
        raise ConfigError(
            f"{system.name}.sample_state must return two arrays of shape "
            f"[{system.dof}], got {q.shape} and {p.shape}"
        )
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
        raise ConfigError(f"{system.name}.sample_state returned non-finite values")
    return q, p


def _derived(
    system: System, q: np.ndarray, p: np.ndarray, rngs: list[np.random.Generator], noise_std: float
) -> dict[str, np.ndarray]:
    """Exact derivatives and energies of the reference states, then the noisy observations."""
    tq, tp = torch.from_numpy(q), torch.from_numpy(p)
    dq, dp = system.time_derivative(tq, tp)
    out = {
        "dq_dt": dq.numpy().copy(),
        "dp_dt": dp.numpy().copy(),
        "energy": system.hamiltonian(tq, tp).numpy().copy(),
    }
    if noise_std > 0:
        # Drawn after the state from the same per-trajectory generator: depends on (seed, i).
        noise = np.stack([rng.standard_normal((2, *q.shape[1:])) for rng in rngs])
        q, p = q + noise_std * noise[:, 0], p + noise_std * noise[:, 1]
    out.update(q=q, p=p)
    return out


def _rel_energy_error(energy: np.ndarray) -> np.ndarray:
    """``max_t |H(t) - H(0)| / |H(0)|`` per trajectory, ``[n_traj, n_t]`` -> ``[n_traj]``."""
    e0 = energy[:, :1]
    return np.max(np.abs(energy - e0) / np.maximum(np.abs(e0), np.finfo(float).tiny), axis=1)


#: One simulated chunk: its arrays (``q, p, dq_dt, dp_dt, energy``), how the reference was
#: computed, and the close-encounter times (None when the reference does not detect them).
_Chunk = tuple[dict[str, np.ndarray], str, np.ndarray | None]


def _simulate(
    system: System,
    seed: int,
    split_id: int,
    idx: range,
    t: np.ndarray,
    noise_std: float,
    reference: str | None,
    use_exact: bool,
    settings: ReferenceSettings,
) -> _Chunk:
    """Trajectories ``idx`` of a split: initial states, reference, derivatives, noise.

    ``idx`` starts at a multiple of ``settings.batch_size`` (from the split's start), so the
    blocks inside it are the blocks of the whole split: a chunk's bytes do not depend on how
    the split was cut into chunks.
    """
    rngs = [np.random.default_rng([seed, split_id, i]) for i in idx]
    states = [_sample(system, rng) for rng in rngs]
    q0 = np.stack([s[0] for s in states])
    p0 = np.stack([s[1] for s in states])
    ref = reference_trajectories(
        system, q0, p0, t, method=reference, use_exact=use_exact, settings=settings
    )
    size = settings.batch_size
    # Derivatives in the same blocks as ever (whole multiples of batch_size), so a
    # trajectory's bytes never depend on the shard or chunk that computes it.
    blocks = [
        _derived(system, ref.q[a : a + size], ref.p[a : a + size], rngs[a : a + size], noise_std)
        for a in range(0, len(idx), size)
    ]
    return (
        {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]},
        ref.how,
        ref.encounter_time,
    )


def _chunks(idx: range, batch_size: int, count: int) -> list[range]:
    """``idx`` cut into at most ``count`` consecutive chunks of whole ``batch_size`` blocks."""
    blocks = -(-len(idx) // batch_size)
    bounds = [idx.start + min(len(idx), i * blocks // count * batch_size) for i in range(count + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _run_here(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``Executor.submit`` without an executor: run ``fn`` now; a finished future."""
    future: Future[T] = Future()
    future.set_result(fn(*args))
    return future


def _one_thread() -> None:
    torch.set_num_threads(1)  # a worker per CPU already: no intra-op threads on top


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """``workers`` forked processes (None for one, or where ``fork`` is unavailable)."""
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    context = multiprocessing.get_context("fork")  # workers inherit the system: no re-import
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _report_encounters(
    system: System,
    split: str,
    idx: range,
    encounter_time: np.ndarray | None,
    rel_error: np.ndarray,
) -> None:
    """Warn, once per split, naming the trajectories that met in close encounters."""
    if encounter_time is None:
        return
    met = ~np.isnan(encounter_time)
    if not met.any():
        return
    which = [idx[i] for i in np.flatnonzero(met)]
    shown = ", ".join(map(str, which[:10])) + (", ..." if len(which) > 10 else "")
    others = f"{rel_error[~met].max():.2g}" if (~met).any() else "none"
    warnings.warn(
        f"{system.name}: {len(which)} of {len(idx)} {split} trajectories had a close "
        f"encounter (a pair closer than {ENCOUNTER_RATIO:g} x its initial minimum "
        f"separation), first at t={np.nanmin(encounter_time):.3g}: trajectories "
        f"{shown}; max relative energy error {rel_error[met].max():.2g} for them, "
        f"{others} for the others",
        CloseEncounterWarning,
        stacklevel=3,
    )


@contextlib.contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    import click  # only the CLI path shows a bar

    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar


def generate(
    system: System | str,
    path: str | os.PathLike[str],
    *,
    n_train: int,
    n_val: int,
    n_test: int,
    n_steps: int,
    n_steps_test: int | None = None,
    dt: float,
    noise_std: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
    params: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    batch_size: int = 32,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    use_exact: bool = True,
    reference: str | None = None,
    workers: int | None = None,
    compression: str | None = None,
    progress: bool = False,
) -> Path:
    """Simulate a system and write its dataset in the HDF5 format, version 1.

    Parameters
    ----------
    system : System or str
        A system instance, or a registry name / ``"module:Class"`` built with ``params``.
    path : path-like
        Output file, written atomically.
    n_train, n_val, n_test : int
        Trajectories per split (>= 0; a split with 0 is not written; total >= 1).
    n_steps : int
        Steps per trajectory: each stores ``n_steps + 1`` samples ``t = 0, dt, ..., n_steps dt``.
    n_steps_test : int, optional
        Steps of the test split (default ``n_steps``); usually longer, for long horizons.
    dt : float
        Sampling interval (> 0), in the system's time unit.
    noise_std : float
        Standard deviation of Gaussian noise added to the stored ``q`` and ``p`` (>= 0); the
        derivatives and energies are always those of the noise-free state.
    seed : int
        Base seed (>= 0); see the module docstring for how trajectories derive theirs.
    overwrite : bool
        Replace an existing file (checked before any computation).
    params : mapping, optional
        System parameters when ``system`` is a name.
    shard : (index, count), optional
        Write only shard ``index`` of ``count`` (see `shard_range`); root attribute
        ``shard = "index/count"``. Splits empty in this shard are not written.
    batch_size : int
        Trajectories per block: one vectorised DOP853 call each, and the unit of sharding.
    rtol, atol : float
        Tolerances of the DOP853 reference, enforced per component (not only as scipy's
        batch RMS; see `simulators.reference`). IAS15 has none to set: it runs at
        float64 round-off (see `simulators.rebound_reference`).
    use_exact : bool
        Use the closed-form flow where the system has one.
    reference : str, optional
        A key of `simulators.reference.REFERENCE_METHODS` to use instead of the system's own
        numerical reference (``"dop853"`` or ``"ias15"``).
    workers : int, optional
        Processes that simulate. ``N >= 2``: each split is cut into chunks of whole
        ``batch_size`` blocks (about four per process), simulated in ``N`` forked processes
        and joined in order. ``1``: this process alone. ``None`` (default): this process,
        except that the IAS15 reference of a large n-body split forks one worker per CPU
        (see `simulators.rebound_reference.integrate_ias15`). Never changes the file: every
        trajectory is computed in the same blocks whatever the number of processes.
    compression : str, optional
        HDF5 compression of the arrays, a key of `hamgrad.data.COMPRESSIONS` (``gzip``,
        ``lzf``); None stores them uncompressed.
    progress : bool
        Show a click progress bar on stderr.

    Returns
    -------
    Path of the written file. Each split's ``max_rel_energy_error`` attribute records
    ``max |H(t) - H(0)| / |H(0)|`` of its reference trajectories (a self-audit).

    Warns
    -----
    CloseEncounterWarning
        Once per split in which trajectories had close encounters (IAS15 reference), naming
        them; their data are kept (IAS15 resolves the encounter; the energy audit tells how
        well).
    """
    if isinstance(system, str):
        system = get_system(system, **dict(params or {}))
    elif params:
        raise ConfigError(
            "params may only be given with a system name, got a System instance and params"
        )
    counts = {
        name: check_int(f"n_{name}", n, minimum=0)
        for name, n in zip(SPLIT_NAMES, (n_train, n_val, n_test), strict=True)
    }
    if sum(counts.values()) == 0:
        raise ConfigError("n_train + n_val + n_test must be >= 1, got 0 trajectories")
    n_steps = check_int("n_steps", n_steps)
    n_steps_test = n_steps if n_steps_test is None else check_int("n_steps_test", n_steps_test)
    dt = check_finite("dt", dt, positive=True)
    noise_std = check_finite("noise_std", noise_std)
    if noise_std < 0:
        raise ConfigError(f"noise_std must be >= 0, got {noise_std!r}")
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size)
    rtol = check_finite("rtol", rtol, positive=True)
    atol = check_finite("atol", atol, positive=True)
    if shard is not None:
        if (
            len(shard) != 2
            or not all(isinstance(v, int) for v in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            raise ConfigError(
                f"shard must be (index, count) with 0 <= index < count, got {shard!r}"
            )
    compression = check_compression(compression)
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path}: file exists; pass overwrite=True (--overwrite) to replace")

    steps = {"train": n_steps, "val": n_steps, "test": n_steps_test}
    ranges = {name: shard_range(n, batch_size, shard) for name, n in counts.items()}
    ranges = {name: r for name, r in ranges.items() if len(r) > 0}
    if not ranges:
        raise ConfigError(
            f"shard {shard[0]}/{shard[1]} holds no trajectories; use fewer shards "  # type: ignore[index]
            f"or a smaller batch_size"
        )
    total = sum(len(r) for r in ranges.values())
    # q, p, dq_dt, dp_dt and energy of every stored sample, once in blocks and once joined.
    held = 2 * 8 * (4 * system.dof + 1) * sum(len(r) * (steps[n] + 1) for n, r in ranges.items())
    check_memory(
        f"simulating {total} trajectories of up to {max(steps.values()) + 1} samples",
        held,
        "use fewer trajectories or steps, or --shard I/N to make the file in parts",
    )
    processes = 1 if workers is None else check_int("workers", workers)
    splits: dict[str, Split] = {}
    hows: set[str] = set()
    with (
        _progress(progress, total, f"simulating {system.name}") as bar,
        _pool(processes) as pool,
    ):
        settings = ReferenceSettings(
            rtol=rtol,
            atol=atol,
            batch_size=batch_size,
            workers=workers if pool is None else 1,  # None: IAS15 may fork its own pool
            progress=bar.update if bar is not None and pool is None else None,
        )
        submit = _run_here if pool is None else pool.submit
        jobs: dict[str, list[tuple[range, Future[_Chunk]]]] = {}
        for name, idx in ranges.items():  # every chunk is submitted before any is awaited
            t = dt * np.arange(steps[name] + 1, dtype=np.float64)
            split_id = SPLIT_NAMES.index(name)
            pieces = [idx] if pool is None else _chunks(idx, batch_size, 4 * processes)
            jobs[name] = [
                (chunk, submit(_simulate, system, seed, split_id, chunk, t, noise_std,
                               reference, use_exact, settings))
                for chunk in pieces
            ]  # fmt: skip
        for name, idx in ranges.items():
            parts = []
            for chunk, job in jobs[name]:
                parts.append(job.result())
                if bar is not None and pool is not None:
                    bar.update(len(chunk))
            cat = {k: np.concatenate([arrays[k] for arrays, _, _ in parts]) for k in parts[0][0]}
            hows.update(h for _, how, _ in parts for h in how.split("; "))
            encounter = None  # unless a chunk's reference detects encounters (IAS15)
            if any(e is not None for _, _, e in parts):
                encounter = np.concatenate(
                    [
                        np.full(len(chunk), np.nan) if e is None else e
                        for (chunk, _), (_, _, e) in zip(jobs[name], parts, strict=True)
                    ]
                )
            rel_error = _rel_energy_error(cat["energy"])
            _report_encounters(system, name, idx, encounter, rel_error)
            t = dt * np.arange(steps[name] + 1, dtype=np.float64)
            splits[name] = Split(t=t, attrs={"max_rel_energy_error": float(rel_error.max())}, **cat)

    attrs: dict[str, Any] = {
        "dof": system.dof,
        "dt": dt,
        "system": system.name,
        "system_params": system.params,
        "seed": seed,
        "noise_std": noise_std,
        "reference": "; ".join(sorted(hows)),
        "created_by": f"hamgrad {__version__} simulators.generate",
        "n_train": counts["train"],
        "n_val": counts["val"],
        "n_test": counts["test"],
        "n_steps": n_steps,
        "n_steps_test": n_steps_test,
        "batch_size": batch_size,
    }
    if shard is not None:
        attrs["shard"] = f"{shard[0]}/{shard[1]}"
    return write_dataset(path, splits, attrs, overwrite=overwrite, compression=compression)
