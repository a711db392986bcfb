"""SampleSet: the order of an epoch, shards of it, and the memory a streamed split uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hamgrad.data import Split
from hamgrad.training.samples import BLOCKS_PER_BUFFER, SampleSet

N_TRAJ, N_T, DOF = 23, 7, 2


@pytest.fixture
def split(rng) -> Split:
    shape = (N_TRAJ, N_T, DOF)
    # q encodes (trajectory, time) so every sample can be identified in a batch.
    q = np.broadcast_to(
        (100 * np.arange(N_TRAJ)[:, None] + np.arange(N_T)[None, :])[..., None], shape
    ).astype(np.float64)
    return Split(t=0.1 * np.arange(N_T), q=q.copy(), p=rng.standard_normal(shape))


class _Counting:
    """A source that records the trajectories each read asks for."""

    def __init__(self, split: Split) -> None:
        self.split, self.reads = split, []
        self.t, self.fields = split.t, split.fields

    n_traj = property(lambda self: self.split.n_traj)
    n_t = property(lambda self: self.split.n_t)

    def read(self, start, stop, names=None):
        self.reads.append(stop - start)
        return self.split.read(start, stop, names)


def _ids(batch) -> list[tuple[int, int]]:
    q = batch["q"]
    first = q[:, 0, 0] if q.dim() == 3 else q[:, 0]
    return [(int(v) // 100, int(v) % 100) for v in first]


def _epoch(samples: SampleSet, batch_size: int, seed: int, rank=0, world=1):
    g = torch.Generator().manual_seed(seed)
    return list(samples.batches(batch_size, g, rank, world))


def test_a_split_that_fits_keeps_the_order_of_one_permutation(split):
    """Resident: the batches of ``randperm(n)`` over the flattened samples (as in 0.2)."""
    samples = SampleSet(split, ("q", "p"), None, torch.float64, torch.device("cpu"))
    assert samples.resident
    flat_q = torch.as_tensor(split.q).flatten(0, 1)
    order = torch.randperm(N_TRAJ * N_T, generator=torch.Generator().manual_seed(5))
    got = _epoch(samples, 10, seed=5)
    want = [flat_q[order[i : i + 10]] for i in range(0, N_TRAJ * N_T, 10)]
    assert [n for _, n in got] == [len(w) for w in want]
    for (batch, _), w in zip(got, want, strict=True):
        assert torch.equal(batch["q"], w)


@pytest.mark.parametrize("window", [None, 3])
def test_a_streamed_epoch_covers_every_sample_once_within_the_buffer(split, window):
    source = _Counting(split)
    row = N_T * DOF * 2 * 8  # bytes of one trajectory of q and p in float64
    samples = SampleSet(source, ("q", "p"), window, torch.float64, torch.device("cpu"), 8 * row)
    assert not samples.resident and samples.block_traj == 2
    source.reads.clear()
    batches = _epoch(samples, 16, seed=1)
    seen = [s for batch, _ in batches for s in _ids(batch)]
    per_traj = N_T - (window or 1) + 1
    assert sorted(seen) == [(i, s) for i in range(N_TRAJ) for s in range(per_traj)]
    assert max(source.reads) <= samples.block_traj  # one block at a time ...
    assert len(source.reads) == 2 * -(-N_TRAJ // 2)  # ... of each field, once per epoch
    # A window holds consecutive states of one trajectory.
    if window:
        q = torch.cat([b["q"][..., 0] for b, _ in batches])
        assert torch.equal(q[:, 1:] - q[:, :-1], torch.ones(len(q), window - 1))
    # Shuffled across blocks (not in file order), deterministic from the seed alone.
    assert seen != sorted(seen)
    again = [s for batch, _ in _epoch(samples, 16, seed=1) for s in _ids(batch)]
    assert again == seen
    assert BLOCKS_PER_BUFFER * samples.block_traj * row <= 8 * row


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("buffer_traj", [100, 3])
def test_ranks_take_disjoint_contiguous_shares_of_each_global_batch(split, world, buffer_traj):
    row = N_T * DOF * 2 * 8
    samples = SampleSet(split, ("q", "p"), 2, torch.float64, torch.device("cpu"), buffer_traj * row)
    single = _epoch(samples, 25, seed=7)
    shares = [_epoch(samples, 25, seed=7, rank=r, world=world) for r in range(world)]
    assert all(len(s) == len(single) for s in shares)
    for i, (batch, n) in enumerate(single):
        parts = [shares[r][i] for r in range(world)]
        assert all(m == n for _, m in parts)
        joined = [s for part, _ in parts for s in _ids(part)]
        assert joined == _ids(batch)
        sizes = [len(part["q"]) for part, _ in parts]
        assert sizes == [n * (r + 1) // world - n * r // world for r in range(world)]


def test_a_last_batch_smaller_than_the_ranks_leaves_some_empty(split):
    samples = SampleSet(split, ("q", "p"), None, torch.float64, torch.device("cpu"))
    total = N_TRAJ * N_T  # 161 = 160 + 1
    last = [list(samples.batches(160, None, r, 2))[-1] for r in range(2)]
    assert [n for _, n in last] == [total - 160] * 2
    assert [len(b["q"]) for b, _ in last] == [0, 1]
    assert last[0][0]["q"].shape == (0, DOF) and samples.empty()["q"].shape == (0, DOF)
