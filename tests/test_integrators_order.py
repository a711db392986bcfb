"""Empirical order of convergence equals the declared order, for every registered integrator.

Three problems with trusted references that never come from hamgrad's integrators: the harmonic
oscillator (closed form), the pendulum (scipy DOP853 at rtol = atol = 1e-13) and the Kepler
orbit with eccentricity 0.5 (closed form via Kepler's equation). The slope of log(error) against
log(dt) over three step sizes (halving) must be within ±0.15 of the declared order. Step counts
are chosen per order so errors stay well above the reference/roundoff floor (~1e-14).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _fields import HarmonicOscillator, Kepler, Pendulum

from hamgrad.integrators import INTEGRATORS, get_integrator, rollout

ORDERED = [name for name, m in INTEGRATORS.items() if m.order is not None]
ADAPTIVE = [name for name, m in INTEGRATORS.items() if m.order is None]

# Smallest step count per declared order (then x2, x4), per problem.
_SHORT = {1: 16, 2: 16, 4: 32, 6: 8, 8: 4}  # harmonic oscillator and pendulum, t = 2
_KEPLER = {1: 1024, 2: 128, 4: 128, 6: 32, 8: 32}  # Kepler e = 0.5, t = π (pericentre->apocentre)
# Tao's error constant grows with the binding ω·dt (Tao 2016, sec. 3), so its asymptotic regime
# starts at 4x more steps for the default ω = 10.
_TAO_FACTOR = 4


def _reference(problem: str):
    """(field, q0, p0, t_end, (q_ref, p_ref), steps-by-order)."""
    if problem == "harmonic":
        q0, p0 = torch.tensor([1.0]), torch.tensor([0.5])
        return HarmonicOscillator(), q0, p0, 2.0, HarmonicOscillator.exact(q0, p0, 2.0), _SHORT
    if problem == "pendulum":
        field = Pendulum()
        q0, p0 = torch.tensor([1.0]), torch.tensor([0.5])
        qr, pr = field.reference(q0.numpy(), p0.numpy(), 2.0)
        return field, q0, p0, 2.0, (torch.from_numpy(qr), torch.from_numpy(pr)), _SHORT
    q0, p0 = Kepler.initial(0.5)
    return Kepler(), q0, p0, math.pi, Kepler.exact(0.5, math.pi), _KEPLER


def _error(field, q0, p0, t_end, ref, method, n) -> float:
    with torch.no_grad():
        traj = rollout(field, q0, p0, t_end / n, n, method=method)
    return float(torch.cat([traj.q[-1] - ref[0], traj.p[-1] - ref[1]]).norm())


@pytest.mark.parametrize("problem", ["harmonic", "pendulum", "kepler"])
@pytest.mark.parametrize("name", ORDERED)
def test_empirical_order_matches_declared(name: str, problem: str) -> None:
    method = INTEGRATORS[name]
    field, q0, p0, t_end, ref, steps = _reference(problem)
    n0 = steps[method.order] * (_TAO_FACTOR if name.startswith("tao") else 1)
    ns = [n0, 2 * n0, 4 * n0]
    errors = [_error(field, q0, p0, t_end, ref, name, n) for n in ns]
    assert min(errors) > 1e-13, f"errors {errors} reach the roundoff floor; slope meaningless"
    slope = np.polyfit(np.log([t_end / n for n in ns]), np.log(errors), 1)[0]
    assert abs(slope - method.order) <= 0.15, f"{name} on {problem}: slope {slope:.3f}, {errors}"


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_methods_meet_their_tolerance(name: str) -> None:
    """Adaptive solvers have no order in dt: their error must follow rtol/atol instead."""
    field, q0, p0, t_end, ref, _ = _reference("kepler")
    loose = _error(field, q0, p0, t_end, ref, get_integrator(name, rtol=1e-6, atol=1e-6), 4)
    tight = _error(field, q0, p0, t_end, ref, get_integrator(name, rtol=1e-11, atol=1e-11), 4)
    # Local tolerances do not bound the global error exactly: allow 1e-7 after half an orbit.
    assert tight < 1e-7, f"{name}: error {tight:.2e} at rtol = atol = 1e-11"
    assert tight < loose / 100, f"{name}: error {tight:.2e} (tight) vs {loose:.2e} (loose)"
