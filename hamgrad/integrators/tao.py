"""Tao's explicit method for non-separable Hamiltonians in an extended phase space.

Tao (2016) doubles the phase space with copies ``(x, y)`` of ``(q, p)`` and integrates

    H̄(q, p, x, y) = H(q, y) + H(x, p) + ω/2 (|q − x|² + |p − y|²),

whose three parts have exact flows: ``φ_A`` (of ``H(q, y)``: moves ``p`` and ``x``), ``φ_B`` (of
``H(x, p)``: moves ``q`` and ``y``) and ``φ_C`` (of the binding term: rotates ``(q − x, p − y)``
by the angle ``2ωδ``). The order-2 step is the Strang composition
``φ_A^{δ/2} φ_B^{δ/2} φ_C^{δ} φ_B^{δ/2} φ_A^{δ/2}`` and order 4 is its triple jump
(Yoshida 1990). Started with ``x = q, y = p``, the exact flow of ``H̄`` keeps the copies equal
and reproduces Hamilton's flow of ``H``.

What is guaranteed, and what `symplectic` / `reversible` mean here: the map of the *extended*
state ``(q, p, x, y)`` (`TaoIntegrator.step_extended`) is symplectic and symmetric in the
doubled space. The phase-space map `Integrator.step` (copies reset to ``x = q, y = p``, then one
step, then ``(q, p)`` read off) is *not* guaranteed symplectic or symmetric, so these integrators
declare ``symplectic = False`` and ``reversible = False``. `rollout` carries ``(x, y)`` from step to
step, which is Tao's method proper; its ``(q, p)`` converges with the declared order.

References
----------
M. Tao, "Explicit symplectic approximation of nonseparable Hamiltonians: algorithm and long
time performance", Phys. Rev. E 94 (2016) 043303.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from hamgrad.errors import IntegratorError, check_finite
from hamgrad.integrators.base import Integrator, State, Stepper, check_dt, derivative_fn
from hamgrad.integrators.tableau import compose

__all__ = ["TaoIntegrator"]

_A, _B, _C = "A", "B", "C"
_STRANG = ((_A, 0.5), (_B, 0.5), (_C, 1.0), (_B, 0.5), (_A, 0.5))
_TRIPLE_JUMP_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))


class _TaoStepper(Stepper):
    """State ``(q, p, x, y, f(q, y) or None)``; runs merged ``A/B/C`` flows.

    ``f = (∂H/∂p, −∂H/∂q)`` comes from `derivative_fn`, so a model whose two halves share one
    network evaluation pays for one per flow, not two.
    """

    def __init__(self, method: TaoIntegrator, field: object, dt: float) -> None:
        self.f = derivative_fn(field)
        # (kind, δ, unused) for the A and B flows; (kind, cos 2ωδ, sin 2ωδ) for C.
        self.flows: list[tuple[str, float, float]] = []
        for kind, c in method.ops:
            delta = c * dt
            angle = 2.0 * method.omega * delta
            self.flows.append(
                (kind, delta, 0.0) if kind != _C else (kind, math.cos(angle), math.sin(angle))
            )

    def init(self, q: Tensor, p: Tensor) -> State:
        return (q, p, q, p, None)

    def advance(self, state: State) -> State:
        q, p, x, y, f_qy = state
        for kind, arg, arg2 in self.flows:
            if kind == _A:  # flow of H(q, y): q, y fixed, so f(q, y) is reused until B or C
                if f_qy is None:
                    f_qy = self.f(q, y)
                x = torch.add(x, f_qy[0], alpha=arg)  # dx/dt = ∂H/∂p(q, y)
                p = torch.add(p, f_qy[1], alpha=arg)  # dp/dt = −∂H/∂q(q, y)
                continue
            f_qy = None
            if kind == _B:  # flow of H(x, p): x, p fixed
                vel, acc = self.f(x, p)
                q = torch.add(q, vel, alpha=arg)
                y = torch.add(y, acc, alpha=arg)
            else:  # exact rotation of (q - x, p - y); the sums q + x, p + y are conserved
                cos, sin = arg, arg2
                sq, sp = q + x, p + y
                dq = cos * (q - x) + sin * (p - y)
                dp = cos * (p - y) - sin * (q - x)
                q, x = 0.5 * (sq + dq), 0.5 * (sq - dq)
                p, y = 0.5 * (sp + dp), 0.5 * (sp - dp)
        return (q, p, x, y, f_qy)


@dataclass(frozen=True)
class TaoIntegrator(Integrator):
    """Tao's explicit extended-phase-space method (order 2 or 4) for any Hamiltonian.

    Attributes
    ----------
    omega : float
        Binding constant ω > 0. Larger ω keeps the copies closer but shrinks the stable step;
        Tao (2016) recommends ``ω·dt`` well below 1. Default 10.
    ops : tuple of (str, float)
        Merged ``A``/``B``/``C`` flow sequence of one step.
    """

    ops: tuple[tuple[str, float], ...]
    omega: float = 10.0

    option_names = ("omega",)

    def __post_init__(self) -> None:
        check_finite("omega", self.omega, positive=True)

    @classmethod
    def of_order(cls, order: int) -> TaoIntegrator:
        """Deprecated name of `from_order` (kept for one release)."""
        warnings.warn("of_order is deprecated; use from_order", DeprecationWarning, stacklevel=2)
        return cls.from_order(order)

    @classmethod
    def from_order(cls, order: int) -> TaoIntegrator:
        """Tao's order-2 Strang step, or its order-4 triple-jump composition."""
        weights = {2: [1.0], 4: [_TRIPLE_JUMP_W1, 1.0 - 2.0 * _TRIPLE_JUMP_W1, _TRIPLE_JUMP_W1]}
        ops = compose(_STRANG, weights[order])
        return cls(
            name=f"tao{order}",
            order=order,
            symplectic=False,
            reversible=False,
            requires_separable=False,
            requires_gradient=True,
            # Each A or B flow evaluates both halves of ∇H once; the last A of a step is
            # reused by the first A of the next (q and y have not moved in between).
            force_evals_per_step=float(sum(1 for k, _ in ops if k != _C) - 1),
            reference="Tao, Phys. Rev. E 94 (2016) 043303",
            ops=ops,
        )

    def stepper(self, field: object, dt: float, like: Tensor) -> _TaoStepper:
        return _TaoStepper(self, field, dt)

    def step_extended(
        self, field: object, q: Tensor, p: Tensor, x: Tensor, y: Tensor, dt: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step of the extended map ``(q, p, x, y) -> (q', p', x', y')``.

        This map is symplectic for the doubled structure ``dq∧dp + dx∧dy`` and symmetric;
        all shapes ``[..., dof]``.
        """
        problem = self.mismatch(field)
        if problem is not None:
            raise IntegratorError(problem)
        return _TaoStepper(self, field, check_dt(dt)).advance((q, p, x, y, None))[:4]
