"""One generic kick–drift stepper that runs any `SplittingTableau`.

For separable ``H = T(p) + V(q)`` the flows of ``T`` (drift ``q += a·dt·∂T/∂p``) and of ``V``
(kick ``p -= b·dt·∂V/∂q``) are exact, and any composition of them is symplectic (Hairer,
Lubich & Wanner 2006, sec. II.5, VI.3). The stepper keeps the last force ``∂H/∂q`` and velocity
``∂H/∂p`` in its state and reuses them while the coordinate they depend on has not moved, so a
method that ends and begins with a kick evaluates the force once per shared kick across steps
(first-same-as-last), and separability makes this exact.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from hamgrad.integrators.base import Integrator, State, Stepper
from hamgrad.integrators.tableau import KICK, SplittingTableau

__all__ = ["SplittingIntegrator"]


class _SplittingStepper(Stepper):
    """Runs precomputed ``(is_kick, alpha)`` updates; state is ``(q, p, force, velocity)``."""

    __slots__ = ("dH_dp", "dH_dq", "updates")

    def __init__(self, tableau: SplittingTableau, field: object, dt: float) -> None:
        self.dH_dq = field.dH_dq  # type: ignore[attr-defined]
        self.dH_dp = field.dH_dp  # type: ignore[attr-defined]
        # alpha folds coefficient, dt and the kick's minus sign into one Python float, so each
        # update is a single fused `torch.add(x, v, alpha=...)` on any dtype or device.
        self.updates = tuple(
            (kind == KICK, -c * dt if kind == KICK else c * dt) for kind, c in tableau.ops
        )

    def init(self, q: Tensor, p: Tensor) -> State:
        return (q, p, None, None)

    def advance(self, state: State) -> State:
        q, p, force, velocity = state
        for is_kick, alpha in self.updates:
            if is_kick:
                if force is None:
                    force = self.dH_dq(q, p)
                p = torch.add(p, force, alpha=alpha)
                velocity = None  # dH/dp depends on p, which just moved
            else:
                if velocity is None:
                    velocity = self.dH_dp(q, p)
                q = torch.add(q, velocity, alpha=alpha)
                force = None  # dH/dq depends on q, which just moved
        return (q, p, force, velocity)


@dataclass(frozen=True)
class SplittingIntegrator(Integrator):
    """Explicit symplectic splitting method for separable Hamiltonians.

    Symplectic for every separable field; time-reversible when its tableau is a palindrome.
    Use `from_tableau` to build one; the registered instances are listed in
    `hamgrad.integrators.INTEGRATORS`.

    Attributes
    ----------
    tableau : SplittingTableau
        The validated coefficients (with their citation).
    """

    tableau: SplittingTableau

    supports_adjoint = True  # a step is a map of (q, p); caches are recomputed

    @classmethod
    def from_tableau(cls, tableau: SplittingTableau) -> SplittingIntegrator:
        """Wrap a validated `SplittingTableau` as an integrator."""
        return cls(
            name=tableau.name,
            order=tableau.order,
            symplectic=True,
            reversible=tableau.reversible,
            requires_separable=True,
            requires_gradient=True,
            force_evals_per_step=tableau.force_evals_per_step,
            reference=tableau.reference,
            tableau=tableau,
        )

    @classmethod
    def from_table(cls, table: SplittingTableau) -> SplittingIntegrator:
        """Deprecated name of `from_tableau` (kept for one release)."""
        warnings.warn(
            "from_table is deprecated; use from_tableau", DeprecationWarning, stacklevel=2
        )
        return cls.from_tableau(table)

    def stepper(self, field: object, dt: float, like: Tensor) -> _SplittingStepper:
        return _SplittingStepper(self.tableau, field, dt)
