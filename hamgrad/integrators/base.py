"""The `Integrator` interface shared by every method, and what a field must offer.

An integrator turns a field into a `Stepper`: an object with ``init(q, p) -> state``,
``advance(state) -> state`` and ``observe(state) -> (q, p)``. The state may carry more than
``(q, p)``: a cached force that the next step reuses (first-same-as-last), or the extended
phase-space copies of Tao's method. `Integrator.step` runs one step from a fresh state;
`hamgrad.integrators.rollout` keeps the state across steps.

Naming rule of the package: a ``method`` argument is an integrator's *name* (or an
`Integrator`, resolved once by `hamgrad.integrators.get_integrator`); an ``integrator`` is the
object. Whether a method applies to a field is decided here (`Integrator.applies_to`); the
error that lists the methods that do apply is raised by the registry
(`hamgrad.integrators.check_applicable`), which knows them all.
"""

from __future__ import annotations

import dataclasses
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hamgrad.errors import ConfigError, IntegratorError, check_finite

__all__ = [
    "Integrator",
    "State",
    "Stepper",
    "derivative_fn",
    "has_gradient",
    "is_separable",
    "pull_back",
]

State = tuple[Any, ...]
FieldFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class Stepper(ABC):
    """One integrator bound to one field and one step size.

    The defaults suit a method whose state is just ``(q, p)``; a stepper that carries more
    (a cached force, Tao's copies) overrides `init` and keeps ``(q, p)`` first in its state.
    """

    def init(self, q: Tensor, p: Tensor) -> State:
        """Build the stepper state for phase-space point ``(q, p)``, shapes ``[..., dof]``."""
        return (q, p)

    @abstractmethod
    def advance(self, state: State) -> State:
        """Return the state one step of size ``dt`` later."""

    def observe(self, state: State) -> tuple[Tensor, Tensor]:
        """Return the phase-space point ``(q, p)`` that ``state`` represents."""
        return state[0], state[1]

    def check(self, state: State) -> str | None:
        """Why ``state``, although finite, can no longer be trusted; None when it can.

        Called by `hamgrad.integrators.rollout` where it checks finiteness (a host sync);
        Tao's stepper reports the separation of its phase-space copies here.
        """
        return None

    def vjp(
        self, q: Tensor, p: Tensor, grad_q: Tensor, grad_p: Tensor, params: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
        """Pull the cotangent of one step back to its start (the discrete adjoint of a step).

        With ``(q', p')`` the state one step after ``(q, p)`` and ``(grad_q, grad_p)`` the
        gradient of a scalar loss with respect to ``(q', p')``, return its gradient with
        respect to ``(q, p)`` and to each of ``params`` (None where a parameter does not enter
        the step). `hamgrad.integrators.adjoint` calls this for methods that declare
        `Integrator.supports_adjoint`; their step must be a function of ``(q, p)`` alone
        (caches in the state allowed, as in `init`).

        This default replays the step from ``(q, p)`` on a local autograd graph and
        differentiates it: the exact vector-Jacobian product of the computed step. A stepper
        overrides it when it knows a cheaper exact one (the implicit solve of
        `hamgrad.integrators.implicit`).

        Parameters
        ----------
        q, p : Tensor
            Start of the step, shape ``[..., dof]`` (no gradient history needed).
        grad_q, grad_p : Tensor
            Cotangent of the end of the step, shape ``[..., dof]``.
        params : sequence of Tensor
            Leaf tensors the field depends on (its ``nn.Module`` parameters).

        Returns
        -------
        (Tensor, Tensor, tuple of Tensor or None)
            Cotangents of ``q``, ``p`` and of each parameter.
        """
        with torch.enable_grad():
            q = q.detach().requires_grad_()
            p = p.detach().requires_grad_()
            q1, p1 = self.observe(self.advance(self.init(q, p)))
            return pull_back((q1, p1), (q, p), (grad_q, grad_p), params)


def pull_back(
    outputs: Sequence[Tensor],
    inputs: tuple[Tensor, Tensor],
    cotangents: Sequence[Tensor],
    params: Sequence[Tensor],
) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
    """``cotangentsᵀ · ∂outputs/∂(inputs, params)`` on an existing graph (frees it).

    Inputs the outputs do not depend on get zeros, parameters get None.
    """
    grads = torch.autograd.grad(outputs, (*inputs, *params), cotangents, allow_unused=True)
    gq, gp = (
        torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads[:2], strict=True)
    )
    return gq, gp, tuple(grads[2:])


def has_gradient(field: object) -> bool:
    """True when ``field`` offers callable ``dH_dq`` and ``dH_dp`` (a Hamiltonian field)."""
    return callable(getattr(field, "dH_dq", None)) and callable(getattr(field, "dH_dp", None))


def is_separable(field: object) -> bool:
    """True when ``field`` declares ``separable = True`` (``H = T(p) + V(q)``)."""
    return getattr(field, "separable", False) is True


def derivative_fn(field: object) -> FieldFn:
    """Return ``(q, p) -> (dq/dt, dp/dt)`` for a Hamiltonian field or a `VectorField`.

    A field's own ``time_derivative`` is preferred when it has one: a non-separable model or
    system computes both halves of ∇H in one evaluation there, where calling ``dH_dp`` and
    ``dH_dq`` separately would evaluate it twice. Otherwise the derivative is built from
    Hamilton's equations ``dq/dt = ∂H/∂p``, ``dp/dt = −∂H/∂q``.
    """
    derivative = getattr(field, "time_derivative", None)
    if callable(derivative):
        return derivative
    if has_gradient(field):
        dH_dq, dH_dp = field.dH_dq, field.dH_dp  # type: ignore[attr-defined]

        def hamilton(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
            return dH_dp(q, p), -dH_dq(q, p)

        return hamilton
    raise IntegratorError(_not_a_field(field))


def _not_a_field(field: object) -> str:
    return (
        f"field of type {type(field).__name__} has neither dH_dq/dH_dp nor time_derivative; "
        "expected a HamiltonianField or a VectorField"
    )


def _kinds(field: object) -> str:
    if has_gradient(field):
        return "separable Hamiltonian" if is_separable(field) else "non-separable Hamiltonian"
    return "non-Hamiltonian (time_derivative only)"


@dataclass(frozen=True)
class Integrator(ABC):
    """A one-step method for Hamilton's equations on tensors of shape ``[..., dof]``.

    Attributes
    ----------
    name : str
        Registry name (see `hamgrad.integrators.INTEGRATORS`).
    order : int or None
        Classical order: the global error after a fixed time is ``O(dt**order)``. ``None`` for
        adaptive solvers, whose error is set by their tolerances rather than ``dt``.
    symplectic : bool
        One `step` is a symplectic map of ``(q, p)`` for every Hamiltonian field it accepts.
    reversible : bool
        The method is time-reversible (symmetric): ``step(-dt) ∘ step(dt)`` is the identity.
    requires_separable : bool
        Only fields with ``separable = True`` are accepted.
    requires_gradient : bool
        Only Hamiltonian fields (``dH_dq``/``dH_dp``) are accepted.
    force_evals_per_step : float
        Evaluations of the field per step in a rollout, counting one call of ``dH_dq`` (or of
        the whole vector field, for methods that need both halves at once) as one.
    reference : str
        Citation.
    supports_adjoint : bool (class attribute)
        ``rollout(..., adjoint=True)`` may use this method: its step is a function of
        ``(q, p)`` alone and its `Stepper.vjp` is exact, so `hamgrad.integrators.adjoint`
        can replay and differentiate it one step at a time.
    """

    name: str
    order: int | None
    symplectic: bool
    reversible: bool
    requires_separable: bool
    requires_gradient: bool
    force_evals_per_step: float
    reference: str

    #: Names of the fields that `with_options` may change (the method's tunable options).
    option_names: ClassVar[tuple[str, ...]] = ()
    #: Whether `hamgrad.integrators.adjoint` can differentiate a rollout of this method.
    supports_adjoint: ClassVar[bool] = False

    @abstractmethod
    def stepper(self, field: object, dt: float, like: Tensor) -> Stepper:
        """Bind this method to ``field`` and step ``dt``; ``like`` gives dtype and device."""

    def applies_to(self, field: object) -> bool:
        """Whether this method can integrate ``field``."""
        if self.requires_gradient and not has_gradient(field):
            return False
        if self.requires_separable and not is_separable(field):
            return False
        return has_gradient(field) or callable(getattr(field, "time_derivative", None))

    def mismatch(self, field: object) -> str | None:
        """Why this method cannot integrate ``field`` (one sentence), or None when it can."""
        if self.applies_to(field):
            return None
        if not has_gradient(field) and not callable(getattr(field, "time_derivative", None)):
            return _not_a_field(field)
        need = "a separable" if self.requires_separable else "a"
        return (
            f"integrator {self.name!r} needs {need} Hamiltonian field (dH_dq/dH_dp), got a "
            f"{_kinds(field)} field"
        )

    def integrate_saved(
        self, field: object, q0: Tensor, p0: Tensor, dt: float, n_steps: int, save_every: int
    ) -> tuple[Tensor, Tensor] | None:
        """Solve for every saved state in one call, or return None to be stepped.

        A method that hands a whole time grid to an outside solver (torchdiffeq) overrides
        this and returns ``(q, p)`` of shape ``[n_saved, ..., dof]`` (time first); the
        default returns None and `hamgrad.integrators.rollout` drives the `Stepper`.
        """
        return None

    def step(self, field: object, q: Tensor, p: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """Advance ``(q, p)`` by one step of size ``dt``.

        Parameters
        ----------
        field : HamiltonianField or VectorField
            The dynamics; see `applies_to` for which kinds each method accepts.
        q, p : Tensor
            Positions and momenta, shape ``[..., dof]``, floating point, same device.
        dt : float
            Step size in the time unit of the field; negative steps integrate backwards.

        Returns
        -------
        (Tensor, Tensor)
            ``(q, p)`` one step later, differentiable with respect to the inputs.
        """
        problem = self.mismatch(field)
        if problem is not None:
            raise IntegratorError(problem)
        stepper = self.stepper(field, check_dt(dt), q)
        return stepper.observe(stepper.advance(stepper.init(q, p)))

    def options(self) -> dict[str, Any]:
        """The current values of `option_names` (JSON values), e.g. ``{"omega": 10.0}``."""
        return {name: getattr(self, name) for name in self.option_names}

    def with_options(self, **options: Any) -> Integrator:
        """Return a copy with some of `option_names` changed (validated by ``__post_init__``)."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            valid = ", ".join(self.option_names) or "none"
            raise ConfigError(
                f"integrator {self.name!r} got unknown option(s) {', '.join(unknown)}; "
                f"valid options: {valid}"
            )
        return dataclasses.replace(self, **options) if options else self


def check_dt(dt: object) -> float:
    """Return ``dt`` as a nonzero finite float, else raise `ConfigError`."""
    value = check_finite("dt", dt)
    if value == 0.0:
        raise ConfigError("dt must be a nonzero finite number, got 0")
    return value


def __getattr__(name: str) -> object:
    # Deprecated names, kept for one release.
    if name == "vector_field":
        warnings.warn(
            "vector_field is deprecated; use derivative_fn", DeprecationWarning, stacklevel=2
        )
        return derivative_fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
