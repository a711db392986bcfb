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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hamgrad.errors import IntegratorError, check_finite, check_int
from hamgrad.integrators.base import Integrator, State, Stepper, derivative_fn, pull_back
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

    def _solve(self, q: Tensor, p: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The stage increments ``Z_i`` at ``(q, p)``, by fixed-point iteration."""
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
                return zq, zp
            if ratio != ratio or ratio == float("inf"):
                raise IntegratorError(f"{self.name}: non-finite stage values in the implicit solve")
        raise IntegratorError(
            f"{self.name}: fixed-point iteration did not converge in max_iter={self.max_iter} "
            f"iterations (last relative update {ratio:.3g} > tol={self.tol:.3g}); "
            "reduce dt or raise max_iter"
        )

    def advance(self, state: State) -> State:
        q, p = state
        zq, zp = self._solve(q, p)
        return (self._combine(self.d, zq, q), self._combine(self.d, zp, p))

    def vjp(
        self, q: Tensor, p: Tensor, grad_q: Tensor, grad_p: Tensor, params: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
        """Adjoint of one step from the converged stages (implicit function theorem).

        The step is ``y' = y + Σ_i d_i Z_i`` with ``Z_i = dt Σ_j a_ij f(Y_j)``, ``Y_j = y + Z_j``.
        For the cotangent ``λ`` of ``y'``, the cotangents ``ν_j`` of the stage values
        ``f(Y_j)`` solve the adjoint stage equations

            ν_j = dt Σ_i a_ij (d_i λ + J_iᵀ ν_i),     J_i = ∂f/∂y at Y_i,

        (``Σ_i d_i a_ij = b_j``, so the start ``ν_j = dt b_j λ`` is the explicit guess), and then
        ``ȳ = λ + Σ_i J_iᵀ ν_i`` and ``θ̄ = Σ_i (∂f(Y_i)/∂θ)ᵀ ν_i``. This is the same
        contraction as the forward solve (it converges whenever that one does); it is iterated
        until the largest update of ``ν`` is below ``tol`` times its largest entry. One graph
        of ``f`` at the stages is built and reused by every iteration, so the memory does not
        grow with the iteration count, unlike backpropagation through the forward iterations.
        """
        with torch.no_grad():
            zq, zp = self._solve(q, p)
            stages_q = (q + torch.stack(zq)).requires_grad_()
            stages_p = (p + torch.stack(zp)).requires_grad_()
        with torch.enable_grad():
            fq, fp = self.f(stages_q, stages_p)
        at = torch.tensor(self.dtA, dtype=q.dtype, device=q.device).T.contiguous()
        d = torch.tensor(self.d, dtype=q.dtype, device=q.device)

        def mix(x: Tensor) -> Tensor:  # (dt Aᵀ x)_j = Σ_i dt a_ij x_i over the stage axis 0
            return torch.tensordot(at, x, dims=1)

        base_q = mix(torch.einsum("i,...->i...", d, grad_q))
        base_p = mix(torch.einsum("i,...->i...", d, grad_p))
        nu_q, nu_p = base_q, base_p
        for _ in range(self.max_iter):
            jq, jp = torch.autograd.grad(
                (fq, fp), (stages_q, stages_p), (nu_q, nu_p), retain_graph=True
            )
            new_q, new_p = base_q + mix(jq), base_p + mix(jp)
            change = torch.maximum((new_q - nu_q).abs().max(), (new_p - nu_p).abs().max())
            size = torch.maximum(new_q.abs().max(), new_p.abs().max())
            nu_q, nu_p = new_q, new_p
            if not bool(torch.isfinite(change)):
                raise IntegratorError(f"{self.name}: non-finite values in the adjoint solve")
            if float(change) <= self.tol * float(size):
                gq, gp, gparams = pull_back((fq, fp), (stages_q, stages_p), (nu_q, nu_p), params)
                return grad_q + gq.sum(0), grad_p + gp.sum(0), gparams
        raise IntegratorError(
            f"{self.name}: adjoint fixed-point iteration did not converge in "
            f"max_iter={self.max_iter} iterations; reduce dt or raise max_iter"
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
    supports_adjoint = True  # Stepper.vjp solves the adjoint stage equations (see there)

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
