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

Choosing ω, and the defect check
--------------------------------
The copies stay together only while ω is large against the system's own fastest rate, and
the binding flow is integrated accurately only while ``dt`` is small against ``1/ω``; outside
that window Tao's method returns finite numbers that are wrong. Measured on a Kepler orbit of
eccentricity 0.9 over one period (fastest rate near pericentre ≈ |p|/|q| ≈ 44): with ω = 10
or 100 neither Tao 2 nor Tao 4 converged at any of 250 ... 16 000 steps per period (errors of
order 10); with ω = 1000 and 16 000 steps Tao 2 reached 0.18 and Tao 4 0.063, and Tao 4 with
ω = 10⁴ reached 2.2e-3. The *defect* ``max(|q − x|, |p − y|) / (1 + max(|q|, |p|))`` tracked
this exactly: above 0.5 in every failed run, below 1e-3 in every converged one. So `rollout`
measures it wherever it checks finiteness (every 256 steps and at the end) and raises
`IntegratorError` past ``max_defect`` (default 1e-2), naming the step. Start from ω ≈ 10× the
fastest rate of the system; if the defect check fires, raise ω and reduce ``dt`` together, or
use ``gauss4`` (implicit, no copies).

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

from hamgrad.errors import ConfigError, IntegratorError, check_finite
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
        self.method = method
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

    def check(self, state: State) -> str | None:
        """The copies' relative separation, when it exceeds ``max_defect`` (one host sync)."""
        q, p, x, y = (s.detach() for s in state[:4])
        gap = torch.maximum((q - x).abs().amax(), (p - y).abs().amax())
        scale = 1.0 + torch.maximum(q.abs().amax(), p.abs().amax())
        defect = float(gap / scale)
        if defect <= self.method.max_defect:
            return None
        return (
            f"the two copies of phase space separated: defect {defect:.3g} > max_defect="
            f"{self.method.max_defect:g}, so the result is wrong; raise omega (now "
            f"{self.method.omega:g}) and reduce dt, or use gauss4 (see hamgrad.integrators"
            ".tao, 'Choosing omega')"
        )


@dataclass(frozen=True)
class TaoIntegrator(Integrator):
    """Tao's explicit extended-phase-space method (order 2 or 4) for any Hamiltonian.

    Attributes
    ----------
    omega : float
        Binding constant ω > 0. Larger ω keeps the copies closer but needs a smaller step;
        see "Choosing ω" above. Default 10.
    max_defect : float
        Largest relative separation of the copies a rollout accepts (see the module notes);
        ``inf`` disables the check. Default 1e-2.
    ops : tuple of (str, float)
        Merged ``A``/``B``/``C`` flow sequence of one step.
    """

    ops: tuple[tuple[str, float], ...]
    omega: float = 10.0
    max_defect: float = 1e-2

    option_names = ("omega", "max_defect")

    def __post_init__(self) -> None:
        check_finite("omega", self.omega, positive=True)
        if not (isinstance(self.max_defect, (int, float)) and self.max_defect > 0):
            raise ConfigError(
                f"max_defect must be a positive number (inf disables the check), "
                f"got {self.max_defect!r}"
            )

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
