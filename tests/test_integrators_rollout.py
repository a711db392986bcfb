"""The rollout API: shapes, dtypes, saving, options, errors, gradients and long-horizon energy."""

from __future__ import annotations

import gc
import math
import re
import weakref

import pytest
import torch
from _fields import (
    Damped,
    FreeThenNaN,
    HarmonicOscillator,
    HenonHeiles,
    Kepler,
    NonSeparable,
    Pendulum,
)

from hamgrad.errors import ConfigError, IntegratorError
from hamgrad.integrators import INTEGRATORS, Trajectory, applicable_methods, get_integrator, rollout

ALL = list(INTEGRATORS)
FIXED_STEP = [n for n, m in INTEGRATORS.items() if m.order is not None]
ADAPTIVE = [n for n, m in INTEGRATORS.items() if m.order is None]


@pytest.mark.parametrize("name", ALL)
def test_shapes_batch_and_time_axis(name: str) -> None:
    q0 = torch.randn(3, 4, 2) * 0.3
    p0 = torch.randn(3, 4, 2) * 0.3
    traj = rollout(HenonHeiles(), q0, p0, 0.05, 7, method=name, save_every=2)
    assert isinstance(traj, Trajectory) and traj.method == name
    assert traj.q.shape == traj.p.shape == (3, 4, 7 // 2 + 1, 2)
    assert torch.equal(traj.q[..., 0, :], q0) and torch.equal(traj.p[..., 0, :], p0)
    assert torch.allclose(traj.t, torch.tensor([0.0, 0.1, 0.2, 0.3]), atol=1e-15)
    # Batch elements are independent: one state integrated alone matches its batch row (to the
    # tolerance for adaptive solvers, which choose one step size for the whole batch).
    alone = rollout(HenonHeiles(), q0[1, 2], p0[1, 2], 0.05, 7, method=name, save_every=2)
    atol = 1e-6 if INTEGRATORS[name].order is None else 1e-12
    assert torch.allclose(alone.q, traj.q[1, 2], atol=atol, rtol=0)


@pytest.mark.parametrize("name", FIXED_STEP)
def test_rollout_equals_repeated_steps(name: str) -> None:
    """Force caching across steps (FSAL) changes nothing; Tao carries its copies instead."""
    method = INTEGRATORS[name]
    q, p = torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.4])
    traj = rollout(HenonHeiles(), q, p, 0.1, 5, method=name)
    if name.startswith("tao"):
        z = (q, p, q, p)
        for _ in range(5):
            z = method.step_extended(HenonHeiles(), *z, 0.1)
        q, p = z[0], z[1]
    else:
        for _ in range(5):
            q, p = method.step(HenonHeiles(), q, p, 0.1)
    assert torch.allclose(traj.q[-1], q, atol=1e-14, rtol=0)
    assert torch.allclose(traj.p[-1], p, atol=1e-14, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_float32_stays_float32(name: str) -> None:
    q0 = torch.tensor([[0.3, -0.2]], dtype=torch.float32)
    traj = rollout(HenonHeiles(), q0, q0.flip(-1), 0.05, 4, method=name)
    assert traj.q.dtype == traj.p.dtype == traj.t.dtype == torch.float32
    ref = rollout(HenonHeiles(), q0.double(), q0.flip(-1).double(), 0.05, 4, method=name)
    assert torch.allclose(traj.q.double(), ref.q, atol=1e-5)


def test_memory_grows_with_saved_states_only() -> None:
    """Intermediate states are released: count the states the field saw that are still alive."""

    class Tracking(Pendulum):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[weakref.ref] = []

        def dH_dq(self, q, p):
            self.seen.append(weakref.ref(q))
            return super().dH_dq(q, p)

    field = Tracking()
    with torch.no_grad():
        traj = rollout(field, torch.ones(1), torch.zeros(1), 0.01, 20_000, "leapfrog", 1000)
    gc.collect()
    alive = sum(ref() is not None for ref in field.seen)
    assert traj.q.shape == (21, 1) and len(field.seen) >= 20_000
    assert alive <= 3, f"{alive} intermediate states still alive"


def test_options_reach_the_method() -> None:
    q0, p0 = torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.4])
    with pytest.raises(IntegratorError, match=r"step 1: .*max_iter=1 iterations"):
        rollout(NonSeparable(), q0, p0, 0.1, 3, method="gauss4", max_iter=1)
    a = rollout(NonSeparable(), q0, p0, 0.1, 3, method="tao2", omega=20.0)
    b = rollout(NonSeparable(), q0, p0, 0.1, 3, method=get_integrator("tao2", omega=20.0))
    c = rollout(NonSeparable(), q0, p0, 0.1, 3, method="tao2")
    assert torch.equal(a.q, b.q) and not torch.equal(a.q, c.q)
    with pytest.raises(ConfigError, match=r"unknown option.*omega.*valid options: tol, max_iter"):
        rollout(NonSeparable(), q0, p0, 0.1, 3, method="gauss4", omega=1.0)
    with pytest.raises(ConfigError, match="tol must be a finite positive number, got -1"):
        get_integrator("gauss6", tol=-1)


@pytest.mark.parametrize("name", FIXED_STEP)
def test_non_finite_state_reports_its_step(name: str) -> None:
    """The reported step is the first one where plain stepping gives a non-finite state.

    A free particle moves by exactly dt = 1/8 per step and the force turns NaN beyond |q| = 40.05,
    so the failure lands after the first periodic check (step 256) and exercises the replay.
    """
    method, field = INTEGRATORS[name], FreeThenNaN(40.05)
    q, p = torch.zeros(1), torch.ones(1)
    z = (q, p, q, p)
    expected = None
    for k in range(1, 400):
        try:
            if name.startswith("tao"):
                z = method.step_extended(field, *z, 0.125)
            else:
                z = (*method.step(field, z[0], z[1], 0.125), None, None)
        except IntegratorError:
            expected = k
            break
        if not all(bool(torch.isfinite(x).all()) for x in z[:2]):
            expected = k
            break
    assert expected is not None and expected > 256
    with pytest.raises(IntegratorError, match=rf"step {expected}\b"):
        rollout(field, torch.zeros(1), torch.ones(1), 0.125, 400, method=name, save_every=7)


def test_splitting_on_non_separable_field_names_applicable_methods() -> None:
    with pytest.raises(IntegratorError) as info:
        rollout(NonSeparable(), torch.zeros(2), torch.zeros(2), 0.1, 2, method="leapfrog")
    message = str(info.value)
    listed = re.search(r"methods that apply: (.*)$", message).group(1).split(", ")
    assert listed == applicable_methods(NonSeparable())
    assert {"gauss4", "implicit-midpoint", "tao2", "rk4"} <= set(listed)
    assert not {"leapfrog", "yoshida4"} & set(listed)


@pytest.mark.parametrize("name", ALL)
def test_vector_field_only_with_non_symplectic_methods(name: str) -> None:
    method = INTEGRATORS[name]
    q0, p0 = torch.tensor([1.0]), torch.tensor([0.0])
    if method.requires_gradient:
        with pytest.raises(IntegratorError, match=r"methods that apply: .*rk4.*torchdiffeq"):
            rollout(Damped(), q0, p0, 0.1, 3, method=name)
        return
    traj = rollout(Damped(), q0, p0, 0.01, 300, method=name)
    ref = rollout(Damped(), q0, p0, 0.01, 300, method="rk4")
    assert torch.allclose(traj.q, ref.q, atol=0.02)  # same damped dynamics, any method


def test_bad_arguments_raise_config_errors() -> None:
    field, x = Pendulum(), torch.zeros(1)
    cases = [
        (dict(dt=0.0), "dt must be a nonzero"),
        (dict(dt=float("nan")), "dt must be a finite number"),
        (dict(n_steps=-1), "n_steps must be an integer >= 0"),
        (dict(save_every=0), "save_every must be an integer >= 1"),
        (dict(method="nope"), "unknown integrator 'nope'; expected one of: blanes-moan4"),
        (dict(q0=torch.zeros(2)), "q0 and p0 must share shape"),
        (dict(q0=torch.zeros(1, dtype=torch.int64)), "q0 must be a floating tensor"),
    ]
    for override, message in cases:
        args = dict(field=field, q0=x, p0=x, dt=0.1, n_steps=2, method="leapfrog") | override
        with pytest.raises(ConfigError, match=re.escape(message)):
            rollout(**args)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_through_five_steps(name: str) -> None:
    # Adaptive solvers: finite differences jump where a perturbation changes the accepted steps
    # (by ~error / eps), so they are checked at a tight tolerance and a larger eps.
    adaptive = name in ADAPTIVE
    method = get_integrator(name, rtol=1e-12, atol=1e-12) if adaptive else name

    def run(q0, p0, k):
        traj = rollout(Pendulum(k), q0, p0, 0.1, 5, method=method)
        return traj.q, traj.p

    inputs = (
        torch.tensor([0.7, -0.3], requires_grad=True),
        torch.tensor([0.2, 0.5], requires_grad=True),
        torch.tensor(1.3, requires_grad=True),
    )
    fd = {"eps": 1e-4, "atol": 1e-4} if adaptive else {}
    assert torch.autograd.gradcheck(run, inputs, **fd)


@pytest.mark.slow
def test_long_horizon_energy_bounded_for_symplectic_and_drifting_for_rk4() -> None:
    """10^5 pendulum steps: no secular energy growth for leapfrog and Yoshida 4; RK4 drifts."""
    field = Pendulum()
    q0, p0 = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.5], [0.0]])
    h0 = field.energy(q0, p0)
    tenth = {}
    for name in ("leapfrog", "yoshida4", "rk4"):
        with torch.no_grad():
            traj = rollout(field, q0, p0, 0.1, 100_000, method=name, save_every=10)
        rel = ((field.energy(traj.q, traj.p) - h0[:, None]) / h0[:, None]).abs()
        n = rel.shape[-1] // 10
        tenth[name] = (rel[:, 1 : n + 1].max(), rel[:, -n:].max())
    for name in ("leapfrog", "yoshida4"):
        first, last = tenth[name]
        assert last <= 2 * first, f"{name}: |dH/H| {first:.2e} (first tenth) -> {last:.2e} (last)"
    first, last = tenth["rk4"]
    assert last > 5 * first, f"rk4 should drift: {first:.2e} -> {last:.2e}"


def test_tao_refuses_to_return_a_wrong_answer_when_its_copies_separate() -> None:
    """Kepler e = 0.9 with the default omega: Tao's copies drift apart and, before the defect
    check, both Tao methods returned finite states off by O(10) at every step size."""
    field, e = Kepler(), 0.9
    q0, p0 = Kepler.initial(e)
    period = 2 * math.pi
    for name in ("tao2", "tao4"):
        with pytest.raises(IntegratorError, match=r"stopped at step \d+ .*copies of phase space"):
            rollout(field, q0, p0, period / 4000, 4000, method=name)
    # With omega far above the orbit's fastest rate and a small step, it converges, and the
    # check stays silent.
    n = 16000
    traj = rollout(field, q0, p0, period / n, n, method="tao4", omega=1e4, save_every=n)
    q_exact, p_exact = Kepler.exact(e, period)
    error = torch.cat([traj.q[-1] - q_exact, traj.p[-1] - p_exact]).norm()
    assert error < 5e-3


def test_higher_order_adaptive_solver_is_the_more_accurate_at_its_defaults() -> None:
    """dopri8 at the old shared default (1e-9) was 400x less accurate than dopri5 here."""
    field = HarmonicOscillator()
    q0, p0 = torch.tensor([1.0]), torch.tensor([0.5])
    q_exact, p_exact = field.exact(q0, p0, 10.0)
    errors = {}
    for solver in ("dopri5", "dopri8"):
        traj = rollout(field, q0, p0, 0.1, 100, method=f"torchdiffeq:{solver}")
        errors[solver] = float((traj.q[-1] - q_exact).abs() + (traj.p[-1] - p_exact).abs())
    assert errors["dopri8"] < errors["dopri5"], errors
