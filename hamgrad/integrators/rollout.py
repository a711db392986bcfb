"""`rollout`: integrate a field for many steps and keep every ``save_every``-th state (API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hamgrad._resources import check_memory
from hamgrad.errors import ConfigError, IntegratorError, check_int
from hamgrad.integrators.adjoint import adjoint_rollout
from hamgrad.integrators.base import Integrator, State, Stepper, check_dt
from hamgrad.integrators.registry import check_adjoint, get_integrator

__all__ = ["RolloutFailure", "Trajectory", "rollout"]

# The state is checked (finite, and the stepper's own `check`) every this many steps (one
# device sync each) and at the end; a non-finite value then triggers an exact replay from the
# last checked state to find its step.
_CHECK_EVERY = 256


@dataclass(frozen=True)
class RolloutFailure:
    """Why and where a rollout stopped being trustworthy.

    Attributes
    ----------
    step : int
        The first step that failed (a non-finite state, a failed implicit solve), or the step
        at which a stepper's own check found the state wrong (Tao's defect).
    last_good_step : int
        The last step whose state is known good; saved states after it are NaN.
    time : float
        ``step · dt``.
    reason : str
        One line.
    """

    step: int
    last_good_step: int
    time: float
    reason: str


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
    failure : RolloutFailure or None
        Set only by ``rollout(..., on_failure="stop")`` when the rollout failed; the states
        saved after ``failure.last_good_step`` are then NaN.
    """

    t: Tensor
    q: Tensor
    p: Tensor
    method: str
    failure: RolloutFailure | None = None


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


def _failure(step: int, last_good: int, dt: float, reason: str) -> RolloutFailure:
    return RolloutFailure(step=step, last_good_step=last_good, time=step * dt, reason=reason)


def _nonfinite(stepper: Stepper, state: State, start: int, stop: int, dt: float) -> RolloutFailure:
    k = _first_bad_step(stepper, state, start, stop)
    return _failure(
        k,
        k - 1,
        dt,
        f"non-finite state at step {k} (t = {k * dt:.6g}), last "
        f"finite state at step {k - 1}; reduce dt or check the field",
    )


def _rollout_steps(
    integ: Integrator,
    field: object,
    q0: Tensor,
    p0: Tensor,
    dt: float,
    n_last: int,
    every: int,
    progress: Callable[[int, int], None] | None,
    keep: Callable[[int, Tensor, Tensor], None] | None = None,
) -> tuple[list[Tensor], list[Tensor], RolloutFailure | None]:
    """Generic loop: step, keep every ``every``-th state, check the state periodically.

    Returns the saved states so far and, if the rollout failed, why (the caller raises or
    keeps the good part). ``keep(step, q, p)``, when given, sees every state stepped to
    (the adjoint's checkpoints).
    """
    stepper = integ.stepper(field, dt, q0)
    state = stepper.init(q0, p0)
    checked, checked_at = state, 0
    qs, ps = [q0], [p0]
    for k in range(1, n_last + 1):
        try:
            state = stepper.advance(state)
        except IntegratorError as err:
            return qs, ps, _failure(k, k - 1, dt, f"failed at step {k}: {err}")
        if keep is not None:
            keep(k, *stepper.observe(state))
        if k % every == 0:
            q, p = stepper.observe(state)
            qs.append(q)
            ps.append(p)
        if k % _CHECK_EVERY == 0 or k == n_last:
            if not _finite(*stepper.observe(state)):
                return qs, ps, _nonfinite(stepper, checked, checked_at, k, dt)
            problem = stepper.check(state)
            if problem is not None:
                return (
                    qs,
                    ps,
                    _failure(
                        k, checked_at, dt, f"stopped at step {k} (t = {k * dt:.6g}): {problem}"
                    ),
                )
            checked, checked_at = state, k
            if progress is not None:
                progress(k, n_last)
    return qs, ps, None


def _check_bulk(
    integ: Integrator, field: object, q: Tensor, p: Tensor, dt: float, every: int
) -> RolloutFailure | None:
    """Check states ``[n_saved, ..., dof]`` solved in one call; name the first bad step."""
    bad = ~(torch.isfinite(q) & torch.isfinite(p)).flatten(1).all(dim=1)
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0])
    stepper = integ.stepper(field, dt, q[0])
    return _nonfinite(stepper, stepper.init(q[i - 1], p[i - 1]), (i - 1) * every, i * every, dt)


# Below this many bytes of saved states a rollout skips the memory check (it reads
# /proc/meminfo), so the short unrolls of a training step pay nothing for it.
_CHECKED_ABOVE = 1 << 28


def _check_output_size(n_steps: int, n_saved: int, q0: Tensor) -> None:
    # q and p, each saved once in the list and once stacked.
    nbytes = 4 * n_saved * q0.numel() * q0.element_size()
    if nbytes > _CHECKED_ABOVE:
        check_memory(
            f"a rollout of {n_steps} steps saving {n_saved} states of {tuple(q0.shape)}",
            nbytes,
            "save fewer states (save_every) or roll out fewer steps or trajectories",
        )


def _keep_good(states: list[Tensor], n_saved: int, every: int, last_good: int) -> Tensor:
    """Stack saved states ``[..., n_saved, dof]``; NaN for those after step ``last_good``."""
    good = [x for i, x in enumerate(states) if i * every <= last_good]
    pad = [torch.full_like(states[0], float("nan"))] * (n_saved - len(good))
    return torch.stack(good + pad, dim=-2)


def rollout(
    field: object,
    q0: Tensor,
    p0: Tensor,
    dt: float,
    n_steps: int,
    method: str | Integrator = "yoshida4",
    save_every: int = 1,
    *,
    on_failure: str = "raise",
    progress: Callable[[int, int], None] | None = None,
    adjoint: bool = False,
    checkpoint_every: int | None = None,
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
    on_failure : {"raise", "stop"}
        What a failed rollout does (a non-finite state, a failed implicit solve, a stepper's
        own check such as Tao's defect): ``"raise"`` an `IntegratorError` naming the step, or
        ``"stop"`` there and return the trajectory with the states after the last good one
        set to NaN and ``Trajectory.failure`` saying why (evaluation uses this to report a
        diverging model up to its divergence).
    progress : callable, optional
        ``progress(step, n_steps)``, called every 256 steps (where the state is checked);
        for progress bars on long rollouts.
    adjoint : bool
        Differentiate by the discrete adjoint (`hamgrad.integrators.adjoint`) instead of
        backpropagating through every step: the same gradient (to round-off for explicit
        methods, to the solver tolerance for implicit ones), with memory beyond the saved
        states of about ``2·sqrt(n_steps)`` phase-space states instead of every step's graph.
        Gradients reach ``q0``, ``p0`` and the trainable parameters of an ``nn.Module`` field
        only (a field that uses other tensors requiring grad is refused). Methods must
        declare `Integrator.supports_adjoint`.
    checkpoint_every : int, optional
        With ``adjoint``: steps between the states stored for the backward replay (default
        ``ceil(sqrt(n_steps))``, the fewest stored states; see `hamgrad.integrators.adjoint`).
    **options
        Method options passed to `get_integrator`, e.g. ``tol=1e-14`` for ``gauss4`` or
        ``omega=20`` for ``tao2``.

    Returns
    -------
    Trajectory
        ``t`` of shape ``[n_saved]`` and ``q``, ``p`` of shape ``[..., n_saved, dof]`` with
        ``n_saved = n_steps // save_every + 1``; index 0 is the initial state at ``t = 0``.
        Only saved states are stored, so memory grows with ``n_saved``, not ``n_steps`` (with
        autograd enabled and ``adjoint=False``, the graph of every step is kept for the
        backward pass).
        Differentiable with respect to ``q0``, ``p0`` and the field's parameters.

    Raises
    ------
    ConfigError
        Bad arguments or unknown method/option.
    IntegratorError
        The method does not apply to the field, an implicit solve failed (with the step), the
        state became non-finite (with the first non-finite step), or ``adjoint`` was asked of a
        method without one (the message lists those that have one).
    """
    integ = get_integrator(method, field, **options)
    if on_failure not in ("raise", "stop"):
        raise ConfigError(f"on_failure must be 'raise' or 'stop', got {on_failure!r}")
    if not isinstance(adjoint, bool):
        raise ConfigError(f"adjoint must be True or False, got {adjoint!r}")
    if adjoint:
        check_adjoint(integ, field)
    elif checkpoint_every is not None:
        raise ConfigError(
            f"checkpoint_every={checkpoint_every!r} applies only with adjoint=True; "
            "expected adjoint=True or no checkpoint_every"
        )
    _check_state(q0, p0)
    dt = check_dt(dt)
    n_steps = check_int("n_steps", n_steps, minimum=0)
    save_every = check_int("save_every", save_every)
    if not _finite(q0, p0):
        raise IntegratorError("rollout: initial state (step 0) is not finite")
    n_last = (n_steps // save_every) * save_every
    n_saved = n_last // save_every + 1
    _check_output_size(n_steps, n_saved, q0)

    def stacked(qs: list[Tensor], ps: list[Tensor], failure: RolloutFailure | None):
        last_good = n_last if failure is None else failure.last_good_step
        q = _keep_good(qs, n_saved, save_every, last_good)
        return q, _keep_good(ps, n_saved, save_every, last_good), failure

    def stepped(keep: Callable[[int, Tensor, Tensor], None] | None = None):
        return stacked(
            *_rollout_steps(integ, field, q0, p0, dt, n_last, save_every, progress, keep)
        )

    try_bulk = n_last > 0 and not adjoint
    bulk = integ.integrate_saved(field, q0, p0, dt, n_last, save_every) if try_bulk else None
    if adjoint:
        q, p, failure = adjoint_rollout(
            integ, field, q0, p0, dt, save_every, n_last, stepped, checkpoint_every
        )
    elif bulk is not None:
        failure = _check_bulk(integ, field, *bulk, dt, save_every)
        q, p, _ = stacked(list(bulk[0].unbind(0)), list(bulk[1].unbind(0)), failure)
    else:
        q, p, failure = stepped()
    if failure is not None and on_failure == "raise":
        raise IntegratorError(f"rollout with {integ.name!r}: {failure.reason}")
    t = torch.arange(0, n_last + 1, save_every, dtype=q0.dtype, device=q0.device) * dt
    return Trajectory(t=t, q=q, p=p, method=integ.name, failure=failure)
