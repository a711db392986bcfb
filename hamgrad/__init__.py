"""hamgrad: learning Hamiltonian dynamics with gradient networks.

The public API, re-exported from the sub-packages that define it:

- `hamgrad.nets`: gradient networks GradNetC, GradNetM, MGradNetC, MGradNetM, baselines,
  `potential`, the `NETS` registry.
- `hamgrad.integrators`: symplectic and reference integrators (`INTEGRATORS`), `rollout`.
- `hamgrad.data`: the HDF5 trajectory format (`load_dataset`, `write_dataset`).
- `hamgrad.models`: learned Hamiltonians (`MODELS`); `hamgrad.training`, `hamgrad.evaluation`,
  `hamgrad.checkpoint`, `hamgrad.run`.

Names are resolved on first use (PEP 562), so ``import hamgrad`` and ``hamgrad --version`` do not
load torch; ``from hamgrad import rollout`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hamgrad._version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    "HamiltonianField": "hamgrad._types",
    "VectorField": "hamgrad._types",
    "Dataset": "hamgrad.data",
    "Split": "hamgrad.data",
    "load_dataset": "hamgrad.data",
    "write_dataset": "hamgrad.data",
    "HamgradError": "hamgrad.errors",
    "INTEGRATORS": "hamgrad.integrators",
    "Integrator": "hamgrad.integrators",
    "Trajectory": "hamgrad.integrators",
    "get_integrator": "hamgrad.integrators",
    "rollout": "hamgrad.integrators",
    "MODELS": "hamgrad.models",
    "get_model": "hamgrad.models",
    "NETS": "hamgrad.nets",
    "GradNetC": "hamgrad.nets",
    "GradNetM": "hamgrad.nets",
    "MGradNetC": "hamgrad.nets",
    "MGradNetM": "hamgrad.nets",
    "get_net": "hamgrad.nets",
    "potential": "hamgrad.nets",
}

__all__ = [
    "INTEGRATORS",
    "MODELS",
    "NETS",
    "Dataset",
    "GradNetC",
    "GradNetM",
    "HamgradError",
    "HamiltonianField",
    "Integrator",
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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # resolve once
        return value
    raise AttributeError(f"module 'hamgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from hamgrad._types import HamiltonianField, VectorField
    from hamgrad.data import Dataset, Split, load_dataset, write_dataset
    from hamgrad.errors import HamgradError
    from hamgrad.integrators import INTEGRATORS, Integrator, Trajectory, get_integrator, rollout
    from hamgrad.models import MODELS, get_model
    from hamgrad.nets import NETS, GradNetC, GradNetM, MGradNetC, MGradNetM, get_net, potential
