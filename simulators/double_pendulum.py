"""The planar double pendulum: a chaotic, non-separable Hamiltonian with no closed-form flow.

Angles ``q = (θ1, θ2)`` from the downward vertical (radians), canonical momenta ``p = (p1, p2)``.
With ``Δ = θ1 - θ2`` and ``D = m1 + m2 sin²Δ`` (e.g. Goldstein, *Classical Mechanics*; the form
used by https://scienceworld.wolfram.com/physics/DoublePendulum.html)::

    H = [m2 l2² p1² + (m1 + m2) l1² p2² - 2 m2 l1 l2 p1 p2 cos Δ] / (2 m2 l1² l2² D)
        - (m1 + m2) g l1 cos θ1 - m2 g l2 cos θ2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import check_finite
from simulators.base import System

__all__ = ["DoublePendulum"]


@final
@dataclass(frozen=True)
class DoublePendulum(System):
    """Double pendulum with point masses ``m1, m2`` (kg) on rods ``l1, l2`` (m); dof = 2.

    Parameters
    ----------
    m1, m2, l1, l2, g : float
        Masses, lengths and gravitational acceleration (> 0).
    angle_max : float
        Initial angles ``~ U(-angle_max, angle_max)`` (radians).
    momentum_max : float
        Initial momenta ``~ U(-momentum_max, momentum_max)`` (>= 0).
    """

    m1: float = 1.0
    m2: float = 1.0
    l1: float = 1.0
    l2: float = 1.0
    g: float = 9.81
    angle_max: float = 1.0
    momentum_max: float = 0.5

    name = "double-pendulum"
    separable = False
    dof = 2

    def __post_init__(self) -> None:
        self._set(
            **{
                key: check_finite(key, getattr(self, key), positive=True)
                for key in ("m1", "m2", "l1", "l2", "g", "angle_max")
            }
        )
        self._set(momentum_max=abs(check_finite("momentum_max", self.momentum_max)))

    def _terms(self, q: Tensor, p: Tensor):
        d = q[..., 0] - q[..., 1]
        c, s = torch.cos(d), torch.sin(d)
        den = self.m1 + self.m2 * s**2
        p1, p2 = p[..., 0], p[..., 1]
        num = (
            self.m2 * self.l2**2 * p1**2
            + (self.m1 + self.m2) * self.l1**2 * p2**2
            - 2 * self.m2 * self.l1 * self.l2 * p1 * p2 * c
        )
        return c, s, den, p1, p2, num

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Energy (J), shapes ``[..., 2]`` -> ``[...]``."""
        _, _, den, _, _, num = self._terms(q, p)
        kinetic = num / (2 * self.m2 * self.l1**2 * self.l2**2 * den)
        return (
            kinetic
            - (self.m1 + self.m2) * self.g * self.l1 * torch.cos(q[..., 0])
            - self.m2 * self.g * self.l2 * torch.cos(q[..., 1])
        )

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """Analytic ∂H/∂q, shape ``[..., 2]`` (depends on ``p``: the system is non-separable)."""
        c, s, den, p1, p2, num = self._terms(q, p)
        scale = 2 * self.m2 * self.l1**2 * self.l2**2
        dnum = 2 * self.m2 * self.l1 * self.l2 * p1 * p2 * s  # ∂num/∂Δ
        dden = 2 * self.m2 * s * c  # ∂den/∂Δ
        dT = (dnum * den - num * dden) / (scale * den**2)  # ∂T/∂Δ
        g1 = dT + (self.m1 + self.m2) * self.g * self.l1 * torch.sin(q[..., 0])
        g2 = -dT + self.m2 * self.g * self.l2 * torch.sin(q[..., 1])
        return torch.stack((g1, g2), dim=-1)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """Analytic ∂H/∂p (angular velocities, rad/s), shape ``[..., 2]``."""
        c, _, den, p1, p2, _ = self._terms(q, p)
        v1 = (self.l2 * p1 - self.l1 * p2 * c) / (self.l1**2 * self.l2 * den)
        v2 = ((self.m1 + self.m2) * self.l1 * p2 - self.m2 * self.l2 * p1 * c) / (
            self.m2 * self.l1 * self.l2**2 * den
        )
        return torch.stack((v1, v2), dim=-1)

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniform angles in ``±angle_max`` and momenta in ``±momentum_max``, each ``[2]``."""
        q = rng.uniform(-self.angle_max, self.angle_max, size=2)
        p = rng.uniform(-self.momentum_max, self.momentum_max, size=2)
        return q, p
