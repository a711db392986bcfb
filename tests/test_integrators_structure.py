"""Geometric guarantees: symplecticity and time reversibility, tested as declared.

Symplecticity: the float64 Jacobian M of one step satisfies ‖MᵀJM − J‖_F ≤ 1e-12 on
non-quadratic Hamiltonians with dof 2 (for dof 1 the condition would reduce to det M = 1).
Methods that do not claim it are shown to violate it (so the check can fail). Tao's methods
declare symplecticity and symmetry of the extended map only, which is what is tested for them.
"""

from __future__ import annotations

import pytest
import torch
from _fields import HenonHeiles, NonSeparable

from hamgrad.integrators import INTEGRATORS, Integrator

DT = 0.1
Q0 = torch.tensor([0.3, -0.2])
P0 = torch.tensor([0.1, 0.4])


def _fields_for(method: Integrator) -> list[object]:
    fields = [HenonHeiles(), NonSeparable()]
    return [f for f in fields if method.applies_to(f)]


def _symplectic_defect(step, dof: int, z0: torch.Tensor) -> float:
    """‖MᵀJM − J‖_F for the Jacobian M of ``step`` (a map of R^{2·dof}) at z0."""
    M = torch.autograd.functional.jacobian(step, z0)
    eye = torch.eye(dof)
    zero = torch.zeros(dof, dof)
    J = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)
    return float((M.T @ J @ M - J).norm())


def _phase_step(method: Integrator, field: object, dt: float = DT):
    def step(z: torch.Tensor) -> torch.Tensor:
        return torch.cat(method.step(field, z[:2], z[2:], dt))

    return step


def _extended_step(method, field, dt: float = DT):
    # Extended coordinates ordered (q, x | p, y) so that J is the canonical one in R^8.
    def step(z: torch.Tensor) -> torch.Tensor:
        q, x, p, y = z[:2], z[2:4], z[4:6], z[6:]
        q1, p1, x1, y1 = method.step_extended(field, q, p, x, y, dt)
        return torch.cat([q1, x1, p1, y1])

    return step


SYMPLECTIC = [n for n, m in INTEGRATORS.items() if m.symplectic]
# Adaptive solvers (order None) approach the exact, symplectic and reversible, flow as their
# tolerance shrinks, so a violation is asserted only for fixed-step methods.
NOT_SYMPLECTIC = [n for n, m in INTEGRATORS.items() if not m.symplectic and m.order is not None]
EXTENDED = [n for n, m in INTEGRATORS.items() if hasattr(m, "step_extended")]
REVERSIBLE = [n for n, m in INTEGRATORS.items() if m.reversible]
NOT_REVERSIBLE = [n for n, m in INTEGRATORS.items() if not m.reversible and m.order is not None]


@pytest.mark.parametrize("name", SYMPLECTIC)
def test_symplectic_methods_preserve_the_symplectic_form(name: str) -> None:
    method = INTEGRATORS[name]
    for field in _fields_for(method):
        defect = _symplectic_defect(_phase_step(method, field), 2, torch.cat([Q0, P0]))
        assert defect <= 1e-12, f"{name} on {type(field).__name__}: {defect:.2e}"


@pytest.mark.parametrize("name", NOT_SYMPLECTIC)
def test_non_symplectic_methods_fail_the_check(name: str) -> None:
    """The check is able to fail: every method not claiming symplecticity violates it."""
    method = INTEGRATORS[name]
    for field in _fields_for(method):
        defect = _symplectic_defect(_phase_step(method, field, dt=0.3), 2, torch.cat([Q0, P0]))
        assert defect > 1e-8, f"{name} on {type(field).__name__}: {defect:.2e}"


@pytest.mark.parametrize("name", EXTENDED)
def test_extended_map_is_symplectic(name: str) -> None:
    method = INTEGRATORS[name]
    z0 = torch.cat([Q0, Q0 + 0.01, P0, P0 - 0.02])
    for field in _fields_for(method):
        defect = _symplectic_defect(_extended_step(method, field), 4, z0)
        assert defect <= 1e-12, f"{name} on {type(field).__name__}: {defect:.2e}"


@pytest.mark.parametrize("name", REVERSIBLE)
def test_reversible_methods_are_time_reversible(name: str) -> None:
    method = INTEGRATORS[name]
    for field in _fields_for(method):
        q1, p1 = method.step(field, Q0, P0, DT)
        q2, p2 = method.step(field, q1, p1, -DT)
        err = float(torch.cat([q2 - Q0, p2 - P0]).abs().max())
        assert err <= 1e-13, f"{name} on {type(field).__name__}: {err:.2e}"


@pytest.mark.parametrize("name", NOT_REVERSIBLE)
def test_non_reversible_methods_do_not_return(name: str) -> None:
    """The reversibility check can fail: methods not claiming symmetry violate it."""
    method = INTEGRATORS[name]
    for field in _fields_for(method):
        q1, p1 = method.step(field, Q0, P0, 0.3)
        q2, p2 = method.step(field, q1, p1, -0.3)
        assert float(torch.cat([q2 - Q0, p2 - P0]).abs().max()) > 1e-8


@pytest.mark.parametrize("name", EXTENDED)
def test_extended_map_is_time_reversible(name: str) -> None:
    method = INTEGRATORS[name]
    z0 = (Q0, P0, Q0 + 0.01, P0 - 0.02)
    for field in _fields_for(method):
        z1 = method.step_extended(field, *z0, DT)
        z2 = method.step_extended(field, *z1, -DT)
        err = max(float((a - b).abs().max()) for a, b in zip(z2, z0, strict=True))
        assert err <= 1e-13, f"{name} on {type(field).__name__}: {err:.2e}"
