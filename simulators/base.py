"""The `System` base class: an analytic Hamiltonian that can also generate its own data.

A `System` is a `hamgrad.HamiltonianField` (``separable``, ``dH_dq``, ``dH_dp``) on torch tensors
of any batch shape ``[..., dof]``, dtype and device, so hamgrad's integrators roll out the true
system with exactly the same call as a learned model. On top of the field it knows its
scalar ``hamiltonian``, how to draw initial conditions (``sample_state``) and, where one exists,
its closed-form flow (``exact_solution``).

Parameters are declared once: every concrete system is a frozen `dataclasses.dataclass` whose
fields *are* its parameters, so ``type(s)(**s.params) == s`` and ``params`` is what a dataset
records. Validation and derived state (``dof``, matrices, mass lists) live in ``__post_init__``.
Every class is abstract (`System`, `simulators.QuadraticSystem`, the n-body base) or final
(the registered systems), after the "abstract or final" pattern of equinox's modules.

User-defined systems follow the same recipe (``docs/extending.md``)::

    @dataclass(frozen=True)
    class MySystem(System):
        k: float = 1.0
        dof = 1

        def hamiltonian(self, q, p): ...
        def sample_state(self, rng): ...

and are then usable as ``hamgrad simulate my_module:MySystem --param k=2``.
"""

from __future__ import annotations

import dataclasses
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import ConfigError, check_finite

__all__ = ["System", "check_range", "sample_shell"]


class System(ABC):
    """Abstract base class of every simulated Hamiltonian system.

    Rules for a subclass:

    1. Be a frozen dataclass whose ``init`` fields are the parameters (JSON-serialisable values:
       numbers, strings, booleans, tuples/lists of them), so that ``type(s)(**s.params) == s``.
    2. Validate the fields in ``__post_init__``; normalised values and derived state are set with
       ``object.__setattr__`` (the instance is frozen) or computed by
       `functools.cached_property`.
    3. Provide ``dof`` (a class attribute, a derived attribute or a property) and implement
       `hamiltonian` and `sample_state`. Analytic `dH_dq` / `dH_dp` are optional (autograd of
       `hamiltonian` is the default) but faster.
    4. Set ``separable = True`` only when ``H = T(p) + V(q)``.

    Attributes
    ----------
    name : str
        Registry name (``"pendulum"``) or, for a user class, ``"module:Class"``.
    separable : bool
        True when ``H = T(p) + V(q)``.
    dof : int
        Number of position coordinates.
    exact_method : str or None
        Short description of the closed-form solution, or None when there is none.
    reference_method : str
        Name in `simulators.reference.REFERENCE_METHODS` of the numerical reference used when
        there is no closed form (``"dop853"`` by default, ``"ias15"`` for gravity).
    """

    name: ClassVar[str] = ""
    separable: ClassVar[bool] = False
    exact_method: ClassVar[str | None] = None
    reference_method: ClassVar[str] = "dop853"
    dof: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            # A user class is named by its import path, the form `get_system` accepts back.
            cls.name = f"{cls.__module__}:{cls.__qualname__}"

    # -- parameters -----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The parameters (the dataclass's init fields): ``type(s)(**s.params) == s``.

        A subclass that is not a dataclass and stores ``self._params`` (the contract before
        hamgrad 0.2) still works for one release, with a `DeprecationWarning`.
        """
        if _is_own_dataclass(type(self)):
            fields = dataclasses.fields(cast(Any, self))
            return {f.name: getattr(self, f.name) for f in fields if f.init}
        warnings.warn(
            f"{type(self).__name__} is not a dataclass: declaring parameters in "
            "self._params is deprecated and will be removed; make the system a "
            "@dataclasses.dataclass(frozen=True) whose fields are its parameters "
            "(see docs/extending.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return dict(getattr(self, "_params", {}))

    def __repr__(self) -> str:
        # Dataclasses replace this with their own; it serves the deprecated non-dataclass form.
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "_params", {}).items())
        return f"{type(self).__name__}({args})"

    def _set(self, **values: Any) -> None:
        """Set normalised fields or derived attributes on a frozen instance (``__post_init__``)."""
        for key, value in values.items():
            object.__setattr__(self, key, value)

    # -- the field ------------------------------------------------------------------------
    @abstractmethod
    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Total energy ``H(q, p)``; ``q``, ``p`` of shape ``[..., dof]``, result ``[...]``."""

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """∂H/∂q, shape ``[..., dof]``; default: autograd of `hamiltonian`."""
        return self._autograd(q, p)[0]

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """∂H/∂p, shape ``[..., dof]``; default: autograd of `hamiltonian`."""
        return self._autograd(q, p)[1]

    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """Hamilton's equations ``(dq/dt, dp/dt) = (∂H/∂p, -∂H/∂q)``, shapes ``[..., dof]``."""
        cls = type(self)
        if cls.dH_dq is System.dH_dq and cls.dH_dp is System.dH_dp:
            gq, gp = self._autograd(q, p)  # both halves from one backward pass, not two
            return gp, -gq
        return self.dH_dp(q, p), -self.dH_dq(q, p)

    def _autograd(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        # Keep the caller's graph when it differentiates through us (e.g. a training loss
        # unrolled through the true system); otherwise work on detached leaves.
        keep_graph = q.requires_grad or p.requires_grad
        with torch.enable_grad():
            qq = q if q.requires_grad else q.detach().requires_grad_(True)
            pp = p if p.requires_grad else p.detach().requires_grad_(True)
            energy = self.hamiltonian(qq, pp).sum()
            gq, gp = torch.autograd.grad(
                energy, (qq, pp), create_graph=keep_graph, allow_unused=True
            )
        gq = torch.zeros_like(q) if gq is None else gq
        gp = torch.zeros_like(p) if gp is None else gp
        return gq, gp

    # -- data generation ------------------------------------------------------------------
    @abstractmethod
    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw one initial condition ``(q0, p0)``, each a float64 array ``[dof]``."""

    def exact_solution(
        self, q0: np.ndarray, p0: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Closed-form flow, or None when the system has none.

        Parameters
        ----------
        q0, p0 : ndarray, shape ``[n_traj, dof]``
            Initial states (float64).
        t : ndarray, shape ``[n_t]``
            Times since the initial state.

        Returns
        -------
        (q, p) : ndarrays of shape ``[n_traj, n_t, dof]``, or None.
        """
        return None


def _is_own_dataclass(cls: type) -> bool:
    """True when ``cls`` itself was made a dataclass (not merely a subclass of one)."""
    return "__dataclass_fields__" in cls.__dict__


def sample_shell(rng: np.random.Generator, dim: int, r_min: float, r_max: float) -> np.ndarray:
    """A point of ``R^dim`` in uniformly random direction with radius ``~ U(r_min, r_max)``.

    This is the initial-condition sampler of Greydanus et al. (2019, HNN code) for the spring
    and the pendulum, generalised to any dimension (normalised Gaussian direction).
    """
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    return direction * rng.uniform(r_min, r_max)


def check_range(
    lo_name: str, lo: object, hi_name: str, hi: object, positive: bool = True
) -> tuple[float, float]:
    """Validate a sampling range ``lo <= hi`` of finite (positive) numbers."""
    a = check_finite(lo_name, lo, positive=positive)
    b = check_finite(hi_name, hi, positive=positive)
    if a > b:
        raise ConfigError(f"{lo_name} must be <= {hi_name}, got {lo_name}={a}, {hi_name}={b}")
    return a, b
