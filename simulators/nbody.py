"""Gravitational N-body systems: general `NBody`, the two-body `Kepler` problem and `ThreeBody`.

Bodies are flattened into the coordinate vector: ``q = (x_1, ..., x_n)`` with each ``x_i`` in
``R^dim``, so ``dof = n * dim``; ``p_i = m_i dx_i/dt``. The (optionally Plummer-softened)
Hamiltonian is ::

    H = Σ_i |p_i|² / (2 m_i) - Σ_{i<j} G m_i m_j / sqrt(|x_i - x_j|² + ε²)

The three systems are final siblings over the abstract `_Gravity`, which holds this field.
`Kepler` has an exact solution for bound orbits (Kepler's equation via f and g functions, e.g.
Vallado, *Fundamentals of Astrodynamics and Applications*, 4th ed., Alg. 8; Murray & Dermott,
*Solar System Dynamics*, §2.4); otherwise the reference is REBOUND's IAS15
(`simulators.rebound_reference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import ConfigError, IntegratorError, check_finite, check_int
from simulators.base import System, check_range

__all__ = ["Kepler", "NBody", "ThreeBody", "angular_momentum", "total_momentum"]


def _masses(value: float | Sequence[float], n: int) -> tuple[float, ...]:
    """One mass or ``n`` masses as a tuple of ``n`` positive floats."""
    values = [value] * n if np.isscalar(value) else list(value)  # type: ignore[arg-type]
    if len(values) != n:
        raise ConfigError(f"masses must be one number or a list of n={n}, got {value!r}")
    return tuple(check_finite("masses", v, positive=True) for v in values)


class _Gravity(System):
    """Abstract: ``n`` point masses in ``dim`` = 2 or 3 dimensions under Newtonian gravity.

    Holds the field (Hamiltonian, analytic gradients, centre-of-mass frame); a concrete
    subclass provides ``n``, ``dim``, ``masses`` (a tuple of ``n`` floats), ``G`` and
    ``softening`` (as fields, derived attributes or class constants), calls
    `_check_gravity` from its ``__post_init__`` and implements ``sample_state``. The
    reference for trajectories without a closed form is REBOUND IAS15 (``"ias15"``).
    """

    separable = True
    reference_method = "ias15"
    n: int
    dim: int
    masses: Any  # as given by a subclass field; a tuple of n floats after __post_init__
    G: float
    softening: float

    @property
    def dof(self) -> int:  # type: ignore[override]
        """``n * dim``."""
        return self.n * self.dim

    def _check_gravity(self) -> None:
        """Validate ``dim``, ``G`` and ``softening`` (normalised to floats)."""
        if isinstance(self.dim, bool) or self.dim not in (2, 3):
            raise ConfigError(f"dim must be 2 or 3, got {self.dim!r}")
        softening = check_finite("softening", self.softening)
        if softening < 0:
            raise ConfigError(f"softening must be >= 0, got {self.softening!r}")
        self._set(G=check_finite("G", self.G, positive=True), softening=softening)

    # -- field ----------------------------------------------------------------------------
    def _bodies(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], self.n, self.dim)

    def _pair_terms(self, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pair differences ``[..., n, n, dim]``, ``G m_i m_j`` (0 on the diagonal), distances."""
        x = self._bodies(q)
        diff = x[..., :, None, :] - x[..., None, :, :]
        m = torch.as_tensor(self.masses, dtype=q.dtype, device=q.device)
        eye = torch.eye(self.n, dtype=q.dtype, device=q.device)
        gmm = self.G * m[:, None] * m[None, :] * (1 - eye)
        # The diagonal gets distance 1 instead of 0 so no 0/0 appears; its weight is 0 anyway.
        dist = torch.sqrt((diff * diff).sum(-1) + self.softening**2 + eye)
        return diff, gmm, dist

    def _mass_per_coord(self, x: Tensor) -> Tensor:
        m = torch.as_tensor(self.masses, dtype=x.dtype, device=x.device)
        return m.repeat_interleave(self.dim)

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Energy, shapes ``[..., n*dim]`` -> ``[...]``."""
        _, gmm, dist = self._pair_terms(q)
        kinetic = (p * p / (2 * self._mass_per_coord(p))).sum(-1)
        return kinetic - 0.5 * (gmm / dist).sum((-1, -2))

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """``-force``: ``Σ_j G m_i m_j (x_i - x_j) / r_ij³``, shape ``[..., n*dim]``."""
        diff, gmm, dist = self._pair_terms(q)
        grad = ((gmm / dist**3)[..., None] * diff).sum(-2)
        return grad.reshape(q.shape)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """Velocities ``p_i / m_i``, shape ``[..., n*dim]``."""
        return p / self._mass_per_coord(p)

    # -- numpy helpers for samplers and checks ------------------------------------------
    def _to_com_frame(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = np.asarray(self.masses)[:, None]
        return x - (m * x).sum(0) / m.sum(), v - (m * v).sum(0) / m.sum()


@final
@dataclass(frozen=True)
class NBody(_Gravity):
    """``n`` point masses in ``dim`` = 2 or 3 dimensions under Newtonian gravity.

    The sampler draws random bound *planetary* configurations: body 0 (the heaviest by
    default) at the centre, bodies ``1..n-1`` on near-circular orbits around it with radii
    ``~ U(radius_min, radius_max)``, random phases (and, in 3-D, random orbital planes tilted
    by at most ``inclination_max``), speeds ``1 + U(-perturbation, perturbation)`` times the
    circular speed about body 0; the whole is moved to the centre-of-mass frame. Unlike
    virialised random clusters, these start far from close encounters. They do not stay so:
    with the default masses and ``min_gap``, neighbouring planets may start 0.5 to 2 mutual
    Hill radii apart, well inside the 2√3 that guarantees two planets never meet (Gladman,
    Icarus 106, 1993), so close encounters between planets are common within a few orbits;
    the reference detects and reports them (`simulators.rebound_reference`).

    Parameters
    ----------
    n : int
        Number of bodies (>= 2).
    dim : int
        Spatial dimension, 2 or 3.
    masses : float, list of float or None
        One mass for all bodies, one per body (> 0), or None for a star of mass 1 with
        planets of mass 0.01. Stored as a tuple of ``n`` floats.
    G : float
        Gravitational constant (> 0).
    softening : float
        Plummer softening length ε (>= 0); 0 is exact Newtonian gravity.
    radius_min, radius_max, perturbation, inclination_max : float
        Sampler settings (above; the inclination in radians).
    min_gap : float
        Sampler: orbit radii are redrawn until neighbouring radii differ by at least this
        (crossing or co-orbital planets would meet in close encounters).
    """

    n: int = 4
    dim: int = 2
    masses: float | Sequence[float] | None = None
    G: float = 1.0
    softening: float = 0.0
    radius_min: float = 0.5
    radius_max: float = 2.0
    perturbation: float = 0.05
    inclination_max: float = 0.2
    min_gap: float = 0.2

    name = "nbody"

    def __post_init__(self) -> None:
        n = check_int("n", self.n, minimum=2)
        masses = (1.0, *[0.01] * (n - 1)) if self.masses is None else self.masses
        self._set(n=n, masses=_masses(masses, n))
        self._check_gravity()
        lo, hi = check_range("radius_min", self.radius_min, "radius_max", self.radius_max)
        self._set(
            radius_min=lo,
            radius_max=hi,
            perturbation=abs(check_finite("perturbation", self.perturbation)),
            inclination_max=abs(check_finite("inclination_max", self.inclination_max)),
            min_gap=abs(check_finite("min_gap", self.min_gap)),
        )
        if n > 2 and (n - 2) * self.min_gap >= hi - lo:
            raise ConfigError(
                f"min_gap={self.min_gap!r} leaves no room for n-1={n - 1} orbits "
                f"between radius_min={lo!r} and radius_max={hi!r}"
            )

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random planetary configuration, ``(q, p)`` of shape ``[n*dim]`` (class docstring)."""
        k = self.n - 1
        for _ in range(10_000):
            radius = rng.uniform(self.radius_min, self.radius_max, size=k)
            if k == 1 or np.diff(np.sort(radius)).min() >= self.min_gap:
                break
        else:
            raise ConfigError(
                f"could not draw {k} orbit radii with min_gap={self.min_gap}; "
                "lower min_gap or widen radius_min..radius_max"
            )
        phase = rng.uniform(0, 2 * np.pi, size=k)
        # Orbit-plane basis (e1, e2): the x-y plane, tilted about a random in-plane axis in 3-D.
        e1 = np.zeros((k, self.dim))
        e2 = np.zeros((k, self.dim))
        e1[:, 0], e2[:, 1] = 1.0, 1.0
        if self.dim == 3:
            tilt = rng.uniform(-self.inclination_max, self.inclination_max, size=k)
            node = rng.uniform(0, 2 * np.pi, size=k)
            axis = np.stack((np.cos(node), np.sin(node), np.zeros(k)), axis=1)
            normal = np.stack(
                (-np.sin(node) * np.sin(tilt), np.cos(node) * np.sin(tilt), np.cos(tilt)), axis=1
            )
            e1, e2 = axis, np.cross(normal, axis)
        direction = np.cos(phase)[:, None] * e1 + np.sin(phase)[:, None] * e2
        tangent = -np.sin(phase)[:, None] * e1 + np.cos(phase)[:, None] * e2
        m = np.asarray(self.masses)
        speed = np.sqrt(self.G * (m[0] + m[1:]) / radius)
        speed *= 1 + rng.uniform(-self.perturbation, self.perturbation, size=k)
        x = np.vstack((np.zeros(self.dim), radius[:, None] * direction))
        v = np.vstack((np.zeros(self.dim), speed[:, None] * tangent))
        x, v = self._to_com_frame(x, v)
        return x.reshape(-1), (m[:, None] * v).reshape(-1)


@final
@dataclass(frozen=True)
class ThreeBody(_Gravity):
    """Three bodies in the plane from perturbed Lagrange (equilateral) configurations.

    The sampler follows Greydanus et al. (2019): bodies on a circle of radius
    ``~ U(radius_min, radius_max)`` at 120° with a random rotation, each given the speed of a
    circular orbit about the centre (exact for equal masses), then each velocity scaled by
    ``1 + U(-perturbation, perturbation)`` and the whole moved to the centre-of-mass frame.
    The equal-mass Lagrange configuration is unstable: over tens of time units most
    trajectories break up through close encounters.

    Parameters
    ----------
    masses : float or list of 3 floats
        Stored as a tuple of 3 floats.
    G, softening : float
        As in `NBody`.
    radius_min, radius_max, perturbation : float
        Sampler settings (above).
    """

    masses: float | Sequence[float] = 1.0
    G: float = 1.0
    softening: float = 0.0
    radius_min: float = 0.9
    radius_max: float = 1.2
    perturbation: float = 0.05

    name = "three-body"
    n = 3
    dim = 2

    def __post_init__(self) -> None:
        self._set(masses=_masses(self.masses, 3))
        self._check_gravity()
        lo, hi = check_range("radius_min", self.radius_min, "radius_max", self.radius_max)
        self._set(
            radius_min=lo,
            radius_max=hi,
            perturbation=abs(check_finite("perturbation", self.perturbation)),
        )

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A perturbed equilateral configuration, ``(q, p)`` of shape ``[6]`` each."""
        r = rng.uniform(self.radius_min, self.radius_max)
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(3) / 3
        x = r * np.stack((np.cos(angles), np.sin(angles)), axis=1)
        q = torch.from_numpy(x.reshape(-1))
        accel = (-self.dH_dq(q, q) / self._mass_per_coord(q)).numpy().reshape(3, 2)
        speed = np.sqrt(np.linalg.norm(accel, axis=1) * r)
        tangent = np.stack((-np.sin(angles), np.cos(angles)), axis=1)
        v = tangent * (speed * (1 + rng.uniform(-self.perturbation, self.perturbation, 3)))[:, None]
        x, v = self._to_com_frame(x, v)
        return x.reshape(-1), (np.asarray(self.masses)[:, None] * v).reshape(-1)


@final
@dataclass(frozen=True)
class Kepler(_Gravity):
    """The two-body problem in the plane (registry name ``kepler``, alias ``two-body``).

    Solved exactly through Kepler's equation for bound (elliptic) orbits; an unbound orbit
    falls back to the numerical reference (REBOUND IAS15). The sampler puts the bodies at
    separation ``~ U(radius_min, radius_max)`` in a random direction with relative speed
    ``~ U(speed_min, speed_max)`` times the circular speed, perpendicular to the separation,
    centre of mass at rest at the origin (after Greydanus et al., 2019).

    Parameters
    ----------
    m1, m2 : float
        Masses (> 0).
    G : float
        Gravitational constant (> 0).
    radius_min, radius_max : float
        Range of the initial separation.
    speed_min, speed_max : float
        Range of the initial relative speed in units of the circular speed
        (``< sqrt(2)`` keeps the orbit bound).
    """

    m1: float = 1.0
    m2: float = 1.0
    G: float = 1.0
    radius_min: float = 0.5
    radius_max: float = 1.5
    speed_min: float = 0.9
    speed_max: float = 1.1

    name = "kepler"
    exact_method = "closed form (Kepler's equation, f and g functions)"
    n = 2
    dim = 2
    softening = 0.0

    def __post_init__(self) -> None:
        self._set(
            m1=check_finite("m1", self.m1, positive=True),
            m2=check_finite("m2", self.m2, positive=True),
        )
        self._check_gravity()
        r_lo, r_hi = check_range("radius_min", self.radius_min, "radius_max", self.radius_max)
        v_lo, v_hi = check_range("speed_min", self.speed_min, "speed_max", self.speed_max)
        self._set(radius_min=r_lo, radius_max=r_hi, speed_min=v_lo, speed_max=v_hi)

    @property
    def masses(self) -> tuple[float, float]:
        """``(m1, m2)``."""
        return (self.m1, self.m2)

    @property
    def mu(self) -> float:
        """Gravitational parameter ``G (m1 + m2)`` of the relative orbit."""
        return self.G * sum(self.masses)

    def sample_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random orbit, ``(q, p)`` of shape ``[4]`` each (see class docstring)."""
        r = rng.uniform(self.radius_min, self.radius_max)
        phi = rng.uniform(0, 2 * np.pi)
        sep = r * np.array([np.cos(phi), np.sin(phi)])
        rel_v = (
            rng.uniform(self.speed_min, self.speed_max)
            * np.sqrt(self.mu / r)
            * np.array([-np.sin(phi), np.cos(phi)])
            * rng.choice([-1.0, 1.0])
        )
        m1, m2 = self.masses
        x = np.stack((sep * m2, -sep * m1)) / (m1 + m2)
        v = np.stack((rel_v * m2, -rel_v * m1)) / (m1 + m2)
        return x.reshape(-1), (np.asarray(self.masses)[:, None] * v).reshape(-1)

    def exact_solution(
        self, q0: np.ndarray, p0: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact flow ``[n_traj, n_t, 4]``; None when any orbit is unbound (then DOP853)."""
        m1, m2 = self.masses
        M = m1 + m2
        x0, v0 = q0.reshape(-1, 2, 2), (p0.reshape(-1, 2, 2) / np.array([[m1], [m2]]))
        com_x = (m1 * x0[:, 0] + m2 * x0[:, 1]) / M  # [B, 2]
        com_v = (m1 * v0[:, 0] + m2 * v0[:, 1]) / M
        r0v, v0v = x0[:, 0] - x0[:, 1], v0[:, 0] - v0[:, 1]
        mu = self.mu
        r0 = np.linalg.norm(r0v, axis=1)[:, None]  # [B, 1] against t [n_t]
        alpha = 2 / r0 - (v0v**2).sum(1)[:, None] / mu  # 1/a
        if np.any(alpha <= 0):
            return None
        a = 1 / alpha
        n = np.sqrt(mu / a**3)
        sig = (r0v * v0v).sum(1)[:, None] / np.sqrt(mu)  # r·v / sqrt(mu)
        C, S = 1 - r0 / a, sig / np.sqrt(a)  # e cos E0, e sin E0
        x = _solve_kepler(n * t, C, S)  # eccentric-anomaly change [B, n_t]
        cx, sx = np.cos(x), np.sin(x)
        r = a + (r0 - a) * cx + sig * np.sqrt(a) * sx
        f = 1 - a / r0 * (1 - cx)
        g = t + (sx - x) / n
        fd = -np.sqrt(mu * a) * sx / (r * r0)
        gd = 1 - a / r * (1 - cx)
        rel = f[..., None] * r0v[:, None] + g[..., None] * v0v[:, None]  # [B, n_t, 2]
        rel_v = fd[..., None] * r0v[:, None] + gd[..., None] * v0v[:, None]
        com = com_x[:, None] + t[:, None] * com_v[:, None]
        q = np.concatenate((com + m2 / M * rel, com - m1 / M * rel), axis=-1)
        vel = np.concatenate(
            (com_v[:, None] + m2 / M * rel_v, com_v[:, None] - m1 / M * rel_v), axis=-1
        )
        return q, vel * np.array([m1, m1, m2, m2])


def _solve_kepler(mean: np.ndarray, C: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Solve ``x - C sin x + S (1 - cos x) = mean`` for ``x`` by Newton's method.

    The left side is increasing (its derivative is ``r/a > 0`` for an ellipse), so Newton from
    ``x = mean`` converges for every eccentricity below about 0.9; stop at round-off level.
    """
    x = np.array(mean, dtype=np.float64, copy=True)
    tol = 4 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    for _ in range(100):
        F = x - C * np.sin(x) + S * (1 - np.cos(x)) - mean
        step = F / (1 - C * np.cos(x) + S * np.sin(x))
        x -= step
        if np.all(np.abs(step) <= tol):
            return x
    raise IntegratorError(
        "Kepler's equation did not converge in 100 Newton steps "
        f"(max residual {np.max(np.abs(F)):.3g}); eccentricity too high?"
    )


def total_momentum(system: _Gravity, p: np.ndarray) -> np.ndarray:
    """Total linear momentum ``Σ_i p_i``, ``p [..., n*dim]`` -> ``[..., dim]``."""
    return p.reshape(*p.shape[:-1], system.n, system.dim).sum(-2)


def angular_momentum(system: _Gravity, q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Total angular momentum ``Σ_i x_i × p_i``: ``[...]`` in 2-D, ``[..., 3]`` in 3-D."""
    x = q.reshape(*q.shape[:-1], system.n, system.dim)
    pp = p.reshape(*p.shape[:-1], system.n, system.dim)
    if system.dim == 2:
        return (x[..., 0] * pp[..., 1] - x[..., 1] * pp[..., 0]).sum(-1)
    return np.cross(x, pp).sum(-2)
