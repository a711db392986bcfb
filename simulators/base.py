"""The `System` base class: an analytic Hamiltonian that can also generate its own data.

A `System` is a `hamgrad.HamiltonianField` (``separable``, ``dH_dq``, ``dH_dp``) on torch tensors
of any batch shape ``[..., dof]``, dtype and device, so hamgrad's integrators roll out the true
system with exactly the same call as a learned model. On top of the field it knows its
scalar ``hamiltonian``, how to draw initial conditions (``sample_state``) and, where one exists,
its closed-form flow (``exact_solution``).

User-defined systems subclass `System`, set ``dof`` and implement ``hamiltonian`` and
``sample_state``; the gradients default to autograd of ``hamiltonian``. Such a class is then
usable as ``hamgrad simulate my_module:MySystem``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import ConfigError, check_finite

__all__ = ["System", "check_range", "sample_shell"]


class System:
    """Base class of every simulated Hamiltonian system.

    Subclasses set the class attributes ``name`` and ``separable`` and the instance attribute
    ``dof``, store their constructor arguments so that ``type(s)(**s.params)`` rebuilds the same
    system, and implement `hamiltonian` and `sample_state`. Analytic `dH_dq` / `dH_dp` are
    optional (autograd of `hamiltonian` is the default) but faster.

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
    """

    name: ClassVar[str] = ""
    separable: ClassVar[bool] = False
    exact_method: ClassVar[str | None] = None
    dof: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            # A user class is named by its import path, the form `get_system` accepts back.
            cls.name = f"{cls.__module__}:{cls.__qualname__}"

    # -- parameters -----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-serialisable dict (``type(s)(**s.params)`` rebuilds)."""
        return dict(getattr(self, "_params", {}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # -- the field ------------------------------------------------------------------------
    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Total energy ``H(q, p)``; ``q``, ``p`` of shape ``[..., dof]``, result ``[...]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement hamiltonian(q, p)")

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
            gq, gp = torch.autograd.grad(energy, (qq, pp), create_graph=keep_graph,
                                         allow_unused=True)
        gq = torch.zeros_like(q) if gq is None else gq
        gp = torch.zeros_like(p) if gp is None else gp
        return gq, gp

    # -- data generation ------------------------------------------------------------------
    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw one initial condition ``(q0, p0)``, each a float64 array ``[dof]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample_state(rng)")

    def exact_solution(self, q0: np.ndarray, p0: np.ndarray,
                       t: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
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


def sample_shell(rng: np.random.Generator, dim: int, r_min: float,
                 r_max: float) -> np.ndarray:
    """A point of ``R^dim`` in uniformly random direction with radius ``~ U(r_min, r_max)``.

    This is the initial-condition sampler of Greydanus et al. (2019, HNN code) for the spring
    and the pendulum, generalised to any dimension (normalised Gaussian direction).
    """
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    return direction * rng.uniform(r_min, r_max)


def check_range(lo_name: str, lo: object, hi_name: str, hi: object,
                positive: bool = True) -> tuple[float, float]:
    """Validate a sampling range ``lo <= hi`` of finite (positive) numbers."""
    a = check_finite(lo_name, lo, positive=positive)
    b = check_finite(hi_name, hi, positive=positive)
    if a > b:
        raise ConfigError(f"{lo_name} must be <= {hi_name}, got {lo_name}={a}, {hi_name}={b}")
    return a, b
