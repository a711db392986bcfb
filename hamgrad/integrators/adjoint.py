"""The discrete adjoint: exact gradients of a rollout in memory growing as √(its length).

Backpropagation through ``rollout`` keeps the graph of every step (and, for the implicit
methods, of every fixed-point iteration), so its memory grows linearly with the number of
steps. ``rollout(..., adjoint=True)`` runs the rollout without a graph and computes the same
gradient afterwards, one step at a time from the last step back to the first (the discrete
adjoint method; for a symplectic partitioned method this is the symplectic adjoint of
Matsubara, Miyatake & Yaguchi 2021, who show it is the exact gradient of the discrete
rollout). Writing ``y_k = (q_k, p_k)`` and ``Φ`` for one step,

    λ_k = ∂L/∂y_k (direct, if y_k is saved) + (∂Φ/∂y)(y_k)ᵀ λ_{k+1},
    ∂L/∂θ = Σ_k (∂Φ/∂θ)(y_k)ᵀ λ_{k+1},

and each vector-Jacobian product is `hamgrad.integrators.Stepper.vjp` of one step: a replay
of that step on a local autograd graph (explicit methods), or the adjoint of the converged
stage equations (Gauss–Legendre, `hamgrad.integrators.implicit`). The cotangent of every
saved state (a loss on the whole trajectory) is added to ``λ`` when the backward sweep
reaches that state's step.

Getting the states back: recomputation from checkpoints
-------------------------------------------------------
The backward sweep needs ``y_k`` in reverse order. Two ways were possible:

- *Invert each step* (a kick ``p ← p − a·dt·∂V/∂q`` by ``p ← p + a·dt·∂V/∂q``, a drift likewise,
  an implicit step by a second implicit solve with ``−dt``). Memory is O(1), but floating-point
  inversion is not exact: each substep rounds, the linearised flow carries the rounding errors
  along (exponentially for a chaotic system), and an implicit step is only inverted to its
  solver tolerance. Measured for Yoshida 4, dt = 0.05, float64 (``scripts/bench_adjoint.py
  --inversion``): the worst relative error of an inverted state was 2e-14 (pendulum), 1e-13
  (Hénon–Heiles, E ≈ 0.16) and 9e-14 (untrained separable GradNet) after 1000 steps, and
  2e-13, 4e-12 and 1.4e-10 after 10 000 steps. The linearisation points, and the gradient with
  them, drift by that much: enough for 1e-10 at K = 1000 on these cases in float64, with no
  margin at 10⁴ steps, none in float32 (errors ~1e9 times larger) and none for implicit methods.
- *Recompute from checkpoints*: the forward pass keeps some states (detached, no graph); the
  backward sweep re-runs each segment between two kept states forward, without a graph, and
  walks it backwards. Recomputation repeats the forward operations on the same inputs, so it
  reproduces the forward states bit for bit on a deterministic device, whatever the number of
  steps.

hamgrad recomputes: the gradient then agrees with backpropagation to round-off in the
accumulation of the adjoint alone, at K = 1000 steps as at K = 1 (tests/test_integrators_adjoint.py
requires 1e-10 relative in float64; ``scripts/bench_adjoint.py --agreement`` prints the measured
gaps). The implicit methods solve their adjoint stage equations to the method's ``tol``
(50 eps by default), as they solve the forward stages.

Cost and memory
---------------
The kept states are the saved states (they are the outputs, held anyway) plus one every
``checkpoint_every = M`` steps between them. Per training step the adjoint runs the rollout once
without a graph, replays each segment once without a graph (nothing to replay when every
state is saved), then takes each step once more on a local graph with its backward pass:
``3F + B`` (``2F + B`` with every state saved) against ``F + B`` for backpropagation (measured
ratios in BENCHMARKS.md). Memory beyond the saved states is one step's graph plus at most
``n_steps / M + M`` phase-space states (checkpoints, one segment). The default
``M = ceil(sqrt(n_steps))`` minimises that count (``2·sqrt(n_steps)`` states) while still
replaying every step once (two-level checkpointing; Griewank & Walther 2000); any ``M`` costs
the same time, so only memory is at stake. A state is ``2·batch·dof`` numbers, far below one
step's graph of a network field (its activations at every stage and, with implicit methods,
every fixed-point iteration): measured, a GradNet training step needed 3.5 MiB at 100 steps
and 5.4 MiB at 10⁴ (BENCHMARKS.md §7), against backprop's 5.6 MiB per step.

What gets gradients
-------------------
``q0``, ``p0`` and the ``requires_grad`` parameters of a field that is a ``torch.nn.Module``
(``field.parameters()``). A tensor the field merely closes over (``self.k = torch.tensor(...,
requires_grad=True)`` on a plain object) cannot be found by the adjoint; rather than return a
gradient that silently lacks it, `adjoint_rollout` raises `ConfigError` (it looks for such
leaves in the graph of one field evaluation). The result is differentiable once
(``create_graph=True`` double backward is not supported).

References
----------
T. Matsubara, Y. Miyatake, T. Yaguchi, "Symplectic Adjoint Method for Exact Gradient of
Neural ODE with Minimal Memory", NeurIPS 2021 (arXiv:2102.09750).
A. Griewank, A. Walther, "Algorithm 799: revolve", ACM TOMS 26 (2000) 19-45.
E. Hairer, C. Lubich, G. Wanner, *Geometric Numerical Integration*, 2nd ed., Springer 2006,
sec. VI.6 (symplecticity of the adjoint of a symplectic partitioned Runge–Kutta method).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from hamgrad.errors import ConfigError, check_int
from hamgrad.integrators.base import Integrator, derivative_fn

__all__ = ["adjoint_rollout", "default_checkpoint_every", "field_parameters"]

#: ``forward(keep)`` runs the rollout and returns ``(q, p, failure)`` (saved states stacked on
#: axis -2); it calls ``keep(step, q, p)`` after every step it takes.
ForwardFn = Callable[[Callable[[int, Tensor, Tensor], None]], tuple[Tensor, Tensor, Any]]


def default_checkpoint_every(n_steps: int) -> int:
    """``ceil(sqrt(n_steps))``: fewest stored states (checkpoints + one segment) for one replay."""
    return max(1, math.ceil(math.sqrt(n_steps)))


def field_parameters(field: object) -> tuple[Tensor, ...]:
    """The tensors the adjoint differentiates besides ``q0, p0``: a Module's trainable parameters.

    Parameters
    ----------
    field : object
        The field; only a ``torch.nn.Module`` has parameters that can be found.

    Returns
    -------
    tuple of Tensor
        ``field.parameters()`` that require grad, in order; empty for other fields.
    """
    if isinstance(field, torch.nn.Module):
        return tuple(p for p in field.parameters() if p.requires_grad)
    return ()


def _leaves(outputs: tuple[Tensor, ...]) -> list[Tensor]:
    """Every leaf tensor that requires grad in the graph of ``outputs``."""
    found, seen = [], set()
    stack: list[Any] = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds a leaf
        if isinstance(variable, Tensor):
            found.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    found += [t for t in outputs if t.grad_fn is None and t.requires_grad]
    return found


def _check_no_hidden_leaves(field: object, q0: Tensor, p0: Tensor, params: tuple[Tensor, ...]):
    """Refuse a field that depends on grad-requiring tensors the adjoint cannot see."""
    with torch.enable_grad():
        outputs = derivative_fn(field)(q0.detach(), p0.detach())
    known = {id(p) for p in params}
    hidden = [t for t in _leaves(tuple(outputs)) if id(t) not in known]
    if hidden:
        shape = tuple(hidden[0].shape)
        raise ConfigError(
            f"adjoint rollout: the field depends on {len(hidden)} tensor(s) that require grad "
            f"but are not parameters of the field (first of shape {shape}); the adjoint "
            "differentiates only q0, p0 and an nn.Module field's parameters, so their gradient "
            "would be lost; register them as nn.Parameter of the field or use adjoint=False"
        )


@dataclass
class _Sweep:
    """Everything the backward sweep needs besides the tensors autograd saves."""

    integrator: Integrator
    field: object
    dt: float
    every: int
    checkpoint_every: int
    forward: ForwardFn
    failure: Any = None
    last_step: int = 0  # last step whose state is saved and good: where the sweep starts
    checkpoints: dict[int, tuple[Tensor, Tensor]] = dc_field(default_factory=dict)


class _AdjointRollout(torch.autograd.Function):
    """``(q0, p0, *params) -> (q, p)`` of every saved state, with the adjoint backward."""

    @staticmethod
    def forward(ctx: Any, sweep: _Sweep, q0: Tensor, p0: Tensor, *params: Tensor):
        every, m = sweep.every, sweep.checkpoint_every

        def keep(step: int, q: Tensor, p: Tensor) -> None:
            if step % m == 0 and step % every != 0:  # saved states are checkpoints already
                sweep.checkpoints[step] = (q, p)

        q, p, sweep.failure = sweep.forward(keep)
        n_good = q.shape[-2] if sweep.failure is None else _saved_good(sweep)
        sweep.last_step = (n_good - 1) * every
        ctx.sweep = sweep
        ctx.save_for_backward(q, p, *params)
        return q, p

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_q: Tensor, grad_p: Tensor):
        sweep: _Sweep = ctx.sweep
        saved_q, saved_p, *params = ctx.saved_tensors
        stepper = sweep.integrator.stepper(sweep.field, sweep.dt, grad_q)
        every, last = sweep.every, sweep.last_step

        def state_at(step: int) -> tuple[Tensor, Tensor]:
            if step % every == 0:
                return saved_q.select(-2, step // every), saved_p.select(-2, step // every)
            return sweep.checkpoints[step]

        lam_q = torch.zeros_like(grad_q.select(-2, 0))
        lam_p = torch.zeros_like(lam_q)
        totals: list[Tensor | None] = [None] * len(params)
        # Segment bounds: saved states and checkpoints up to the last good step (none when no
        # step was taken or none lies before a saved state: the loop then does nothing).
        bounds = [*sorted({*range(0, last, every), *range(0, last, sweep.checkpoint_every)}), last]
        for start, stop in reversed(list(itertools.pairwise(bounds))):
            states = [state_at(start)]
            with torch.no_grad():  # replay the segment: bit-identical to the forward pass
                state = stepper.init(*states[0])
                for _ in range(start + 1, stop):
                    state = stepper.advance(state)
                    states.append(stepper.observe(state))
            for k in range(stop, start, -1):
                if k % every == 0:
                    lam_q = lam_q + grad_q.select(-2, k // every)
                    lam_p = lam_p + grad_p.select(-2, k // every)
                q, p = states[k - 1 - start]
                lam_q, lam_p, grads = stepper.vjp(q, p, lam_q, lam_p, params)
                for i, (total, g) in enumerate(zip(totals, grads, strict=True)):
                    if g is not None:
                        totals[i] = g if total is None else total + g
            del states
        lam_q = lam_q + grad_q.select(-2, 0)
        lam_p = lam_p + grad_p.select(-2, 0)
        param_grads = [
            torch.zeros_like(x) if g is None else g for x, g in zip(params, totals, strict=True)
        ]
        return (None, lam_q, lam_p, *param_grads)


def _saved_good(sweep: _Sweep) -> int:
    """How many saved states precede the failure (those after it are NaN, not computed)."""
    return sweep.failure.last_good_step // sweep.every + 1


def adjoint_rollout(
    integrator: Integrator,
    field: object,
    q0: Tensor,
    p0: Tensor,
    dt: float,
    every: int,
    n_steps: int,
    forward: ForwardFn,
    checkpoint_every: int | None = None,
) -> tuple[Tensor, Tensor, Any]:
    """Run ``forward`` without a graph; differentiate its saved states by the discrete adjoint.

    Called by `hamgrad.integrators.rollout` with ``adjoint=True``, which has checked the
    arguments and that ``integrator.supports_adjoint``.

    Parameters
    ----------
    integrator : Integrator
        The method; its `Stepper.vjp` is the adjoint of one step.
    field : HamiltonianField or VectorField
        The dynamics; if a ``torch.nn.Module``, its trainable parameters get gradients.
    q0, p0 : Tensor
        Initial state ``[..., dof]``.
    dt : float
        Step size.
    every : int
        Steps between saved states (``save_every``).
    n_steps : int
        Steps taken (a multiple of ``every``).
    forward : callable
        ``forward(keep) -> (q, p, failure)``: the rollout loop, ``q, p`` of shape
        ``[..., n_saved, dof]``; it calls ``keep(step, q, p)`` after every step.
    checkpoint_every : int, optional
        Steps between stored states ``M``; default `default_checkpoint_every` of ``n_steps``.

    Returns
    -------
    (Tensor, Tensor, RolloutFailure or None)
        Saved states ``[..., n_saved, dof]`` (with gradients to ``q0``, ``p0`` and the
        field's parameters) and the failure reported by ``forward``. After a failure the
        backward sweep starts from the last good saved state.

    Raises
    ------
    ConfigError
        ``checkpoint_every`` is not a positive integer, or the field depends on tensors that
        require grad but are not its parameters (see the module notes).
    """
    if checkpoint_every is None:
        checkpoint_every = default_checkpoint_every(n_steps)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    params = field_parameters(field)
    if torch.is_grad_enabled():
        _check_no_hidden_leaves(field, q0, p0, params)
    sweep = _Sweep(integrator, field, dt, every, checkpoint_every, forward)
    q, p = _AdjointRollout.apply(sweep, q0, p0, *params)
    return q, p, sweep.failure
