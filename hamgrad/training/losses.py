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

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from hamgrad.data import TrajectorySource
from hamgrad.errors import ConfigError
from hamgrad.integrators import Integrator, rollout
from hamgrad.integrators.registry import check_adjoint
from hamgrad.models import LearnedModel
from hamgrad.training.config import parse_loss
from hamgrad.training.samples import DEFAULT_BUFFER_BYTES, SampleSet

__all__ = ["DerivativeLoss", "Loss", "RolloutLoss", "SampleSet", "build_loss", "has_derivatives"]

#: Unroll length used by ``loss = "auto"`` when the data has no derivatives.
AUTO_ROLLOUT_STEPS = 4


def has_derivatives(split: TrajectorySource) -> bool:
    """True when a split (`hamgrad.data.Split` or `SplitReader`) stores ``dq_dt`` and ``dp_dt``."""
    return {"dq_dt", "dp_dt"} <= set(split.fields)


class Loss(ABC):
    """What the training loop needs from a loss: its samples and the loss of each.

    A sample is a window of ``window`` consecutive states (None: a single state) carrying the
    dataset arrays ``fields``. The training loop sums `errors` (so that distributed ranks add
    up to the mean of a global batch); calling the loss gives the mean over a batch.
    """

    spec: str
    fields: tuple[str, ...]
    window: int | None

    @abstractmethod
    def check(self, split: TrajectorySource) -> None:
        """Raise `ConfigError` when ``split`` cannot give this loss's samples."""

    @abstractmethod
    def errors(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        """Loss of each sample of the batch, shape ``[n]`` (``n`` may be 0)."""

    def samples(
        self,
        split: TrajectorySource,
        dtype: torch.dtype,
        device: torch.device,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> SampleSet:
        """Every window of the split (`SampleSet`), held or streamed within ``buffer_bytes``."""
        self.check(split)
        return SampleSet(split, self.fields, self.window, dtype, device, buffer_bytes)

    def __call__(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        return self.errors(model, batch).mean()


class DerivativeLoss(Loss):
    """Mean squared norm of the error in ``(dq/dt, dp/dt)`` over every stored state.

    Samples are single states with their derivatives: batches of ``[n, dof]`` per field.
    """

    spec = "derivative"
    fields = ("q", "p", "dq_dt", "dp_dt")
    window = None

    def check(self, split: TrajectorySource) -> None:
        """The split must store ``dq_dt`` and ``dp_dt``."""
        if not has_derivatives(split):
            raise ConfigError(
                "loss 'derivative' needs dq_dt and dp_dt in the dataset, which "
                "this split lacks; expected a file with derivatives or "
                "loss 'rollout:K'"
            )

    def errors(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        """``|dq̂/dt - dq/dt|² + |dp̂/dt - dp/dt|²`` per sample, shape ``[n]``."""
        dq, dp = model.time_derivative(batch["q"], batch["p"])
        return (dq - batch["dq_dt"]).square().sum(-1) + (dp - batch["dp_dt"]).square().sum(-1)


class RolloutLoss(Loss):
    """Unroll ``k`` observation intervals of ``integrator`` from each state; match observations.

    Samples are windows of ``k + 1`` consecutive observations: ``q, p`` of ``[n, k+1, dof]``.

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
        the same gradient, in memory growing as √k instead of k. The integrator must support it.
    """

    fields = ("q", "p")

    def __init__(
        self, k: int, integrator: Integrator, dt: float, substeps: int = 1, adjoint: bool = False
    ) -> None:
        self.k, self.integrator, self.dt, self.substeps = k, integrator, dt, substeps
        self.adjoint = adjoint
        self.spec = f"rollout:{k}"
        self.window = k + 1

    def check(self, split: TrajectorySource) -> None:
        """Trajectories must hold at least ``k + 1`` samples."""
        if split.n_t < self.k + 1:
            raise ConfigError(
                f"loss rollout:{self.k} needs trajectories of at least "
                f"{self.k + 1} samples, got n_t={split.n_t}"
            )

    def errors(self, model: LearnedModel, batch: dict[str, Tensor]) -> Tensor:
        """Mean over the ``k`` predicted states of ``|x̂_{i+k} - x_{i+k}|²``, shape ``[n]``."""
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
        return err[:, 1:].mean(-1)


def build_loss(
    spec: str,
    model: LearnedModel,
    train_split: TrajectorySource,
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
