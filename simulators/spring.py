"""Linear oscillators: the mass-spring and a chain of coupled masses, solved by normal modes.

Both are ``H = |p|² / (2m) + ½ qᵀ K q`` with a constant stiffness matrix ``K``, so the flow is
exact in closed form: diagonalise ``K = V diag(λ) Vᵀ`` once, and each normal mode rotates with
angular frequency ``ω = sqrt(λ / m)`` (a zero mode, the free translation of a periodic chain,
moves uniformly).

The mass-spring of Greydanus et al. (2019), ``H = q² + p²``, is ``Spring(m=0.5, k=2)``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import final

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import ConfigError, check_finite, check_int
from simulators.base import System, check_range, sample_shell

__all__ = ["QuadraticSystem", "Spring", "SpringChain"]


class QuadraticSystem(System):
    """Abstract: ``H = |p|² / (2m) + ½ qᵀ K q`` for a symmetric positive semidefinite ``K``.

    A concrete subclass is a frozen dataclass with (at least) the fields ``m`` (mass, > 0),
    ``radius_min`` and ``radius_max`` (sampler range); it implements `stiffness_matrix` and
    calls ``super().__post_init__()`` at the end of its own ``__post_init__``, which derives
    ``K [dof, dof]``, ``dof`` and the normal modes. Positions are displacements from
    equilibrium (length units), momenta ``m · dq/dt``.
    """

    separable = True
    exact_method = "closed form (normal modes)"
    m: float
    radius_min: float
    _modes: np.ndarray  # derived in __post_init__ (not dataclass fields: this base is none)
    _omega: np.ndarray
    radius_max: float
    K: np.ndarray

    @abstractmethod
    def stiffness_matrix(self) -> np.ndarray:
        """The stiffness matrix ``K``, float64 ``[dof, dof]``, symmetric positive semidefinite."""

    def __post_init__(self) -> None:
        K = np.asarray(self.stiffness_matrix(), dtype=np.float64)
        lam, modes = np.linalg.eigh(K)
        # Round-off can leave a zero mode at -1e-16; it is a free translation, not unstable.
        self._set(
            K=K, dof=K.shape[0], _modes=modes, _omega=np.sqrt(np.clip(lam, 0.0, None) / self.m)
        )

    def _stiffness(self, q: Tensor) -> Tensor:
        return torch.as_tensor(self.K, dtype=q.dtype, device=q.device)

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """``|p|²/(2m) + ½ qᵀKq``; shapes ``[..., dof]`` -> ``[...]``."""
        Kq = q @ self._stiffness(q)
        return (p * p).sum(-1) / (2 * self.m) + 0.5 * (q * Kq).sum(-1)

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """``K q`` (independent of ``p``), shape ``[..., dof]``."""
        return q @ self._stiffness(q)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """``p / m`` (independent of ``q``), shape ``[..., dof]``."""
        return p / self.m

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(q, p)`` uniform in direction with ``|(q, p)| ~ U(radius_min, radius_max)``."""
        x = sample_shell(rng, 2 * self.dof, self.radius_min, self.radius_max)
        return x[: self.dof], x[self.dof :]

    def exact_solution(
        self, q0: np.ndarray, p0: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact flow ``[n_traj, n_t, dof]`` by normal-mode rotation (see module docstring)."""
        V, w, m = self._modes, self._omega, self.m
        Q0 = (q0 @ V)[:, None, :]  # mode amplitudes [n_traj, 1, dof]
        P0 = (p0 @ V)[:, None, :]
        wt = t[:, None] * w  # [n_t, dof]
        cos, sin = np.cos(wt), np.sin(wt)
        safe_w = np.where(w > 0, w, 1.0)
        # sin(ωt)/ω -> t as ω -> 0: the free (zero) mode moves uniformly.
        sin_over_w = np.where(w > 0, sin / safe_w, t[:, None])
        Q = Q0 * cos + P0 * sin_over_w / m
        P = P0 * cos - m * w * Q0 * sin
        return Q @ V.T, P @ V.T


@final
@dataclass(frozen=True)
class Spring(QuadraticSystem):
    """Ideal mass-spring, ``H = p²/(2m) + k q²/2``, one degree of freedom.

    Parameters
    ----------
    m : float
        Mass (> 0).
    k : float
        Spring constant (> 0); angular frequency ``sqrt(k/m)``.
    radius_min, radius_max : float
        Initial states are drawn on circles of radius ``~ U(radius_min, radius_max)`` in the
        ``(q, p)`` plane, as in Greydanus et al. (2019), whose ``H = q² + p²`` is
        ``m=0.5, k=2``.
    """

    m: float = 1.0
    k: float = 1.0
    radius_min: float = 0.1
    radius_max: float = 1.0

    name = "spring"

    def __post_init__(self) -> None:
        lo, hi = check_range("radius_min", self.radius_min, "radius_max", self.radius_max)
        self._set(
            m=check_finite("m", self.m, positive=True),
            k=check_finite("k", self.k, positive=True),
            radius_min=lo,
            radius_max=hi,
        )
        super().__post_init__()

    def stiffness_matrix(self) -> np.ndarray:
        """``[[k]]``."""
        return np.array([[self.k]])


@final
@dataclass(frozen=True)
class SpringChain(QuadraticSystem):
    """``n`` equal masses coupled by equal springs, with fixed walls or periodic ends.

    ``V = (k/2) Σ_i (q_{i+1} - q_i)²`` where, with ``ends="fixed"``, ``q_0 = q_{n+1} = 0``
    (``n + 1`` springs) and, with ``ends="periodic"``, ``q_{n+1} = q_1`` (``n`` springs). The
    periodic chain's centre of mass is free; the sampler puts it at rest at the origin so
    trajectories stay bounded.

    Parameters
    ----------
    n : int
        Number of masses (>= 1; >= 2 for periodic ends).
    m, k : float
        Mass of each body and spring constant (> 0).
    ends : {"fixed", "periodic"}
    radius_min, radius_max : float
        Radius range of the initial ``(q, p)`` vector in ``R^{2n}``.
    """

    n: int = 5
    m: float = 1.0
    k: float = 1.0
    ends: str = "fixed"
    radius_min: float = 0.1
    radius_max: float = 1.0

    name = "spring-chain"

    def __post_init__(self) -> None:
        n = check_int("n", self.n, minimum=2 if self.ends == "periodic" else 1)
        m = check_finite("m", self.m, positive=True)
        k = check_finite("k", self.k, positive=True)
        if self.ends not in ("fixed", "periodic"):
            raise ConfigError(f"ends must be 'fixed' or 'periodic', got {self.ends!r}")
        lo, hi = check_range("radius_min", self.radius_min, "radius_max", self.radius_max)
        self._set(n=n, m=m, k=k, radius_min=lo, radius_max=hi)
        super().__post_init__()

    def stiffness_matrix(self) -> np.ndarray:
        """``k`` times the chain's graph Laplacian (plus the two wall springs when fixed)."""
        K = 2.0 * np.eye(self.n) - np.eye(self.n, k=1) - np.eye(self.n, k=-1)
        if self.ends == "periodic":
            K[0, -1] -= 1.0
            K[-1, 0] -= 1.0
        return self.k * K

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Shell sample; for periodic ends the centre of mass is moved to rest at the origin."""
        q, p = super().sample_state(rng)
        if self.ends == "periodic":
            q, p = q - q.mean(), p - p.mean()
        return q, p
