"""Tiny datasets for the model / training / evaluation / CLI tests, plus checks of them.

Data come from `simulators.generate` (exact flows for spring and pendulum), never from hamgrad's
own integrators. Kept small so the whole suite of these tests stays within its time budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hamgrad.data import Split, load_dataset, write_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest single-threaded (and are not slowed by a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_dataset(
    path: Path,
    system: str = "pendulum",
    n_train: int = 16,
    n_val: int = 4,
    n_test: int = 3,
    n_steps: int = 30,
    n_steps_test: int = 60,
    dt: float = 0.1,
    seed: int = 0,
) -> Path:
    """Generate a small dataset with derivatives and energies."""
    from simulators.generate import generate

    return generate(
        system,
        path,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_steps=n_steps,
        n_steps_test=n_steps_test,
        dt=dt,
        seed=seed,
    )


def strip_to_trajectories(src: Path, dst: Path, drop_splits: tuple[str, ...] = ()) -> Path:
    """Copy ``src`` keeping only the required fields (t, q, p) and root dof/dt/system."""
    ds = load_dataset(src)
    splits = {
        name: Split(t=s.t, q=s.q, p=s.p) for name, s in ds.splits.items() if name not in drop_splits
    }
    attrs = {"dof": ds.dof, "dt": ds.dt}
    if ds.system:
        attrs.update(system=ds.system, system_params=ds.system_params)
    return write_dataset(dst, splits, attrs)


def test_helpers_make_valid_files(tmp_path):
    full = make_dataset(tmp_path / "p.h5", n_train=2, n_val=1, n_test=1, n_steps=4, n_steps_test=6)
    bare = strip_to_trajectories(full, tmp_path / "bare.h5", drop_splits=("val",))
    ds = load_dataset(bare)
    assert sorted(ds.splits) == ["test", "train"]
    assert ds.splits["train"].dq_dt is None and ds.splits["test"].n_t == 7
    np.testing.assert_array_equal(ds.splits["train"].q, load_dataset(full).splits["train"].q)
