"""Training samples cut from trajectories: held in memory, or streamed from the file in blocks.

A sample is a window of ``window`` consecutive states of one trajectory (one state with its
derivatives for the derivative loss; ``K + 1`` states for ``rollout:K``). Sample ``j`` is the
window of trajectory ``j // per_traj`` that starts at time index ``j % per_traj`` (``per_traj =
n_t - window + 1``). Windows are gathered from buffered trajectories when a batch is made, so
the buffer holds each state once whatever ``K`` is.

The order of an epoch depends on the shuffling generator alone, never on the number of
processes:

- a split whose samples fit in the buffer (``buffer_bytes``) is read once and kept; an epoch
  is one ``torch.randperm`` of all its samples;
- a larger split is cut into blocks of `SampleSet.block_traj` trajectories; an epoch permutes
  the blocks, reads them `BLOCKS_PER_BUFFER` at a time and permutes the samples of each
  buffer.

That order is cut into global batches of ``batch_size`` consecutive samples; under
``torch.distributed`` rank ``r`` of ``W`` takes the contiguous part ``[n r / W, n (r+1) / W)``
of each global batch of ``n`` samples, so the ranks see disjoint shards whose union is exactly
the single-process batch. Every rank reads every block (from the file, through the operating
system's page cache on one machine) and keeps only its share.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from hamgrad.data import TrajectorySource

__all__ = ["BLOCKS_PER_BUFFER", "DEFAULT_BUFFER_BYTES", "SampleSet"]

#: Bytes of training tensors a `SampleSet` holds by default (`TrainConfig.buffer_mib`).
DEFAULT_BUFFER_BYTES = 256 << 20
#: Blocks a streamed split reads into one buffer: the shuffle mixes samples of this many
#: random blocks at once.
BLOCKS_PER_BUFFER = 4

Batch = dict[str, Tensor]


class SampleSet:
    """The samples of one split, served in (shuffled, sharded) batches.

    Parameters
    ----------
    source : TrajectorySource
        An in-memory `hamgrad.data.Split` or a lazy `hamgrad.data.SplitReader`.
    fields : sequence of str
        Arrays each sample carries (``q``, ``p``, and ``dq_dt``, ``dp_dt`` for the derivative
        loss), each ``[n_traj, n_t, dof]`` in the source.
    window : int or None
        States per sample; a batch holds ``[n, window, dof]`` per field. ``None`` means one
        state without a time axis (``[n, dof]``).
    dtype, device
        Where the batches live.
    buffer_bytes : int
        Most bytes of trajectories held at once (``n_t * dof * len(fields)`` elements of
        ``dtype`` per trajectory); see the module docstring.
    """

    def __init__(
        self,
        source: TrajectorySource,
        fields: Sequence[str],
        window: int | None,
        dtype: torch.dtype,
        device: torch.device,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        self.source, self.fields, self.window = source, tuple(fields), window
        self.dtype, self.device = dtype, device
        self.per_traj = source.n_t - (window or 1) + 1
        row = source.read(0, 1, self.fields)
        self._state_shapes = {name: tuple(arr.shape[2:]) for name, arr in row.items()}
        itemsize = torch.empty((), dtype=dtype).element_size()
        traj_bytes = sum(a[0].size for a in row.values()) * itemsize
        n_traj = source.n_traj
        if n_traj * traj_bytes <= buffer_bytes:
            #: Trajectories per block; the whole split when it fits in the buffer.
            self.block_traj = n_traj
        else:
            self.block_traj = max(1, buffer_bytes // (BLOCKS_PER_BUFFER * traj_bytes))
        self._resident: Batch | None = None

    @property
    def resident(self) -> bool:
        """True when the whole split is held in memory (read once, kept across epochs)."""
        return self.block_traj == self.source.n_traj

    def __len__(self) -> int:
        return self.source.n_traj * self.per_traj

    def _load(self, blocks: Sequence[int]) -> Batch:
        """Trajectories of ``blocks`` (in that order), each field ``[m, n_t, dof]``."""
        size = self.block_traj
        ranges = [(b * size, min((b + 1) * size, self.source.n_traj)) for b in blocks]
        m = sum(hi - lo for lo, hi in ranges)
        buffer: Batch = {}
        offset = 0
        for lo, hi in ranges:
            for name in self.fields:  # one array at a time: a block of one field is transient
                arr = self.source.read(lo, hi, [name])[name]
                if name not in buffer:
                    shape = (m, *arr.shape[1:])
                    buffer[name] = torch.empty(shape, dtype=self.dtype, device=self.device)
                buffer[name][offset : offset + hi - lo].copy_(torch.from_numpy(arr))
            offset += hi - lo
        return buffer

    def _segments(self, generator: torch.Generator | None) -> Iterator[tuple[Batch, Tensor]]:
        """``(buffer, order of its samples)`` for one epoch, in epoch order."""

        def order(n: int) -> Tensor:
            return torch.arange(n) if generator is None else torch.randperm(n, generator=generator)

        if self.resident:
            if self._resident is None:
                self._resident = self._load([0])
            yield self._resident, order(len(self))
            return
        n_blocks = math.ceil(self.source.n_traj / self.block_traj)
        blocks = order(n_blocks).tolist()
        for i in range(0, n_blocks, BLOCKS_PER_BUFFER):
            buffer = self._load(blocks[i : i + BLOCKS_PER_BUFFER])
            yield buffer, order(buffer[self.fields[0]].shape[0] * self.per_traj)
            del buffer  # freed before the next one is read: one buffer in memory at a time

    def _gather(self, buffer: Batch, index: Tensor) -> Batch:
        """The samples ``index`` (positions in ``buffer``'s traj-major sample numbering)."""
        index = index.to(self.device)
        n_t = self.source.n_t
        if self.window is None:  # per_traj == n_t: a sample's number is its state's row
            rows = index
        else:  # the rows of each window's states, [n, window] -> flat
            first = index // self.per_traj * n_t + index % self.per_traj
            rows = (first[:, None] + torch.arange(self.window, device=self.device)).flatten()
        out = {}
        for name in self.fields:
            states = buffer[name].flatten(0, 1).index_select(0, rows)
            out[name] = states if self.window is None else states.unflatten(0, (-1, self.window))
        return out

    def empty(self) -> Batch:
        """A batch of no samples (what a rank holds of a global batch smaller than the ranks)."""
        lead = (0,) if self.window is None else (0, self.window)
        return {
            name: torch.empty((*lead, *shape), dtype=self.dtype, device=self.device)
            for name, shape in self._state_shapes.items()
        }

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[Batch, int]]:
        """Yield this rank's part of each global batch, with the global batch's size.

        Parameters
        ----------
        batch_size : int
            Samples per global batch (the last may be smaller).
        generator : torch.Generator, optional
            Shuffles the epoch (see the module docstring); in order when None.
        rank, world_size : int
            This process's part of each global batch: samples ``[n r / W, n (r+1) / W)`` of
            a global batch of ``n`` (possibly none).

        Yields
        ------
        (batch, n) : dict of str to Tensor, int
            This rank's samples (``[n_r, ...]`` per field) and ``n``, the global batch size.
        """
        total = len(self)
        lo = offset = 0  # the current global batch starts at lo; the segment at offset
        pieces: list[Batch] = []
        for buffer, order in self._segments(generator):
            end = offset + len(order)
            while lo < end:
                hi = min(lo + batch_size, total)
                a = lo + (hi - lo) * rank // world_size
                b = lo + (hi - lo) * (rank + 1) // world_size
                first, last = max(a, offset), min(b, end)
                if first < last:
                    pieces.append(self._gather(buffer, order[first - offset : last - offset]))
                if hi > end:
                    break  # this global batch continues in the next buffer
                yield _concat(pieces) if pieces else self._gather(buffer, order[:0]), hi - lo
                pieces, lo = [], hi
            offset = end
            del buffer, order  # (see _segments)


def _concat(pieces: list[Batch]) -> Batch:
    if len(pieces) == 1:
        return pieces[0]
    return {name: torch.cat([p[name] for p in pieces]) for name in pieces[0]}
