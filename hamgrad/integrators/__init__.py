"""Symplectic integrators and `rollout` for Hamiltonian fields (API).

``from hamgrad.integrators import rollout, INTEGRATORS, get_integrator, Trajectory, Integrator``.
See `hamgrad.integrators.registry` for the registered names and what each guarantees,
`hamgrad.integrators.adjoint` for ``rollout(..., adjoint=True)`` (exact gradients in memory
that grows as the square root of the number of steps) and `odeint` for a torchdiffeq-style
call.
"""

from hamgrad.integrators.base import Integrator, Stepper, derivative_fn
from hamgrad.integrators.odeint import odeint
from hamgrad.integrators.registry import (
    ALIASES,
    INTEGRATORS,
    adjoint_methods,
    applicable_methods,
    check_applicable,
    get_integrator,
    register_integrator,
)
from hamgrad.integrators.rollout import RolloutFailure, Trajectory, rollout
from hamgrad.integrators.splitting import SplittingIntegrator
from hamgrad.integrators.tableau import ButcherTableau, SplittingTableau

__all__ = [
    "ALIASES",
    "INTEGRATORS",
    "ButcherTableau",
    "Integrator",
    "RolloutFailure",
    "SplittingIntegrator",
    "SplittingTableau",
    "Stepper",
    "Trajectory",
    "adjoint_methods",
    "applicable_methods",
    "check_applicable",
    "derivative_fn",
    "get_integrator",
    "odeint",
    "register_integrator",
    "rollout",
]
