"""Non-symplectic references: explicit Runge–Kutta methods and a torchdiffeq adapter.

These accept any field: a Hamiltonian field (the derivative is built from ``dH_dq``/``dH_dp``) or
a `VectorField` with only ``time_derivative`` (the NeuralODE baseline). They conserve neither
the symplectic form nor, over long times, the energy: they are here for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq
from torch import Tensor

from hamgrad.errors import ConfigError, IntegratorError, check_finite, unknown_name
from hamgrad.integrators.base import Integrator, State, Stepper, derivative_fn
from hamgrad.integrators.tableau import ButcherTableau

__all__ = ["TORCHDIFFEQ_SOLVERS", "ExplicitRKIntegrator", "TorchdiffeqIntegrator"]


class _ExplicitRKStepper(Stepper):
    """Generic explicit Runge–Kutta step; zero tableau entries are skipped."""

    def __init__(self, tableau: ButcherTableau, field: object, dt: float) -> None:
        self.f = derivative_fn(field)
        # Per stage: the (j, a_ij·dt) terms that are nonzero; then the (i, b_i·dt) weights.
        self.rows = [
            [(j, a * dt) for j, a in enumerate(row[:i]) if a != 0.0]
            for i, row in enumerate(tableau.A)
        ]
        self.weights = [(i, w * dt) for i, w in enumerate(tableau.b) if w != 0.0]

    def advance(self, state: State) -> State:
        q, p = state
        ks: list[tuple[Tensor, Tensor]] = []
        for row in self.rows:
            qi, pi = q, p
            for j, alpha in row:
                qi = torch.add(qi, ks[j][0], alpha=alpha)
                pi = torch.add(pi, ks[j][1], alpha=alpha)
            ks.append(self.f(qi, pi))
        for i, alpha in self.weights:
            q = torch.add(q, ks[i][0], alpha=alpha)
            p = torch.add(p, ks[i][1], alpha=alpha)
        return (q, p)


@dataclass(frozen=True)
class ExplicitRKIntegrator(Integrator):
    """Explicit Runge–Kutta method from a validated `ButcherTableau` (e.g. classical RK4)."""

    tableau: ButcherTableau

    supports_adjoint = True  # a step is a map of (q, p), replayed exactly by Stepper.vjp

    @classmethod
    def from_tableau(cls, tableau: ButcherTableau) -> ExplicitRKIntegrator:
        """Wrap an explicit `ButcherTableau`."""
        if not tableau.explicit:
            raise ConfigError(f"Butcher tableau {tableau.name!r} is implicit; expected explicit")
        return cls(
            name=tableau.name,
            order=tableau.order,
            symplectic=False,
            reversible=False,
            requires_separable=False,
            requires_gradient=False,
            force_evals_per_step=float(tableau.stages),
            reference=tableau.reference,
            tableau=tableau,
        )

    def stepper(self, field: object, dt: float, like: Tensor) -> _ExplicitRKStepper:
        return _ExplicitRKStepper(self.tableau, field, dt)


#: torchdiffeq solvers the adapter supports: name -> (order, or None when adaptive; stages;
#: default rtol = atol of an adaptive solver). At equal tolerances dopri8 was *less* accurate
#: than dopri5 (harmonic oscillator, t = 10: 2.0e-6 vs 5.6e-9 at 1e-9), because its error
#: estimate lets it take far fewer, larger steps; at 1e-11 it beat dopri5 at 1e-9 on the
#: oscillator, the pendulum and Kepler orbits of e = 0.5 and 0.9, in no more time
#: (tests/test_integrators_rollout.py checks the ordering).
TORCHDIFFEQ_SOLVERS: dict[str, tuple[int | None, int, float]] = {
    "euler": (1, 1, 1e-9),
    "midpoint": (2, 2, 1e-9),
    "heun2": (2, 2, 1e-9),
    "heun3": (3, 3, 1e-9),
    "rk4": (4, 4, 1e-9),
    "dopri5": (None, 6, 1e-9),
    "dopri8": (None, 12, 1e-11),
    "bosh3": (None, 3, 1e-9),
    "fehlberg2": (None, 3, 1e-9),
    "adaptive_heun": (None, 2, 1e-9),
}


class _TorchdiffeqStepper(Stepper):
    """One torchdiffeq solve over ``[0, dt]`` per step; the state is ``(q, p)``."""

    def __init__(self, method: TorchdiffeqIntegrator, field: object, dt: float, like: Tensor):
        self.method = method
        self.func = _as_ode(field)
        self.t = torch.tensor([0.0, dt], dtype=like.dtype, device=like.device)

    def advance(self, state: State) -> State:
        q, p = self.method.solve(self.func, state, self.t, grid=None)
        return (q[-1], p[-1])


def _as_ode(field: object):
    """torchdiffeq right-hand side ``func(t, (q, p)) -> (dq, dp)`` for an autonomous field."""
    f = derivative_fn(field)

    def func(t: Tensor, y: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return f(*y)

    return func


@dataclass(frozen=True)
class TorchdiffeqIntegrator(Integrator):
    """Adapter running a `torchdiffeq.odeint` solver through the hamgrad API.

    Registered as ``"torchdiffeq:<solver>"``. Fixed-grid solvers take exactly the rollout's steps
    of size ``dt`` (``order`` is theirs); adaptive solvers only *report* at multiples of ``dt`` and
    choose their own steps to meet ``rtol``/``atol`` (``order = None``).

    Attributes
    ----------
    solver : str
        torchdiffeq method name, one of `TORCHDIFFEQ_SOLVERS`.
    rtol, atol : float
        Tolerances of adaptive solvers (ignored by fixed-grid ones); `for_solver` sets each
        solver's default from `TORCHDIFFEQ_SOLVERS`.
    """

    solver: str
    rtol: float = 1e-9
    atol: float = 1e-9

    option_names = ("rtol", "atol")

    def __post_init__(self) -> None:
        check_finite("rtol", self.rtol, positive=True)
        check_finite("atol", self.atol, positive=True)

    @classmethod
    def for_solver(cls, solver: str) -> TorchdiffeqIntegrator:
        """Adapter for torchdiffeq's ``solver`` (see `TORCHDIFFEQ_SOLVERS`)."""
        if solver not in TORCHDIFFEQ_SOLVERS:
            raise unknown_name("torchdiffeq solver", solver, TORCHDIFFEQ_SOLVERS)
        order, stages, tol = TORCHDIFFEQ_SOLVERS[solver]
        return cls(
            name=f"torchdiffeq:{solver}",
            order=order,
            symplectic=False,
            reversible=False,
            requires_separable=False,
            requires_gradient=False,
            force_evals_per_step=float(stages) if order is not None else float("nan"),
            reference="Chen et al., NeurIPS 2018, torchdiffeq (github.com/rtqichen/torchdiffeq)",
            solver=solver,
            rtol=tol,
            atol=tol,
        )

    @property
    def fixed_grid(self) -> bool:
        """True for fixed-step solvers (their error is governed by ``dt``)."""
        return self.order is not None

    def solve(
        self, func, y0: tuple[Tensor, Tensor], t: Tensor, grid: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Run odeint and return the states at times ``t`` (time on axis 0).

        ``grid`` fixes the step points of a fixed-grid solver (``t`` must be a subset of it);
        ``None`` steps exactly from one entry of ``t`` to the next.
        """
        kwargs: dict[str, Any]
        if self.fixed_grid:
            options = {} if grid is None else {"grid_constructor": lambda f, y, tt: grid}
            kwargs = {"options": options}
        else:
            kwargs = {"rtol": self.rtol, "atol": self.atol}
        try:
            q, p = torchdiffeq.odeint(func, y0, t, method=self.solver, **kwargs)
        except AssertionError as err:  # torchdiffeq reports step-size underflow this way
            raise IntegratorError(f"{self.name}: torchdiffeq failed: {err}") from err
        return q, p

    def stepper(self, field: object, dt: float, like: Tensor) -> _TorchdiffeqStepper:
        return _TorchdiffeqStepper(self, field, dt, like)

    def integrate_saved(
        self, field: object, q0: Tensor, p0: Tensor, dt: float, n_steps: int, save_every: int
    ) -> tuple[Tensor, Tensor]:
        """All saved states in one odeint call: ``[n_saved, ..., dof]`` each (time first)."""
        n_saved = n_steps // save_every + 1
        grid = torch.arange((n_saved - 1) * save_every + 1, dtype=q0.dtype, device=q0.device) * dt
        t = grid[::save_every]
        return self.solve(_as_ode(field), (q0, p0), t, grid=grid if self.fixed_grid else None)
