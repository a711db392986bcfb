"""`rollout`: integrate a field for many steps and keep every ``save_every``-th state (API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hamgrad.errors import ConfigError, IntegratorError, check_int
from hamgrad.integrators.base import Integrator, State, Stepper, check_dt
from hamgrad.integrators.registry import get_integrator

__all__ = ["Trajectory", "rollout"]

# Finiteness is checked every this many steps (one device sync each) and at the end; a
# non-finite value then triggers an exact replay from the last checked state to find its step.
_CHECK_EVERY = 256


@dataclass(frozen=True)
class Trajectory:
    """States saved along a rollout.

    Attributes
    ----------
    t : Tensor
        Times ``[n_saved]``, starting at 0, spaced ``dt * save_every``.
    q, p : Tensor
        Positions and momenta ``[..., n_saved, dof]`` (time on axis -2).
    method : str
        Registry name of the integrator that produced them.
    """

    t: Tensor
    q: Tensor
    p: Tensor
    method: str


def _check_state(q0: object, p0: object) -> None:
    for name, x in (("q0", q0), ("p0", p0)):
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() == 0:
            got = (
                f"{type(x).__name__}"
                if not isinstance(x, Tensor)
                else f"{x.dtype} {tuple(x.shape)}"
            )
            raise ConfigError(f"{name} must be a floating tensor of shape [..., dof], got {got}")
    assert isinstance(q0, Tensor) and isinstance(p0, Tensor)
    if q0.shape != p0.shape or q0.dtype != p0.dtype or q0.device != p0.device:
        raise ConfigError(
            f"q0 and p0 must share shape, dtype and device, got {tuple(q0.shape)} {q0.dtype} "
            f"{q0.device} and {tuple(p0.shape)} {p0.dtype} {p0.device}"
        )


def _finite(q: Tensor, p: Tensor) -> bool:
    return bool(torch.isfinite(q).all() & torch.isfinite(p).all())


def _first_bad_step(stepper: Stepper, state: State, start: int, stop: int) -> int:
    """Replay steps ``start+1..stop`` from ``state`` (finite, at step ``start``); first bad one."""
    with torch.no_grad():
        for k in range(start + 1, stop + 1):
            try:
                state = stepper.advance(state)
            except IntegratorError:
                return k
            if not _finite(*stepper.observe(state)):
                return k
    return stop


def _nonfinite_error(method: str, k: int, dt: float) -> IntegratorError:
    return IntegratorError(
        f"rollout with {method!r}: non-finite state at step {k} (t = {k * dt:.6g}), last finite "
        f"state at step {k - 1}; reduce dt or check the field"
    )


def _rollout_steps(
    integ: Integrator, field: object, q0: Tensor, p0: Tensor, dt: float, n_last: int, every: int
) -> tuple[Tensor, Tensor]:
    """Generic loop: step, keep every ``every``-th state, check finiteness periodically."""
    stepper = integ.stepper(field, dt, q0)
    state = stepper.init(q0, p0)
    checked, checked_at = state, 0
    qs, ps = [q0], [p0]
    for k in range(1, n_last + 1):
        try:
            state = stepper.advance(state)
        except IntegratorError as err:
            raise IntegratorError(f"rollout with {integ.name!r} failed at step {k}: {err}") from err
        if k % every == 0:
            q, p = stepper.observe(state)
            qs.append(q)
            ps.append(p)
        if k % _CHECK_EVERY == 0 or k == n_last:
            if not _finite(*stepper.observe(state)):
                raise _nonfinite_error(
                    integ.name, _first_bad_step(stepper, checked, checked_at, k), dt
                )
            problem = stepper.check(state)
            if problem is not None:
                raise IntegratorError(
                    f"rollout with {integ.name!r} stopped at step {k} (t = {k * dt:.6g}): "
                    f"{problem}"
                )
            checked, checked_at = state, k
    return torch.stack(qs, dim=-2), torch.stack(ps, dim=-2)


def _check_bulk(
    integ: Integrator, field: object, q: Tensor, p: Tensor, dt: float, every: int
) -> tuple[Tensor, Tensor]:
    """Check states ``[n_saved, ..., dof]`` solved in one call; name the first bad step."""
    bad = ~(torch.isfinite(q) & torch.isfinite(p)).flatten(1).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        start = (i - 1) * every
        stepper = integ.stepper(field, dt, q[0])
        step = _first_bad_step(stepper, stepper.init(q[i - 1], p[i - 1]), start, i * every)
        raise _nonfinite_error(integ.name, step, dt)
    return q.movedim(0, -2), p.movedim(0, -2)


def rollout(
    field: object,
    q0: Tensor,
    p0: Tensor,
    dt: float,
    n_steps: int,
    method: str | Integrator = "yoshida4",
    save_every: int = 1,
    **options: Any,
) -> Trajectory:
    """Integrate ``field`` from ``(q0, p0)`` for ``n_steps`` steps of size ``dt``.

    Parameters
    ----------
    field : HamiltonianField or VectorField
        The dynamics. Symplectic and Tao methods need ``dH_dq``/``dH_dp``; explicit splitting
        also needs ``separable = True``. Otherwise `IntegratorError` names the methods that apply.
    q0, p0 : Tensor
        Initial positions and momenta, shape ``[..., dof]`` with any batch shape, float32 or
        float64; the rollout runs on their device.
    dt : float
        Step size (nonzero; negative integrates backwards), in the field's time unit.
    n_steps : int
        Number of steps (>= 0).
    method : str or Integrator
        Name in `INTEGRATORS` (or alias, or ``"torchdiffeq:<solver>"``), or an instance (the
        form to pass when rolling out many times: it is then resolved only once).
    save_every : int
        Keep the state after every ``save_every``-th step. Steps after the last saved one
        (``n_steps % save_every`` of them) are not computed.
    **options
        Method options passed to `get_integrator`, e.g. ``tol=1e-14`` for ``gauss4`` or
        ``omega=20`` for ``tao2``.

    Returns
    -------
    Trajectory
        ``t`` of shape ``[n_saved]`` and ``q``, ``p`` of shape ``[..., n_saved, dof]`` with
        ``n_saved = n_steps // save_every + 1``; index 0 is the initial state at ``t = 0``.
        Only saved states are stored, so memory grows with ``n_saved``, not ``n_steps`` (with
        autograd enabled, the graph of every step is kept for the backward pass).
        Differentiable with respect to ``q0``, ``p0`` and the field's parameters.

    Raises
    ------
    ConfigError
        Bad arguments or unknown method/option.
    IntegratorError
        The method does not apply to the field, an implicit solve failed (with the step), or the
        state became non-finite (with the first non-finite step).
    """
    integ = get_integrator(method, field, **options)
    _check_state(q0, p0)
    dt = check_dt(dt)
    n_steps = check_int("n_steps", n_steps, minimum=0)
    save_every = check_int("save_every", save_every)
    if not _finite(q0, p0):
        raise IntegratorError("rollout: initial state (step 0) is not finite")
    n_last = (n_steps // save_every) * save_every
    bulk = integ.integrate_saved(field, q0, p0, dt, n_last, save_every) if n_last > 0 else None
    if bulk is not None:
        q, p = _check_bulk(integ, field, *bulk, dt, save_every)
    else:
        q, p = _rollout_steps(integ, field, q0, p0, dt, n_last, save_every)
    t = torch.arange(0, n_last + 1, save_every, dtype=q0.dtype, device=q0.device) * dt
    return Trajectory(t=t, q=q, p=p, method=integ.name)
