"""The registry of integrators: `INTEGRATORS`, `get_integrator` and aliases.

Registered names
----------------
Explicit splitting, separable ``H = T(p) + V(q)`` only, symplectic:
``symplectic-euler`` (1), ``leapfrog`` (2; aliases ``verlet``, ``stormer-verlet``),
``yoshida4`` (4; alias ``forest-ruth``), ``pefrl`` (4), ``blanes-moan4`` (4), ``blanes-moan6`` (6),
``yoshida6`` (6), ``mclachlan8`` (8).
Implicit, any Hamiltonian, symplectic and symmetric: ``implicit-midpoint`` (2), ``gauss4`` (4),
``gauss6`` (6); options ``tol``, ``max_iter``.
Explicit, any Hamiltonian, symplectic in the extended phase space only: ``tao2``, ``tao4``;
option ``omega``.
Non-symplectic references, any field (also ``time_derivative``-only ones): ``rk4`` and
``torchdiffeq:<solver>`` for the solvers in `TORCHDIFFEQ_SOLVERS` (``euler``, ``midpoint``,
``rk4``, ``dopri5``, ``dopri8`` are registered; the others are built on request); options
``rtol``, ``atol`` for adaptive solvers.

``rollout(..., adjoint=True)`` (`hamgrad.integrators.adjoint`) works with every method that
declares ``supports_adjoint`` (`adjoint_methods`): the splitting, Gauss–Legendre and ``rk4``
methods; Tao's (copies of phase space carried between steps) and torchdiffeq's (solved outside
hamgrad) are refused by `check_adjoint`.
"""

from __future__ import annotations

from typing import Any

from hamgrad.errors import ConfigError, IntegratorError, unknown_name
from hamgrad.integrators.base import Integrator
from hamgrad.integrators.coefficients import BUTCHER_TABLEAUS, SPLITTING_TABLEAUS
from hamgrad.integrators.explicit_rk import (
    TORCHDIFFEQ_SOLVERS,
    ExplicitRKIntegrator,
    TorchdiffeqIntegrator,
)
from hamgrad.integrators.implicit import CollocationIntegrator
from hamgrad.integrators.splitting import SplittingIntegrator
from hamgrad.integrators.tao import TaoIntegrator

__all__ = [
    "ALIASES",
    "INTEGRATORS",
    "adjoint_methods",
    "applicable_methods",
    "check_adjoint",
    "check_applicable",
    "get_integrator",
    "method_names",
    "register_integrator",
]

_TORCHDIFFEQ_PREFIX = "torchdiffeq:"


def _build() -> dict[str, Integrator]:
    methods: list[Integrator] = [
        SplittingIntegrator.from_tableau(t) for t in SPLITTING_TABLEAUS.values()
    ]
    methods += [
        CollocationIntegrator.from_tableau(BUTCHER_TABLEAUS[n])
        for n in ("implicit-midpoint", "gauss4", "gauss6")
    ]
    methods += [TaoIntegrator.from_order(2), TaoIntegrator.from_order(4)]
    methods.append(ExplicitRKIntegrator.from_tableau(BUTCHER_TABLEAUS["rk4"]))
    methods += [
        TorchdiffeqIntegrator.for_solver(s)
        for s in ("euler", "midpoint", "rk4", "dopri5", "dopri8")
    ]
    return {m.name: m for m in methods}


#: Every registered integrator by name (default options).
INTEGRATORS: dict[str, Integrator] = _build()

#: Alternative names accepted by `get_integrator`.
ALIASES: dict[str, str] = {
    "verlet": "leapfrog",
    "stormer-verlet": "leapfrog",
    "forest-ruth": "yoshida4",
}


def _lookup(name: str) -> Integrator:
    key = ALIASES.get(name, name)
    if key in INTEGRATORS:
        return INTEGRATORS[key]
    if isinstance(key, str) and key.startswith(_TORCHDIFFEQ_PREFIX):
        solver = key[len(_TORCHDIFFEQ_PREFIX) :]
        if solver in TORCHDIFFEQ_SOLVERS:
            return TorchdiffeqIntegrator.for_solver(solver)
    raise unknown_name("integrator", str(name), method_names())


def method_names() -> list[str]:
    """Every name `get_integrator` accepts, sorted: registered, aliases, torchdiffeq solvers."""
    names = {*INTEGRATORS, *ALIASES, *(_TORCHDIFFEQ_PREFIX + s for s in TORCHDIFFEQ_SOLVERS)}
    return sorted(names)


def get_integrator(
    method: str | Integrator, field: object | None = None, **options: Any
) -> Integrator:
    """Resolve ``method`` to an `Integrator` once, at the boundary, and check it fits ``field``.

    Parameters
    ----------
    method : str or Integrator
        A key of `INTEGRATORS`, an alias in `ALIASES`, ``"torchdiffeq:<solver>"`` for any
        solver in `TORCHDIFFEQ_SOLVERS`, or an `Integrator` (returned with ``options``
        applied).
    field : HamiltonianField or VectorField, optional
        When given, the method must apply to it (`check_applicable`).
    **options
        Method options, e.g. ``tol=1e-14, max_iter=50`` (implicit), ``omega=20`` (Tao),
        ``rtol``/``atol`` (adaptive torchdiffeq). Unknown options raise `ConfigError`.

    Returns
    -------
    Integrator

    Raises
    ------
    ConfigError
        Unknown name (the message lists the sorted valid names) or option.
    IntegratorError
        ``field`` is given and the method does not apply to it (the message lists those that
        do).
    """
    integrator = method if isinstance(method, Integrator) else _lookup(method)
    integrator = integrator.with_options(**options)
    if field is not None:
        check_applicable(integrator, field)
    return integrator


def check_applicable(integrator: Integrator, field: object) -> None:
    """Raise `IntegratorError` naming the registered methods that apply, if ``integrator`` does
    not apply to ``field``."""
    problem = integrator.mismatch(field)
    if problem is not None:
        raise IntegratorError(
            f"{problem}; methods that apply: {', '.join(applicable_methods(field)) or 'none'}"
        )


def register_integrator(integrator: Integrator) -> Integrator:
    """Add ``integrator`` to `INTEGRATORS` under its ``name``; return it.

    The extension point for new methods (see docs/extending.md): once registered, a method is
    found by name by `get_integrator`, `rollout`, `TrainConfig` and `applicable_methods`.

    Raises
    ------
    ConfigError
        The name is taken (by a method or an alias) or the object is not an `Integrator`.
    """
    if not isinstance(integrator, Integrator):
        raise ConfigError(
            f"register_integrator needs an Integrator, got {type(integrator).__name__}"
        )
    if integrator.name in INTEGRATORS or integrator.name in ALIASES:
        raise ConfigError(f"integrator name {integrator.name!r} is taken; expected a new name")
    INTEGRATORS[integrator.name] = integrator
    return integrator


def applicable_methods(field: object) -> list[str]:
    """Sorted names of the registered integrators that can integrate ``field``."""
    return sorted(name for name, m in INTEGRATORS.items() if m.applies_to(field))


def adjoint_methods(field: object | None = None) -> list[str]:
    """Sorted names of the registered integrators with `Integrator.supports_adjoint`.

    With ``field``, only those that can also integrate it.
    """
    return sorted(
        name
        for name, m in INTEGRATORS.items()
        if m.supports_adjoint and (field is None or m.applies_to(field))
    )


def check_adjoint(integrator: Integrator, field: object | None = None) -> None:
    """Raise `IntegratorError` if ``integrator`` has no adjoint rollout, naming those that do.

    Tao's methods carry copies of phase space from step to step and torchdiffeq solves outside
    hamgrad, so their rollouts cannot be replayed one ``(q, p)`` step at a time.
    """
    if not integrator.supports_adjoint:
        raise IntegratorError(
            f"integrator {integrator.name!r} has no adjoint rollout (adjoint=True); methods "
            f"with one{'' if field is None else ' that apply'}: "
            f"{', '.join(adjoint_methods(field)) or 'none'}; or use adjoint=False (backprop)"
        )
