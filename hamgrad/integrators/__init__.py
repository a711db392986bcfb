"""Symplectic integrators and `rollout` for Hamiltonian fields (API).

``from hamgrad.integrators import rollout, INTEGRATORS, get_integrator, Trajectory, Integrator``.
See `hamgrad.integrators.registry` for the registered names and what each guarantees.
"""

from hamgrad.integrators.base import Integrator
from hamgrad.integrators.registry import ALIASES, INTEGRATORS, applicable_methods, get_integrator
from hamgrad.integrators.rollout import Trajectory, rollout

__all__ = [
    "ALIASES",
    "INTEGRATORS",
    "Integrator",
    "Trajectory",
    "applicable_methods",
    "get_integrator",
    "rollout",
]
