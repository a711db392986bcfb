"""Analytic Hamiltonian systems with exact or near-machine-precision reference trajectories.

Every system is a `hamgrad.HamiltonianField` on torch tensors ``[..., dof]``; `generate` writes
its trajectories in hamgrad's HDF5 format (version 1). A system is a frozen dataclass whose
fields are its parameters; user systems subclass `System` the same way (docs/extending.md).
References: closed forms where they exist, REBOUND IAS15 for gravity, scipy DOP853 otherwise
(`simulators.reference`).
"""

from simulators.base import System
from simulators.double_pendulum import DoublePendulum
from simulators.generate import CloseEncounterWarning, generate, shard_range
from simulators.nbody import Kepler, NBody, ThreeBody, angular_momentum, total_momentum
from simulators.pendulum import Pendulum
from simulators.rebound_reference import REFERENCE_NAME, integrate_ias15
from simulators.reference import (
    REFERENCE_METHODS,
    Reference,
    ReferenceSettings,
    integrate,
    reference_solution,
    reference_trajectories,
)
from simulators.registry import ALIASES, SYSTEMS, get_system, system_from_dataset
from simulators.spring import QuadraticSystem, Spring, SpringChain

__all__ = [
    "ALIASES",
    "REFERENCE_METHODS",
    "REFERENCE_NAME",
    "SYSTEMS",
    "CloseEncounterWarning",
    "DoublePendulum",
    "Kepler",
    "NBody",
    "Pendulum",
    "QuadraticSystem",
    "Reference",
    "ReferenceSettings",
    "Spring",
    "SpringChain",
    "System",
    "ThreeBody",
    "angular_momentum",
    "generate",
    "get_system",
    "integrate",
    "integrate_ias15",
    "reference_solution",
    "reference_trajectories",
    "shard_range",
    "system_from_dataset",
    "total_momentum",
]
