"""Shared type aliases and the `HamiltonianField` protocol (API).

Anything with a Hamiltonian gradient, an analytic system in ``simulators`` or a learned model in
``hamgrad.models``, is a `HamiltonianField`, so the same integrators, rollout and evaluation serve
both.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["HamiltonianField", "Tensor", "VectorField"]


@runtime_checkable
class HamiltonianField(Protocol):
    """A Hamiltonian vector field given by the two halves of ∇H.

    Hamilton's equations are ``dq/dt = dH/dp`` and ``dp/dt = -dH/dq``.

    Attributes
    ----------
    separable : bool
        True when ``H = T(p) + V(q)``: then `dH_dq` must not depend on ``p`` and `dH_dp` not on
        ``q``, so explicit splitting methods may evaluate only the half they need.
    """

    separable: bool

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """∂H/∂q at ``(q, p)``; all shapes ``[..., dof]``."""
        ...

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """∂H/∂p at ``(q, p)``; all shapes ``[..., dof]``."""
        ...


@runtime_checkable
class VectorField(Protocol):
    """A first-order system that need not be Hamiltonian (e.g. the NeuralODE baseline)."""

    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(dq/dt, dp/dt)`` at ``(q, p)``; shapes ``[..., dof]``."""
        ...
