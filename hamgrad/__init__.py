"""hamgrad: learning Hamiltonian dynamics with gradient networks.

Explicit re-exports of the public API (no logic here):

- `hamgrad.nets`: gradient networks GradNetC, GradNetM, MGradNetC, MGradNetM, baselines,
  `potential`, the `NETS` registry.
- `hamgrad.integrators`: symplectic and reference integrators (`INTEGRATORS`) and `rollout`.
- `hamgrad.data`: the HDF5 trajectory format (`load_dataset`, `write_dataset`).
- `hamgrad.models`: learned Hamiltonians (`MODELS`); `hamgrad.training`, `hamgrad.evaluation`.
"""

__version__ = "0.1.0"  # first: submodules read it while this package initialises

from hamgrad._types import HamiltonianField, VectorField
from hamgrad.data import Dataset, Split, load_dataset, write_dataset
from hamgrad.errors import HamgradError
from hamgrad.integrators import INTEGRATORS, Trajectory, get_integrator, rollout
from hamgrad.models import MODELS, get_model
from hamgrad.nets import (
    NETS,
    GradNetC,
    GradNetM,
    MGradNetC,
    MGradNetM,
    get_net,
    potential,
)

__all__ = [
    "INTEGRATORS",
    "MODELS",
    "NETS",
    "Dataset",
    "GradNetC",
    "GradNetM",
    "HamgradError",
    "HamiltonianField",
    "MGradNetC",
    "MGradNetM",
    "Split",
    "Trajectory",
    "VectorField",
    "__version__",
    "get_integrator",
    "get_model",
    "get_net",
    "load_dataset",
    "potential",
    "rollout",
    "write_dataset",
]
