"""One optimisation step, the unit the training loop repeats: `TrainStep`.

The step is kept lean because on small models its fixed costs rival the network's own:

- the optimizer is built fused where torch has the kernel
  (`hamgrad.training.config.fused_optimizer`): one multi-tensor kernel instead of ~10 small
  ones per parameter tensor;
- the step is split into `TrainStep.forward` and `TrainStep.update` so that the training loop
  can look at the loss in between: it reads the loss sum once per step (one host read, one
  device synchronisation on a GPU), refuses a non-finite loss *before* the update, and under
  ``torchrun`` agrees on it with the other processes in the same all-reduce;
- optionally the objective and its backward are compiled with `torch.compile`
  (``compile=True``); the first steps then pay the compilation, which
  `TrainStep.compile_seconds` reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from hamgrad.models import LearnedModel
from hamgrad.training.losses import Loss

__all__ = ["Objective", "TrainStep"]


class Objective(torch.nn.Module):
    """One step's loss as a module, so that DDP syncs the gradients of the work in ``forward``.

    ``forward(batch, scale)`` returns ``(scale * sum of per-sample losses, that sum detached)``.
    In one process ``scale = 1 / n`` for a batch of ``n`` samples gives the batch mean; under
    ``torchrun`` each rank holds its share of a global batch of ``n`` and ``scale =
    world_size / n``, so DDP's average over ranks is again the global batch mean.

    Parameters
    ----------
    model : LearnedModel
        The model being trained.
    loss : Loss
        Its ``errors(model, batch)`` gives the ``[n]`` per-sample losses.
    """

    def __init__(self, model: LearnedModel, loss: Loss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: dict[str, Tensor], scale: float) -> tuple[Tensor, Tensor]:
        total = self.loss.errors(self.model, batch).sum()
        return total * scale, total.detach()


class TrainStep:
    """``step(batch)``: zero the gradients, loss, backward, clip, optimizer step.

    Parameters
    ----------
    objective : torch.nn.Module
        An `Objective` (or one wrapped in ``DistributedDataParallel``).
    optimizer : torch.optim.Optimizer
        Over the objective's parameters.
    grad_clip : float
        Maximum gradient norm; 0 disables clipping.
    compile : bool
        Compile the objective's forward and backward with `torch.compile` (inductor). Worth
        it for long runs of small models, where a step is dominated by per-kernel overhead
        (BENCHMARKS.md §6 measures when); the first calls compile (tens of seconds on CPU).
        One process that compiles steps for many models reaches torch's recompilation limit
        (8 per function) and then runs them uncompiled; call ``torch._dynamo.reset()``
        between models there.

    Attributes
    ----------
    compile_seconds : float or None
        With ``compile``: wall time of the steps that compiled, i.e. the first step at each
        batch size (a full batch and the epoch's last, smaller one); None without.
    """

    def __init__(
        self,
        objective: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        grad_clip: float = 0.0,
        compile: bool = False,
    ) -> None:
        self.optimizer, self.grad_clip = optimizer, grad_clip
        self._params = [p for p in objective.parameters() if p.requires_grad]
        self._objective: Callable[..., tuple[Tensor, Tensor]] = objective
        self.compile_seconds: float | None = None
        self._compiled_sizes: set[int] | None = None
        self._compiling_since: float | None = None
        if compile:
            # Static shapes: one graph per batch size (two per run), no dynamic-shape kernels.
            self._objective = torch.compile(objective, dynamic=False)
            self.compile_seconds, self._compiled_sizes = 0.0, set()

    def forward(self, batch: dict[str, Tensor], scale: float) -> tuple[Tensor, Tensor]:
        """Zero the gradients and evaluate the objective: ``(scaled loss, detached loss sum)``."""
        if self._compiled_sizes is not None:
            size = next(iter(batch.values())).shape[0]
            if size not in self._compiled_sizes:
                self._compiled_sizes.add(size)
                self._compiling_since = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        return self._objective(batch, scale)

    def update(self, loss: Tensor) -> None:
        """Backward from ``loss`` (the first output of `forward`), clip, optimizer step."""
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        self.optimizer.step()
        if self._compiling_since is not None and self.compile_seconds is not None:
            self.compile_seconds += time.perf_counter() - self._compiling_since
            self._compiling_since = None

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        """One step on ``batch`` towards its mean loss; returns that loss before the update.

        The result is a detached 0-dim tensor on the device: nothing is read to the host.
        """
        n = next(iter(batch.values())).shape[0]
        loss, total = self.forward(batch, 1.0 / n)
        self.update(loss)
        return total / n
