"""hamgrad: learning Hamiltonian dynamics with gradient networks.

Public API (re-exported here, no logic):

- `hamgrad.nets`: gradient networks GradNetC, GradNetM, MGradNetC, MGradNetM and baselines.
- `hamgrad.integrators`: symplectic integrators and `rollout`.
- `hamgrad.data`: the HDF5 trajectory format.
"""

from hamgrad._types import HamiltonianField
from hamgrad.errors import HamgradError

__version__ = "0.1.0"

__all__ = ["HamgradError", "HamiltonianField", "__version__"]
