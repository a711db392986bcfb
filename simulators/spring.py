"""Linear oscillators: the mass-spring and a chain of coupled masses, solved by normal modes.

Both are ``H = |p|² / (2m) + ½ qᵀ K q`` with a constant stiffness matrix ``K``, so the flow is
exact in closed form: diagonalise ``K = V diag(λ) Vᵀ`` once, and each normal mode rotates with
angular frequency ``ω = sqrt(λ / m)`` (a zero mode, the free translation of a periodic chain,
moves uniformly).

The mass-spring of Greydanus et al. (2019), ``H = q² + p²``, is ``Spring(m=0.5, k=2)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import ConfigError, check_finite, check_int
from simulators.base import System, check_range, sample_shell

__all__ = ["QuadraticSystem", "Spring", "SpringChain"]


class QuadraticSystem(System):
    """``H = |p|² / (2m) + ½ qᵀ K q`` for a symmetric positive semidefinite ``K [dof, dof]``.

    Subclasses call ``_setup(m, K, r_min, r_max)``. Positions are displacements from
    equilibrium (length units), momenta ``m · dq/dt``.
    """

    separable = True
    exact_method = "closed form (normal modes)"

    def _setup(self, m: float, K: np.ndarray, r_min: float, r_max: float) -> None:
        self.m = m
        self.K = np.asarray(K, dtype=np.float64)
        self.dof = self.K.shape[0]
        self.radius_min, self.radius_max = r_min, r_max
        lam, self._modes = np.linalg.eigh(self.K)
        # Round-off can leave a zero mode at -1e-16; it is a free translation, not unstable.
        self._omega = np.sqrt(np.clip(lam, 0.0, None) / m)

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

    def exact_solution(self, q0: np.ndarray, p0: np.ndarray,
                       t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    name = "spring"

    def __init__(self, m: float = 1.0, k: float = 1.0, radius_min: float = 0.1,
                 radius_max: float = 1.0) -> None:
        m = check_finite("m", m, positive=True)
        k = check_finite("k", k, positive=True)
        r = check_range("radius_min", radius_min, "radius_max", radius_max)
        self._params: dict[str, Any] = {"m": m, "k": k, "radius_min": r[0], "radius_max": r[1]}
        self._setup(m, np.array([[k]]), *r)


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

    name = "spring-chain"

    def __init__(self, n: int = 5, m: float = 1.0, k: float = 1.0, ends: str = "fixed",
                 radius_min: float = 0.1, radius_max: float = 1.0) -> None:
        n = check_int("n", n, minimum=2 if ends == "periodic" else 1)
        m = check_finite("m", m, positive=True)
        k = check_finite("k", k, positive=True)
        if ends not in ("fixed", "periodic"):
            raise ConfigError(f"ends must be 'fixed' or 'periodic', got {ends!r}")
        r = check_range("radius_min", radius_min, "radius_max", radius_max)
        self.ends = ends
        self._params = {"n": n, "m": m, "k": k, "ends": ends, "radius_min": r[0],
                        "radius_max": r[1]}
        # Graph Laplacian of the chain (+ the two wall springs when fixed), times k.
        K = 2.0 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
        if ends == "periodic":
            K[0, -1] -= 1.0
            K[-1, 0] -= 1.0
        self._setup(m, k * K, *r)

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Shell sample; for periodic ends the centre of mass is moved to rest at the origin."""
        q, p = super().sample_state(rng)
        if self.ends == "periodic":
            q, p = q - q.mean(), p - p.mean()
        return q, p
