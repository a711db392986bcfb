"""`odeint`: a torchdiffeq-style front door to `rollout` (states at given times, time first).

For people coming from ``torchdiffeq.odeint(func, y0, t, method=..., options=...)``: the same
call shape, but the field is a hamgrad field (``dH_dq``/``dH_dp`` or ``time_derivative``, not
``func(t, y)``), ``y0`` is the pair ``(q0, p0)``, and steps are fixed (``substeps`` per
interval of ``t``) so the symplectic methods keep their guarantees.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hamgrad.errors import ConfigError, check_int
from hamgrad.integrators.base import Integrator
from hamgrad.integrators.registry import get_integrator
from hamgrad.integrators.rollout import rollout

__all__ = ["odeint"]


def _check_times(t: object) -> Tensor:
    if not isinstance(t, Tensor) or t.dim() != 1 or not t.is_floating_point() or len(t) == 0:
        got = f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
        raise ConfigError(f"t must be a 1-D floating tensor of times, got {got}")
    if t.requires_grad:
        raise ConfigError(
            "t requires grad, but odeint does not differentiate with respect to the times; "
            "expected t.detach()"
        )
    bad = (~torch.isfinite(t)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ConfigError(f"t must be finite, got t[{i}] = {float(t[i])}")
    bad = (t[1:] <= t[:-1]).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ConfigError(
            f"t must be strictly increasing, got t[{i + 1}] = {float(t[i + 1])} after "
            f"t[{i}] = {float(t[i])}"
        )
    return t


def _is_uniform(t: Tensor) -> bool:
    """Equal intervals to round-off: ``|Δt_i − (t_n − t_0)/n| <= 16 eps · max|t|``."""
    if len(t) < 3:
        return True
    h = (t[-1] - t[0]) / (len(t) - 1)
    slack = 16 * torch.finfo(t.dtype).eps * float(t.abs().max())
    return float(((t[1:] - t[:-1]) - h).abs().max()) <= slack


def odeint(
    field: object,
    y0: tuple[Tensor, Tensor],
    t: Tensor,
    method: str | Integrator = "yoshida4",
    adjoint: bool = False,
    substeps: int = 1,
    **options: Any,
) -> tuple[Tensor, Tensor]:
    """Integrate ``field`` from ``y0 = (q0, p0)`` at ``t[0]`` and return the states at ``t``.

    Parameters
    ----------
    field : HamiltonianField or VectorField
        Autonomous dynamics (``t`` only places the outputs; ``t[0]`` labels the start).
    y0 : (Tensor, Tensor)
        ``(q0, p0)``, each ``[..., dof]``.
    t : Tensor
        Times ``[n_t]``, strictly increasing, in the field's time unit. Equal intervals are
        integrated in one `rollout`; unequal ones interval by interval, each with its own step.
        Not differentiated (a ``t`` that requires grad is refused).
    method : str or Integrator
        As in `rollout` (default ``yoshida4``: separable fields; ``gauss4`` for any
        Hamiltonian).
    adjoint : bool
        Gradients by the discrete adjoint in O(√steps) memory (`hamgrad.integrators.adjoint`)
        rather than by backpropagation: the same gradient, for methods with
        `Integrator.supports_adjoint`. Unlike ``torchdiffeq.odeint_adjoint``, it does not
        re-solve an adjoint ODE backwards, so it is exact for the fixed steps taken.
    substeps : int
        Fixed steps per interval of ``t`` (step ``(t[i+1] − t[i]) / substeps``).
    **options
        Method options (``tol=``, ``max_iter=`` for implicit methods; see `get_integrator`).

    Returns
    -------
    (Tensor, Tensor)
        ``q, p`` of shape ``[n_t, ..., dof]``: **time on axis 0**, as torchdiffeq returns it,
        where `rollout` puts time on axis -2 (``[..., n_saved, dof]``). Index 0 is ``y0``.

    Raises
    ------
    ConfigError
        Bad ``y0``, ``t`` or ``substeps``, or any argument `rollout` refuses.
    IntegratorError
        As `rollout`.

    Examples
    --------
    torchdiffeq::

        ys = torchdiffeq.odeint(func, y0, t, method="rk4", options={"step_size": h})

    hamgrad::

        q, p = hamgrad.integrators.odeint(field, (q0, p0), t, method="yoshida4", substeps=10)
    """
    if not isinstance(y0, (tuple, list)) or len(y0) != 2:
        raise ConfigError(f"y0 must be the pair (q0, p0), got {type(y0).__name__}")
    q0, p0 = y0
    t = _check_times(t)
    substeps = check_int("substeps", substeps)
    n = len(t) - 1
    if n == 0 or _is_uniform(t):
        h = float(t[-1] - t[0]) / n if n else 1.0
        traj = rollout(
            field, q0, p0, h / substeps, n * substeps, method, substeps, adjoint=adjoint, **options
        )
        return traj.q.movedim(-2, 0), traj.p.movedim(-2, 0)
    integrator = get_integrator(method, field, **options)
    qs, ps = [q0], [p0]
    for h in (t[1:] - t[:-1]).tolist():
        traj = rollout(
            field, qs[-1], ps[-1], h / substeps, substeps, integrator, substeps, adjoint=adjoint
        )
        qs.append(traj.q[..., -1, :])
        ps.append(traj.p[..., -1, :])
    return torch.stack(qs), torch.stack(ps)
