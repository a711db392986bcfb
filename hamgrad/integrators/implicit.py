"""Implicit symplectic Runge–Kutta methods (Gauss–Legendre collocation) for any Hamiltonian.

Gauss–Legendre collocation with ``s`` stages has order ``2s``, is symplectic for every
Hamiltonian, separable or not, and symmetric (Hairer, Lubich & Wanner 2006, sec. II.1.3,
VI.4). ``s = 1`` is the implicit midpoint rule. The stage equations

    Z_i = dt · Σ_j a_ij f(y + Z_j),     i = 1..s

are solved by fixed-point iteration (HLW sec. VIII.6.1), started from ``Z_i = c_i·dt·f(y)``,
until the largest update falls below ``tol·(1 + max|y|)``. The new state is
``y + Σ_i d_i Z_i`` with ``dᵀ = bᵀA⁻¹``, which avoids one more evaluation of ``f`` (HLW VIII.6.4).
Iterations run inside autograd, so gradients are those of the converged solve to within the
tolerance. Failure to converge in ``max_iter`` iterations raises `IntegratorError`; it is never
returned as a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hamgrad.errors import IntegratorError, check_finite, check_int
from hamgrad.integrators.base import Integrator, State, Stepper, derivative_fn
from hamgrad.integrators.tableau import ButcherTableau

__all__ = ["CollocationIntegrator"]


class _CollocationStepper(Stepper):
    """Solves the stage equations each step; the state is just ``(q, p)``."""

    def __init__(self, method: CollocationIntegrator, field: object, dt: float, like: Tensor):
        table = method.tableau
        self.name = method.name
        self.f = derivative_fn(field)
        # Stage sums are short (s <= 3), so Python-float coefficients with fused torch.add beat
        # a tensordot over a stacked stage axis.
        self.dtA = [[a * dt for a in row] for row in table.A]
        self.dtc = [c * dt for c in table.c]
        # d = b^T A^{-1}: the new state from the stage increments without another f call.
        A64 = torch.tensor(table.A, dtype=torch.float64)
        b64 = torch.tensor(table.b, dtype=torch.float64)
        self.d = torch.linalg.solve(A64.T, b64).tolist()
        self.max_iter = method.max_iter
        self.tol = method.tol if method.tol is not None else 50 * torch.finfo(like.dtype).eps

    @staticmethod
    def _combine(coefs: list[float], values: list[Tensor], base: Tensor | None = None) -> Tensor:
        out = values[0] * coefs[0] if base is None else torch.add(base, values[0], alpha=coefs[0])
        for c, v in zip(coefs[1:], values[1:], strict=True):
            out = torch.add(out, v, alpha=c)
        return out

    def _eval_stages(self, q: Tensor, p: Tensor, zq: list[Tensor], zp: list[Tensor]):
        # One field call on all stages stacked along a new leading axis ([s, ..., dof]).
        fq, fp = self.f(q + torch.stack(zq), p + torch.stack(zp))
        return list(fq.unbind(0)), list(fp.unbind(0))

    def advance(self, state: State) -> State:
        q, p = state
        fq0, fp0 = self.f(q, p)
        zq = [fq0 * c for c in self.dtc]
        zp = [fp0 * c for c in self.dtc]
        scale = 1.0 + torch.maximum(q.detach().abs().max(), p.detach().abs().max())
        for _ in range(self.max_iter):
            fq, fp = self._eval_stages(q, p, zq, zp)
            zq_new = [self._combine(row, fq) for row in self.dtA]
            zp_new = [self._combine(row, fp) for row in self.dtA]
            pairs = zip(zq_new + zp_new, zq + zp, strict=True)
            change = torch.stack([(a - b).detach().abs().max() for a, b in pairs]).max()
            zq, zp = zq_new, zp_new
            ratio = float(change / scale)
            if ratio <= self.tol:
                return (self._combine(self.d, zq, q), self._combine(self.d, zp, p))
            if ratio != ratio or ratio == float("inf"):
                raise IntegratorError(f"{self.name}: non-finite stage values in the implicit solve")
        raise IntegratorError(
            f"{self.name}: fixed-point iteration did not converge in max_iter={self.max_iter} "
            f"iterations (last relative update {ratio:.3g} > tol={self.tol:.3g}); "
            "reduce dt or raise max_iter"
        )


@dataclass(frozen=True)
class CollocationIntegrator(Integrator):
    """Gauss–Legendre collocation: implicit, symplectic and symmetric for any Hamiltonian.

    Attributes
    ----------
    tableau : ButcherTableau
        Validated Gauss–Legendre coefficients (symplecticity condition checked).
    tol : float or None
        Convergence threshold on the largest stage update relative to ``1 + max|y|``;
        ``None`` means ``50 · eps`` of the state's dtype (≈1.1e-14 in float64).
    max_iter : int
        Iteration cap; exceeding it raises `IntegratorError`.
    """

    tableau: ButcherTableau
    tol: float | None = None
    max_iter: int = 100

    option_names = ("tol", "max_iter")

    def __post_init__(self) -> None:
        if self.tol is not None:
            check_finite("tol", self.tol, positive=True)
        check_int("max_iter", self.max_iter)

    @classmethod
    def from_tableau(cls, tableau: ButcherTableau) -> CollocationIntegrator:
        """Wrap a validated symplectic `ButcherTableau`."""
        return cls(
            name=tableau.name,
            order=tableau.order,
            symplectic=tableau.symplectic,
            reversible=True,
            requires_separable=False,
            requires_gradient=True,
            # Each fixed-point iteration evaluates f at all s stages; the count varies with dt.
            force_evals_per_step=float("nan"),
            reference=tableau.reference,
            tableau=tableau,
        )

    def stepper(self, field: object, dt: float, like: Tensor) -> _CollocationStepper:
        return _CollocationStepper(self, field, dt, like)
