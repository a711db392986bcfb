"""Small analytic Hamiltonian fields for the integrator tests (torch, any batch shape).

Kept independent of ``simulators`` so the integrator tests check the integrators against
closed forms and scipy, never against another part of hamgrad.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor


class HarmonicOscillator:
    """``H = p²/2 + q²/2`` (unit mass and frequency); exact rotation in phase space."""

    separable = True

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        return q

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return 0.5 * (q**2 + p**2).sum(-1)

    @staticmethod
    def exact(q0: Tensor, p0: Tensor, t: float) -> tuple[Tensor, Tensor]:
        c, s = math.cos(t), math.sin(t)
        return c * q0 + s * p0, c * p0 - s * q0


class Pendulum:
    """``H = p²/2 + k(1 − cos q)``; ``k`` may be a tensor that requires grad (default 1)."""

    separable = True

    def __init__(self, k: float | Tensor = 1.0) -> None:
        self.k = k

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        return self.k * torch.sin(q)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return (0.5 * p**2 + self.k * (1 - torch.cos(q))).sum(-1)

    def reference(self, q0: np.ndarray, p0: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """scipy DOP853 at rtol = atol = 1e-13 (single state, dof 1..n)."""
        k = float(self.k)
        n = len(q0)

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            return np.concatenate([y[n:], -k * np.sin(y[:n])])

        sol = solve_ivp(rhs, (0.0, t), np.concatenate([q0, p0]), "DOP853", rtol=1e-13, atol=1e-13)
        return sol.y[:n, -1], sol.y[n:, -1]


class Kepler:
    """Planar Kepler problem ``H = |p|²/2 − 1/|q|`` (GM = 1), dof 2."""

    separable = True

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        r2 = (q**2).sum(-1, keepdim=True)
        return q / r2**1.5

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return 0.5 * (p**2).sum(-1) - 1.0 / q.norm(dim=-1)

    @staticmethod
    def initial(e: float) -> tuple[Tensor, Tensor]:
        """Pericentre of the orbit with semi-major axis 1 and eccentricity ``e``."""
        return (
            torch.tensor([1.0 - e, 0.0]),
            torch.tensor([0.0, math.sqrt((1.0 + e) / (1.0 - e))]),
        )

    @staticmethod
    def exact(e: float, t: float) -> tuple[Tensor, Tensor]:
        """Closed-form state at time ``t`` from pericentre (a = 1, period 2π)."""
        E = eccentric_anomaly(t, e)
        denom = 1.0 - e * math.cos(E)
        b = math.sqrt(1.0 - e * e)
        q = torch.tensor([math.cos(E) - e, b * math.sin(E)])
        p = torch.tensor([-math.sin(E) / denom, b * math.cos(E) / denom])
        return q, p


def eccentric_anomaly(M: float, e: float) -> float:
    """Solve Kepler's equation ``E − e sin E = M`` by Newton's method to machine precision."""
    E = M if e < 0.8 else math.pi
    for _ in range(50):
        step = (E - e * math.sin(E) - M) / (1.0 - e * math.cos(E))
        E -= step
        if abs(step) < 1e-16:
            break
    return E


class HenonHeiles:
    """``H = |p|²/2 + (x² + y²)/2 + x²y − y³/3``: separable, non-quadratic, dof 2."""

    separable = True

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        x, y = q[..., 0], q[..., 1]
        return torch.stack([x + 2 * x * y, y + x**2 - y**2], dim=-1)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p


class NonSeparable:
    """``H = (|q|² + 1)(|p|² + 1)/2 + q₁q₂``: non-separable, non-quadratic, dof 2 (cf. Tao 2016)."""

    separable = False

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        coupling = torch.stack([q[..., 1], q[..., 0]], dim=-1)
        return q * ((p**2).sum(-1, keepdim=True) + 1.0) + coupling

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p * ((q**2).sum(-1, keepdim=True) + 1.0)


class FreeThenNaN:
    """Free particle (``H = p²/2``) whose force is NaN once any ``|q| > threshold``."""

    separable = True

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        bad = (q.abs() > self.threshold).any(-1, keepdim=True)
        return torch.where(bad, torch.full_like(q, float("nan")), torch.zeros_like(q))

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p


class Damped:
    """A non-Hamiltonian field with only ``time_derivative``: damped oscillator."""

    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        return p, -q - 0.1 * p
