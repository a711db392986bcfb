"""One optimisation step, the unit the training loop repeats: `TrainStep`.

The step is kept lean because on small models its fixed costs rival the network's own:

- the optimizer is built fused where torch has the kernel (`fused_optimizer`): one
  multi-tensor kernel instead of ~10 small ones per parameter tensor;
- nothing is read back to the host: the loss comes back as a 0-dim tensor, and the caller
  checks finiteness when it wants (the loop: every `CHECK_EVERY` steps and at the end of each
  epoch), so on a GPU the step never waits for the device;
- optionally the loss and its backward are compiled with `torch.compile` (``compile=True``);
  the first steps then pay the compilation, which `TrainStep.compile_seconds` reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from hamgrad.models import LearnedModel

__all__ = ["CHECK_EVERY", "TrainStep", "fused_optimizer"]

#: Steps between two finiteness checks of the running loss in the training loop.
CHECK_EVERY = 50


def fused_optimizer(
    cls: Callable[..., torch.optim.Optimizer],
) -> Callable[..., torch.optim.Optimizer]:
    """A builder of optimizer ``cls`` (Adam, AdamW) that asks for torch's fused kernel.

    ``fused=True`` runs the whole update as one kernel over all parameters (CPU and CUDA, torch
    >= 2.4); on a device or dtype without it, torch refuses and the plain version is built.
    The update is the same algorithm; results agree to round-off, not bit for bit.
    """

    def build(params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
        params = list(params)
        try:
            return cls(params, fused=True, **kwargs)
        except RuntimeError:
            return cls(params, **kwargs)

    name = getattr(cls, "__name__", "optimizer")
    build.__name__ = build.__qualname__ = f"fused_{name}"
    build.__doc__ = f"`torch.optim.{name}` with ``fused=True`` where supported."
    return build


class TrainStep:
    """``step(batch) -> loss``: zero the gradients, loss, backward, clip, optimizer step.

    Parameters
    ----------
    model : LearnedModel
        The model being trained.
    loss_fn : callable ``(model, batch) -> Tensor``
        The loss (a `hamgrad.training.losses.Loss`), a 0-dim tensor.
    optimizer : torch.optim.Optimizer
        Over ``model.parameters()``.
    grad_clip : float
        Maximum gradient norm; 0 disables clipping.
    compile : bool
        Compile ``loss_fn(model, ·)`` and its backward with `torch.compile` (inductor). Worth
        it for long runs of small models, where a step is dominated by per-kernel overhead
        (BENCHMARKS.md §6 measures when); the first calls compile (tens of seconds on CPU).
        One process that compiles steps for many models reaches torch's recompilation limit
        (8 per function) and then runs them uncompiled; call ``torch._dynamo.reset()``
        between models there.

    Attributes
    ----------
    compile_seconds : float or None
        With ``compile``: wall time of the calls that compiled, i.e. the first call at each
        batch size (a full batch and the epoch's last, smaller one); None without.
    """

    def __init__(
        self,
        model: LearnedModel,
        loss_fn: Callable[[LearnedModel, dict[str, Tensor]], Tensor],
        optimizer: torch.optim.Optimizer,
        grad_clip: float = 0.0,
        compile: bool = False,
    ) -> None:
        self.model, self.optimizer, self.grad_clip = model, optimizer, grad_clip
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._loss: Callable[[dict[str, Tensor]], Tensor] = lambda batch: loss_fn(model, batch)
        self.compile_seconds: float | None = None
        self._compiled_sizes: set[int] | None = None
        if compile:
            # Static shapes: one graph per batch size (two per run), no dynamic-shape kernels.
            self._loss = torch.compile(self._loss, dynamic=False)
            self.compile_seconds, self._compiled_sizes = 0.0, set()

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        """One step on ``batch``; returns the loss before the update (detached, on device)."""
        size = next(iter(batch.values())).shape[0]
        compiling = self._compiled_sizes is not None and size not in self._compiled_sizes
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(batch)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        self.optimizer.step()
        if compiling and self._compiled_sizes is not None and self.compile_seconds is not None:
            self._compiled_sizes.add(size)
            self.compile_seconds += time.perf_counter() - started
        return loss.detach()
