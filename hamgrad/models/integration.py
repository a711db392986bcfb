"""Which integrator rolls out a model, checked before any work is done."""

from __future__ import annotations

from hamgrad.models.base import LearnedModel

__all__ = ["resolve_integrator"]


def resolve_integrator(model: LearnedModel, name: str | None = None) -> str:
    """Return ``name`` (or the model's ``default_integrator``) after checking it applies.

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

    method = model.default_integrator if name is None else name
    get_integrator(method).check_field(model)
    return method
