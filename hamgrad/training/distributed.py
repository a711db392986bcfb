"""Training under ``torch.distributed``: which process does what, and how they fail together.

``torchrun --nproc-per-node N -m hamgrad train ...`` starts N processes with the environment of
``torch.distributed``'s ``env://`` rendezvous (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); `process_group` joins them into one process group (or uses
the caller's, when one is already initialised) and yields the `Ranks` every training step
consults. A process started without a launcher needs no process group: the same code runs
with ``Ranks()`` and no collective at all.

Failing together. A process that stops alone would leave the others waiting in a collective,
so errors are agreed on:

- work that can fail on some ranks (setup, one rank's data, rank 0's files) runs through
  `Ranks.together`, which gathers every rank's outcome: if any rank failed, the lowest failing
  rank raises its own error and every other rank raises `PeerFailure`, whose message the CLI
  does not print (so a failure shows as one line, not one per rank);
- every training step reduces one small tensor, the loss sum plus one failure flag per rank
  (`Ranks.step_sum`), so a batch that could not be read on one rank, or a non-finite loss on
  any, stops all ranks at the same step;
- a rank that dies outside these (a crash, a kill) closes its connections: the others' next
  collective fails at once (gloo: "Connection closed by peer"), or after the process-group
  timeout (``TrainConfig.dist_timeout``) if it hangs; they stop with `TrainingError`
  ("lost contact ...").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from hamgrad.errors import ConfigError, HamgradError

__all__ = [
    "BACKENDS",
    "PeerFailure",
    "Ranks",
    "env_rank",
    "local_device",
    "process_group",
    "resolve_backend",
    "will_create_group",
]

#: ``TrainConfig.backend`` values: ``auto`` is NCCL on CUDA and gloo on CPU.
BACKENDS = ("auto", "gloo", "nccl")

T = TypeVar("T")


class PeerFailure(HamgradError):
    """This rank stops because another rank failed; that rank reports the cause.

    The CLI prints nothing for it (``reported_elsewhere``), so the cause appears once.
    """

    reported_elsewhere = True


def env_rank() -> int:
    """This process's rank from the launcher's environment (``RANK``; 0 when unset)."""
    return int(os.environ.get("RANK", "0") or 0)


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _launched() -> bool:
    """True in a process a launcher started (torchrun sets ``WORLD_SIZE`` and ``MASTER_ADDR``)."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def will_create_group() -> bool:
    """True when `process_group` will create a group: a launcher started this process and no
    group exists yet."""
    return _launched() and not (dist.is_available() and dist.is_initialized())


def local_device(device: torch.device) -> torch.device:
    """This rank's GPU, ``cuda:LOCAL_RANK``, when a launcher started several processes on CUDA;
    else ``device`` unchanged. Makes it the current CUDA device (NCCL needs that)."""
    if device.type == "cuda" and device.index is None and _launched():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
        torch.cuda.set_device(device)
    return device


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` -> ``nccl`` for a CUDA device, ``gloo`` otherwise; checks the choice applies.

    Raises
    ------
    ConfigError
        Unknown name, NCCL for a CPU device, or NCCL missing from this torch build.
    """
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise ConfigError(
            "backend 'nccl' needs device cuda (NCCL moves GPU memory only); expected "
            "--backend gloo or auto for a CPU run"
        )
    return name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    """True for the errors a collective raises when a peer died or timed out."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("gloo", "NCCL", "Connection closed", "Timed out", "timed out")
    )


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the collectives it uses.

    Attributes
    ----------
    rank, world_size : int
        This process's rank and the number of processes (0 and 1 without a process group).
    distributed : bool
        True in a process group (even of one process: ``torchrun --nproc-per-node 1`` runs
        the DDP code path); collectives are used only then.
    """

    rank: int = 0
    world_size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0: the one that writes the run directory and reports progress."""
        return self.rank == 0

    def _lost_contact(self, exc: BaseException) -> HamgradError:
        return HamgradError(
            f"rank {self.rank} of {self.world_size}: lost contact with another rank "
            f"({_first_line(exc)}); stopped, that rank's output says why"
        )

    @contextmanager
    def collective(self) -> Iterator[None]:
        """Turn a failed collective (a peer died, or timed out) into one clear error."""
        try:
            yield
        except HamgradError:
            raise
        except Exception as exc:
            if self.distributed and is_connection_error(exc):
                raise self._lost_contact(exc) from None
            raise

    def together(self, fn: Callable[[], T], *, main_only: bool = False) -> T:
        """Run ``fn`` here (or on rank 0 only) and agree on the outcome across ranks.

        Parameters
        ----------
        fn : callable
            The work. Its result must be picklable when ``main_only``.
        main_only : bool
            Run ``fn`` on rank 0 alone and hand its result to every rank.

        Returns
        -------
        ``fn()`` of this rank, or of rank 0 when ``main_only``.

        Raises
        ------
        Exception
            On the lowest rank whose ``fn`` raised: that exception; on every other rank:
            `PeerFailure` naming it.
        """
        result: T | None = None
        error: Exception | None = None
        if not main_only or self.is_main:
            try:
                result = fn()
            except Exception as exc:
                error = exc
        if not self.distributed:
            if error is not None:
                raise error
            return result  # type: ignore[return-value]
        mine = (None if error is None else _first_line(error), result if main_only else None)
        outcomes: list[tuple[str | None, object]] = [(None, None)] * self.world_size
        with self.collective():
            dist.all_gather_object(outcomes, mine)
        failed = [r for r, (message, _) in enumerate(outcomes) if message is not None]
        if failed:
            if failed[0] == self.rank and error is not None:
                raise error
            raise PeerFailure(
                f"rank {self.rank}: stopped because rank {failed[0]} failed: "
                f"{outcomes[failed[0]][0]}"
            )
        return result if not main_only else outcomes[0][1]  # type: ignore[return-value]

    def step_sum(self, values: torch.Tensor, failed: bool) -> tuple[torch.Tensor, int | None]:
        """Sum ``values`` over ranks, with one failure flag per rank, in one all-reduce.

        Parameters
        ----------
        values : Tensor
            Numbers to sum (any shape; summed element-wise in float64).
        failed : bool
            Whether this rank failed (its ``values`` are then ignored by the caller).

        Returns
        -------
        (total, first_failed) : the sums (float64, on the CPU, shape of ``values``) and the
        lowest rank that set ``failed`` (None when none did).
        """
        flat = values.detach().reshape(-1).to(torch.float64)
        if not self.distributed:
            return flat.cpu().reshape(values.shape), (0 if failed else None)
        # NCCL reduces GPU memory only (its current device); gloo either.
        device = torch.device("cuda") if dist.get_backend() == "nccl" else flat.device
        packed = torch.zeros(flat.numel() + self.world_size, dtype=torch.float64, device=device)
        packed[: flat.numel()] = flat
        packed[flat.numel() + self.rank] = float(failed)
        with self.collective():
            dist.all_reduce(packed)
        packed = packed.cpu()
        flags = packed[flat.numel() :]
        first = int(flags.nonzero()[0, 0]) if bool(flags.any()) else None
        return packed[: flat.numel()].reshape(values.shape), first


@contextmanager
def process_group(backend: str, device: torch.device, timeout_s: float) -> Iterator[Ranks]:
    """The `Ranks` of this process: from an existing process group, the launcher, or alone.

    An initialised default group (a caller's own) is used as it is and left open. Otherwise,
    in a process a launcher started (``torchrun``: ``WORLD_SIZE`` and ``MASTER_ADDR`` in the
    environment, even with one process), a group is created with ``backend`` (see
    `resolve_backend`) through ``env://`` and destroyed on exit; else the process trains
    alone.

    Parameters
    ----------
    backend : str
        ``auto``, ``gloo`` or ``nccl``.
    device : torch.device
        This rank's device (chooses ``auto``'s backend).
    timeout_s : float
        Seconds a collective waits for the other ranks before failing.
    """
    if dist.is_available() and dist.is_initialized():
        yield Ranks(dist.get_rank(), dist.get_world_size(), distributed=True)
        return
    if not _launched():
        yield Ranks()
        return
    if not dist.is_available():
        raise ConfigError("started by a launcher but this torch build has no torch.distributed")
    name = resolve_backend(backend, device)
    if name == "nccl" and not dist.is_nccl_available():
        raise ConfigError("backend 'nccl' is not available in this torch build; expected gloo")
    ranks = Ranks(env_rank(), _env_world_size(), distributed=True)
    with ranks.collective():
        dist.init_process_group(name, timeout=timedelta(seconds=timeout_s))
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
