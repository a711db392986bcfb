"""The ideal pendulum, solved exactly with Jacobi elliptic functions.

``H = p² / (2 m l²) + m g l (1 - cos q)`` with ``q`` the angle from the downward vertical
(radians, not wrapped: a rotating pendulum's angle keeps growing) and ``p = m l² dq/dt``.
Greydanus et al. (2019) use ``H = 3(1 - cos q) + p²``, which is ``m=0.5, l=1, g=6``.

Exact flow (e.g. Lawden, *Elliptic Functions and Applications*, 1989, §5.2; or
https://en.wikipedia.org/wiki/Pendulum_(mechanics)): with ``ω0 = sqrt(g/l)``, ``θ' = dq/dt``
and the modulus ``k² = [θ'²/(4ω0²) + sin²(q/2)]`` (so ``k < 1`` librates, ``k > 1`` rotates),

- libration: ``sin(q/2) = k sn(u, k²)``, ``θ' = 2 k ω0 cn(u, k²)``, ``u = u0 + ω0 t``;
- rotation: ``q/2 = ±am(u, 1/k²)``, ``θ' = ±2 k ω0 dn(u, 1/k²)``, ``u = u0 + k ω0 t``;

where ``u0`` is the incomplete elliptic integral ``F(φ0 | m)`` of the initial amplitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import numpy as np
import torch
from scipy.special import ellipj, ellipkinc
from torch import Tensor

from hamgrad.errors import check_finite
from simulators.base import System, check_range, sample_shell

__all__ = ["Pendulum"]


@final
@dataclass(frozen=True)
class Pendulum(System):
    """Ideal pendulum of mass ``m`` (kg), length ``l`` (m) in gravity ``g`` (m/s²); dof = 1.

    Parameters
    ----------
    m, g, l : float
        Mass, gravitational acceleration and length (> 0).
    radius_min, radius_max : float
        Initial states lie on circles of radius ``~ U(radius_min, radius_max)`` in the
        ``(q, p)`` plane, the sampler of Greydanus et al. (2019) (their range 1.3 to 2.3).
    """

    m: float = 1.0
    g: float = 9.81
    l: float = 1.0
    radius_min: float = 1.3
    radius_max: float = 2.3

    name = "pendulum"
    separable = True
    exact_method = "closed form (Jacobi elliptic functions)"
    dof = 1

    def __post_init__(self) -> None:
        self._set(
            m=check_finite("m", self.m, positive=True),
            g=check_finite("g", self.g, positive=True),
            l=check_finite("l", self.l, positive=True),
        )
        lo, hi = check_range("radius_min", self.radius_min, "radius_max", self.radius_max)
        self._set(radius_min=lo, radius_max=hi)

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Energy (J), shapes ``[..., 1]`` -> ``[...]``."""
        kinetic = p[..., 0] ** 2 / (2 * self.m * self.l**2)
        return kinetic + self.m * self.g * self.l * (1 - torch.cos(q[..., 0]))

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """``m g l sin q``, shape ``[..., 1]``."""
        return self.m * self.g * self.l * torch.sin(q)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """``p / (m l²)``, shape ``[..., 1]``."""
        return p / (self.m * self.l**2)

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(q, p)`` of shape ``[1]`` each, on a random circle (see class docstring)."""
        x = sample_shell(rng, 2, self.radius_min, self.radius_max)
        return x[:1], x[1:]

    def exact_solution(
        self, q0: np.ndarray, p0: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact flow ``[n_traj, n_t, 1]`` for librating and rotating states alike."""
        w0 = np.sqrt(self.g / self.l)
        mll = self.m * self.l**2
        th0 = q0[:, 0][:, None]  # [n_traj, 1], broadcast against t [n_t]
        thd0 = (p0[:, 0] / mll)[:, None]
        k = np.sqrt(thd0**2 / (4 * w0**2) + np.sin(th0 / 2) ** 2)
        libr = (k <= 1.0)[:, 0]
        theta = np.empty((len(th0), len(t)))
        thetad = np.empty_like(theta)

        if libr.any():
            kk, a, ad = k[libr], th0[libr], thd0[libr]
            # Angle of the libration centre this swing runs around (multiples of 2π).
            centre = 2 * np.pi * np.round(a / (2 * np.pi))
            k_safe = np.where(kk > 0, kk, 1.0)  # k = 0 is rest at the bottom: sn0=0, cn0=1
            sn0 = np.where(kk > 0, np.sin((a - centre) / 2) / k_safe, 0.0)
            cn0 = np.where(kk > 0, ad / (2 * k_safe * w0), 1.0)
            u0 = ellipkinc(np.arctan2(sn0, cn0), kk**2)
            sn, cn, _, _ = ellipj(u0 + w0 * t, kk**2)
            theta[libr] = centre + 2 * np.arcsin(np.clip(kk * sn, -1.0, 1.0))
            thetad[libr] = 2 * kk * w0 * cn

        rot = ~libr
        if rot.any():
            kk, a, ad = k[rot], th0[rot], thd0[rot]
            s = np.sign(ad)  # never 0: k > 1 needs a non-zero velocity
            m_rot = 1.0 / kk**2
            # Mirror to positive velocity, solve, mirror back; am and F are continuous in φ.
            u0 = ellipkinc(s * a / 2, m_rot)
            _, _, dn, am = ellipj(u0 + kk * w0 * t, m_rot)
            theta[rot] = s * 2 * am
            thetad[rot] = s * 2 * kk * w0 * dn

        return theta[..., None], (mll * thetad)[..., None]
