"""Generate a version-1 HDF5 dataset from a system: `generate` (API).

Determinism: trajectory ``i`` of split ``s`` draws its initial state, then its observation
noise, from ``numpy.random.default_rng([seed, s, i])`` alone (``s`` = 0, 1, 2 for train, val,
test). Numerical references are integrated in blocks of ``batch_size`` trajectories whose
boundaries are fixed multiples of ``batch_size``, so trajectory ``i`` is computed together
with the same neighbours whichever shard computes it: the same seed gives the same bytes, and
shards ``(0, n) ... (n-1, n)`` concatenated (`hamgrad.data.concatenate_datasets`) give the
unsharded file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hamgrad import __version__
from hamgrad.data import SPLIT_NAMES, Split, write_dataset
from hamgrad.errors import ConfigError, DatasetError, check_finite, check_int
from simulators.base import System
from simulators.reference import reference_solution
from simulators.registry import get_system

__all__ = ["generate", "shard_range"]


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
        raise ConfigError(f"{system.name}.sample_state must return two arrays of shape "
                          f"[{system.dof}], got {q.shape} and {p.shape}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
        raise ConfigError(f"{system.name}.sample_state returned non-finite values")
    return q, p


def _block(system: System, seed: int, split_id: int, idx: range, t: np.ndarray,
           noise_std: float, rtol: float, atol: float, use_exact: bool,
           ) -> tuple[dict[str, np.ndarray], str]:
    rngs = [np.random.default_rng([seed, split_id, i]) for i in idx]
    states = [_sample(system, rng) for rng in rngs]
    q0 = np.stack([s[0] for s in states])
    p0 = np.stack([s[1] for s in states])
    q, p, how = reference_solution(system, q0, p0, t, rtol=rtol, atol=atol,
                                   use_exact=use_exact)
    tq, tp = torch.from_numpy(q), torch.from_numpy(p)
    dq, dp = system.time_derivative(tq, tp)
    out = {"dq_dt": dq.numpy().copy(), "dp_dt": dp.numpy().copy(),
           "energy": system.hamiltonian(tq, tp).numpy().copy()}
    if noise_std > 0:
        # Drawn after the state from the same per-trajectory generator: depends on (seed, i).
        noise = np.stack([rng.standard_normal((2, *q.shape[1:])) for rng in rngs])
        q, p = q + noise_std * noise[:, 0], p + noise_std * noise[:, 1]
    out.update(q=q, p=p)
    return out, how


def _max_rel_energy_error(energy: np.ndarray) -> float:
    e0 = energy[:, :1]
    return float(np.max(np.abs(energy - e0) / np.maximum(np.abs(e0), np.finfo(float).tiny)))


@contextlib.contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    import click  # only the CLI path shows a bar

    with click.progressbar(length=total, label=label, file=None) as bar:
        yield bar


def generate(system: System | str, path: str | os.PathLike[str], *, n_train: int,
             n_val: int, n_test: int, n_steps: int, n_steps_test: int | None = None,
             dt: float, noise_std: float = 0.0, seed: int = 0, overwrite: bool = False,
             params: Mapping[str, Any] | None = None, shard: tuple[int, int] | None = None,
             batch_size: int = 32, rtol: float = 1e-12, atol: float = 1e-12,
             use_exact: bool = True, progress: bool = False) -> Path:
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
        Trajectories per reference block (one vectorised DOP853 call each).
    rtol, atol : float
        Tolerances of the numerical reference, enforced per component (not only as scipy's
        batch RMS; see `simulators.reference`).
    use_exact : bool
        Use the closed-form flow where the system has one.
    progress : bool
        Show a click progress bar on stderr.

    Returns
    -------
    Path of the written file. Each split's ``max_rel_energy_error`` attribute records
    ``max |H(t) - H(0)| / |H(0)|`` of its reference trajectories (a self-audit).
    """
    if isinstance(system, str):
        system = get_system(system, **dict(params or {}))
    elif params:
        raise ConfigError("params may only be given with a system name, got a System instance "
                          "and params")
    counts = {name: check_int(f"n_{name}", n, minimum=0)
              for name, n in zip(SPLIT_NAMES, (n_train, n_val, n_test), strict=True)}
    if sum(counts.values()) == 0:
        raise ConfigError("n_train + n_val + n_test must be >= 1, got 0 trajectories")
    n_steps = check_int("n_steps", n_steps)
    n_steps_test = n_steps if n_steps_test is None else check_int("n_steps_test",
                                                                           n_steps_test)
    dt = check_finite("dt", dt, positive=True)
    noise_std = check_finite("noise_std", noise_std)
    if noise_std < 0:
        raise ConfigError(f"noise_std must be >= 0, got {noise_std!r}")
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size)
    rtol = check_finite("rtol", rtol, positive=True)
    atol = check_finite("atol", atol, positive=True)
    if shard is not None:
        if (len(shard) != 2 or not all(isinstance(v, int) for v in shard)
                or not 0 <= shard[0] < shard[1]):
            raise ConfigError(f"shard must be (index, count) with 0 <= index < count, got "
                              f"{shard!r}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path}: file exists; pass overwrite=True (--overwrite) to replace")

    steps = {"train": n_steps, "val": n_steps, "test": n_steps_test}
    ranges = {name: shard_range(n, batch_size, shard) for name, n in counts.items()}
    ranges = {name: r for name, r in ranges.items() if len(r) > 0}
    if not ranges:
        raise ConfigError(f"shard {shard[0]}/{shard[1]} holds no trajectories; use fewer shards "  # type: ignore[index]
                          f"or a smaller batch_size")
    total = sum(len(r) for r in ranges.values())
    splits: dict[str, Split] = {}
    hows: set[str] = set()
    with _progress(progress, total, f"simulating {system.name}") as bar:
        for name, idx in ranges.items():
            split_id = SPLIT_NAMES.index(name)
            t = dt * np.arange(steps[name] + 1, dtype=np.float64)
            blocks = []
            for start in range(idx.start, idx.stop, batch_size):
                block = range(start, min(start + batch_size, idx.stop))
                data, how = _block(system, seed, split_id, block, t, noise_std, rtol, atol,
                                   use_exact)
                blocks.append(data)
                hows.add(how)
                if bar is not None:
                    bar.update(len(block))
            cat = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
            splits[name] = Split(t=t, attrs={"max_rel_energy_error":
                                             _max_rel_energy_error(cat["energy"])}, **cat)

    attrs: dict[str, Any] = {
        "dof": system.dof, "dt": dt, "system": system.name, "system_params": system.params,
        "seed": seed, "noise_std": noise_std, "reference": "; ".join(sorted(hows)),
        "created_by": f"hamgrad {__version__} simulators.generate",
        "n_train": counts["train"], "n_val": counts["val"], "n_test": counts["test"],
        "n_steps": n_steps, "n_steps_test": n_steps_test, "batch_size": batch_size,
    }
    if shard is not None:
        attrs["shard"] = f"{shard[0]}/{shard[1]}"
    return write_dataset(path, splits, attrs, overwrite=overwrite)
