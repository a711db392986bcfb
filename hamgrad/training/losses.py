"""Training losses: match derivatives, or match K observations after unrolling an integrator.

Both are the mean over samples of a squared norm summed over coordinates, the convention of the
dB metric (``10 log10`` of this number is the error in dB). Both are evaluated on the whole batch
at once; nothing loops over samples in Python.

- ``derivative``: ``|dq̂/dt - dq/dt|² + |dp̂/dt - dp/dt|²`` at every stored state. For a
  GradNet model the vector field is one forward pass, so the step needs one backward pass.
- ``rollout:K``: from every observed state ``x_i`` unroll K steps of an integrator
  (`hamgrad.integrators.rollout`, differentiable) and average ``|x̂_{i+k} - x_{i+k}|²`` over
  ``k = 1..K`` (the recurrent loss of Chen et al., "Symplectic Recurrent Neural Networks",
  ICLR 2020). Works on files with trajectories only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from hamgrad.data import Split
from hamgrad.errors import ConfigError
from hamgrad.integrators import Integrator, rollout
from hamgrad.integrators.registry import check_adjoint
from hamgrad.models import LearnedModel
from hamgrad.training.config import parse_loss

__all__ = ["DerivativeLoss", "Loss", "RolloutLoss", "SampleSet", "build_loss", "has_derivatives"]

#: Unroll length used by ``loss = "auto"`` when the data has no derivatives.
AUTO_ROLLOUT_STEPS = 4


@dataclass
class SampleSet:
    """Tensors sharing a leading sample axis, served in (shuffled) batches.

    Attributes
    ----------
    tensors : dict of str to Tensor
        Each ``[n, ...]`` with the same ``n``.
    """

    tensors: dict[str, Tensor]

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, Tensor]]:
        """Yield batches; shuffled with ``generator`` when given, else in order."""
        n = len(self)
        if generator is None:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=generator)
        device = next(iter(self.tensors.values())).device
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size].to(device)
            yield {k: v.index_select(0, idx) for k, v in self.tensors.items()}


def _tensor(x: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def has_derivatives(split: Split) -> bool:
    """True when a `hamgrad.data.Split` stores both ``dq_dt`` and ``dp_dt``."""
    return split.dq_dt is not None and split.dp_dt is not None


class Loss(Protocol):
    """What the training loop needs from a loss."""

    spec: str

    def samples(self, split: Split, dtype: torch.dtype, device: torch.device) -> SampleSet:
        """Training samples from a `hamgrad.data.Split`."""
        ...

    def __call__(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        """Mean loss over the batch (0-dim tensor)."""
        ...


class DerivativeLoss:
    """Mean squared norm of the error in ``(dq/dt, dp/dt)`` over every stored state."""

    spec = "derivative"

    def samples(self, split: Split, dtype: torch.dtype, device: torch.device) -> SampleSet:
        """Flatten ``q, p, dq_dt, dp_dt`` of ``[n_traj, n_t, dof]`` into ``[n_traj*n_t, dof]``."""
        if not has_derivatives(split):
            raise ConfigError(
                "loss 'derivative' needs dq_dt and dp_dt in the dataset, which "
                "this split lacks; expected a file with derivatives or "
                "loss 'rollout:K'"
            )
        names = ("q", "p", "dq_dt", "dp_dt")
        return SampleSet(
            {k: _tensor(getattr(split, k), dtype, device).flatten(0, 1) for k in names}
        )

    def __call__(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        dq, dp = model.time_derivative(batch["q"], batch["p"])
        err = (dq - batch["dq_dt"]).square().sum(-1) + (dp - batch["dp_dt"]).square().sum(-1)
        return err.mean()


class RolloutLoss:
    """Unroll ``k`` observation intervals of ``integrator`` from each state; match observations.

    Parameters
    ----------
    k : int
        Observation intervals unrolled per sample (K of ``rollout:K``).
    integrator : Integrator
        Resolved once (and checked against the model) by `build_loss`; every batch reuses it.
    dt : float
        Observation interval of the data (time units).
    substeps : int
        Integrator steps per observation interval (step ``dt / substeps``).
    adjoint : bool
        Differentiate the unroll by the discrete adjoint (``rollout(..., adjoint=True)``):
        the same gradient, memory independent of ``k``. The integrator must support it.
    """

    def __init__(
        self, k: int, integrator: Integrator, dt: float, substeps: int = 1, adjoint: bool = False
    ) -> None:
        self.k, self.integrator, self.dt, self.substeps = k, integrator, dt, substeps
        self.adjoint = adjoint
        self.spec = f"rollout:{k}"

    def samples(self, split: Split, dtype: torch.dtype, device: torch.device) -> SampleSet:
        """Every window of ``k + 1`` consecutive observations: ``q, p`` of ``[n, k+1, dof]``."""
        q, p = _tensor(split.q, dtype, device), _tensor(split.p, dtype, device)
        n_t = q.shape[1]
        if n_t < self.k + 1:
            raise ConfigError(
                f"loss rollout:{self.k} needs trajectories of at least "
                f"{self.k + 1} samples, got n_t={n_t}"
            )

        def windows(x: Tensor) -> Tensor:
            # unfold: [n_traj, n_t - k, dof, k + 1] -> [n_traj * (n_t - k), k + 1, dof]
            return x.unfold(1, self.k + 1, 1).movedim(-1, -2).flatten(0, 1).contiguous()

        return SampleSet({"q": windows(q), "p": windows(p)})

    def __call__(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        q, p = batch["q"], batch["p"]
        traj = rollout(
            model,
            q[:, 0],
            p[:, 0],
            self.dt / self.substeps,
            self.k * self.substeps,
            method=self.integrator,
            save_every=self.substeps,
            adjoint=self.adjoint,
        )
        err = (traj.q - q).square().sum(-1) + (traj.p - p).square().sum(-1)
        return err[:, 1:].mean()


def build_loss(
    spec: str,
    model: LearnedModel,
    train_split: Split,
    dt: float,
    method: str | Integrator | None = None,
    substeps: int = 1,
    *,
    adjoint: bool = False,
    **options: Any,
) -> Loss:
    """The loss named by ``spec`` (``auto`` / ``derivative`` / ``rollout:K``) for this data.

    ``auto`` is ``derivative`` when the training split stores derivatives, else
    ``rollout:4``. The rollout integrator (``method`` with ``options``) defaults to the
    model's ``train_integrator``; it is resolved and checked to apply here, once, and with
    ``adjoint`` checked to support the adjoint (`hamgrad.integrators.adjoint`).
    """
    kind, k = parse_loss(spec)
    if kind == "auto":
        kind, k = (
            ("derivative", 0) if has_derivatives(train_split) else ("rollout", AUTO_ROLLOUT_STEPS)
        )
    if kind == "derivative":
        if adjoint:
            raise ConfigError(
                f"adjoint differentiates a rollout:K loss, but loss {spec!r} is the derivative "
                "loss here; expected loss 'rollout:K' or no adjoint"
            )
        return DerivativeLoss()
    integrator = model.integrator(method, training=True, **options)
    if adjoint:
        check_adjoint(integrator, model)
    return RolloutLoss(k, integrator, dt, substeps, adjoint)
