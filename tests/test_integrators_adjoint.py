"""``rollout(..., adjoint=True)``: the discrete adjoint gives backprop's gradient in O(1) graphs.

Every registered method that declares ``supports_adjoint`` is checked against plain
backpropagation in float64, on a true system with a parameter and on learned models, at K = 1,
10 and 1000 steps, with a loss on every saved state. A deliberately perturbed adjoint must fail
the same check.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from _fields import FreeThenNaN, HarmonicOscillator, Pendulum
from test_training_helpers import _one_thread  # noqa: F401
from torch import Tensor, nn

from hamgrad.errors import ConfigError, IntegratorError
from hamgrad.integrators import INTEGRATORS, adjoint_methods, rollout
from hamgrad.integrators.adjoint import default_checkpoint_every
from hamgrad.models import get_model

ADJOINT = [n for n, m in INTEGRATORS.items() if m.supports_adjoint]
NO_ADJOINT = [n for n, m in INTEGRATORS.items() if not m.supports_adjoint]
TOL = 1e-10  # relative agreement required of the adjoint against backprop (float64)


class PendulumModule(nn.Module):
    """``H = p²/2 + k(1 − cos q)`` with a trainable ``k``: a true system with a parameter."""

    separable = True

    def __init__(self, k: float = 1.3) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k))

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        return self.k * torch.sin(q)

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p


def _model(name: str) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    return get_model(name, 2, generator=g, hidden=4, depth=2, normalize=False)


FIELDS = {
    "pendulum": lambda: PendulumModule(),
    "separable-gradnet": lambda: _model("separable-gradnet"),
    "gradnet": lambda: _model("gradnet"),  # non-separable: implicit methods and rk4 only
}


def _start(dof: int, batch: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(2)
    return 0.6 * torch.randn(batch, dof, generator=g), 0.6 * torch.randn(batch, dof, generator=g)


def _gradients(field, q0, p0, n_steps, method, adjoint, save_every=1, **kw) -> Tensor:
    """Gradient of a loss on every saved state w.r.t. q0, p0 and the parameters, flattened."""
    q0 = q0.clone().requires_grad_()
    p0 = p0.clone().requires_grad_()
    params = list(field.parameters()) if isinstance(field, nn.Module) else []
    traj = rollout(field, q0, p0, 0.05, n_steps, method, save_every, adjoint=adjoint, **kw)
    weight = torch.linspace(0.5, 1.5, traj.q.shape[-2]).unsqueeze(-1)
    loss = (weight * (torch.sin(traj.q) + traj.p**2)).sum()
    grads = torch.autograd.grad(loss, [q0, p0, *params])
    return torch.cat([g.flatten() for g in grads])


def _gap(a: Tensor, b: Tensor) -> float:
    """Largest difference relative to the largest entry of the reference ``a``."""
    return float((a - b).abs().max() / a.abs().max())


def _cases(steps: list[int], learned: set[tuple[str, str]] | None = None):
    """(method, field, K) for every adjoint method on every field it applies to; with
    ``learned``, the learned models only for those (method, model) pairs."""
    for name in ADJOINT:
        for field, make in FIELDS.items():
            wanted = learned is None or field == "pendulum" or (name, field) in learned
            if wanted and INTEGRATORS[name].applies_to(make()):
                for k in steps:
                    yield pytest.param(name, field, k, id=f"{name}-{field}-K{k}")


def test_every_symplectic_method_declares_an_adjoint() -> None:
    """The agreement tests below cover every symplectic method: none is filtered out."""
    symplectic = {n for n, m in INTEGRATORS.items() if m.symplectic}
    assert symplectic and symplectic <= set(ADJOINT)
    assert adjoint_methods() == sorted(ADJOINT)


@pytest.mark.parametrize(("name", "field", "n_steps"), list(_cases([1, 10])))
def test_adjoint_matches_backprop(name: str, field: str, n_steps: int) -> None:
    f = FIELDS[field]()
    q0, p0 = _start(1 if field == "pendulum" else 2)
    backprop = _gradients(f, q0, p0, n_steps, name, adjoint=False)
    adjoint = _gradients(f, q0, p0, n_steps, name, adjoint=True)
    assert _gap(backprop, adjoint) < TOL


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "field", "n_steps"),
    list(_cases([1000], learned={("leapfrog", "separable-gradnet"), ("gauss4", "gradnet")})),
)
def test_adjoint_matches_backprop_over_1000_steps(name: str, field: str, n_steps: int) -> None:
    """Recomputed states are the forward ones, so K = 1000 agrees as well as K = 1.

    Every method on the pendulum; on the learned models one explicit and one implicit method
    (each learned case costs 5-40 s on a busy 2-core machine; all of them would add minutes
    to the suite)."""
    f = FIELDS[field]()
    q0, p0 = _start(1 if field == "pendulum" else 2, batch=2)
    backprop = _gradients(f, q0, p0, n_steps, name, adjoint=False, save_every=10)
    adjoint = _gradients(f, q0, p0, n_steps, name, adjoint=True, save_every=10)
    assert _gap(backprop, adjoint) < TOL


def test_1000_steps_every_state_saved() -> None:
    """A K = 1000 case outside the slow set, with a cotangent on every one of the states."""
    q0, p0 = _start(1)
    f = PendulumModule()
    backprop = _gradients(f, q0, p0, 1000, "leapfrog", adjoint=False)
    assert _gap(backprop, _gradients(f, q0, p0, 1000, "leapfrog", adjoint=True)) < TOL


@pytest.mark.parametrize("save_every", [1, 3, 7])
@pytest.mark.parametrize("checkpoint_every", [None, 1, 4, 50, 1000])
def test_saving_and_checkpoint_spacing_do_not_change_the_gradient(save_every, checkpoint_every):
    """Segments start at saved states and at checkpoints; steps after the last save are not
    taken (50 // 7 = 7 saves, 49 steps)."""
    f, (q0, p0) = PendulumModule(), _start(1)
    backprop = _gradients(f, q0, p0, 50, "yoshida4", adjoint=False, save_every=save_every)
    adjoint = _gradients(
        f,
        q0,
        p0,
        50,
        "yoshida4",
        adjoint=True,
        save_every=save_every,
        checkpoint_every=checkpoint_every,
    )
    assert _gap(backprop, adjoint) < TOL


def test_default_checkpoint_spacing() -> None:
    assert [default_checkpoint_every(n) for n in (0, 1, 10, 100, 1000, 10_000)] == [
        1,
        1,
        4,
        10,
        32,
        100,
    ]


@pytest.mark.parametrize("name", ["leapfrog", "gauss4"])
def test_gradcheck(name: str) -> None:
    """Finite differences of q0, p0 (torch.autograd.gradcheck) and of a parameter."""
    f = PendulumModule()
    q0, p0 = _start(1, batch=2)

    def run(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        traj = rollout(f, q, p, 0.1, 6, name, save_every=2, adjoint=True, checkpoint_every=4)
        return traj.q, traj.p

    assert torch.autograd.gradcheck(run, (q0.requires_grad_(), p0.requires_grad_()))

    def loss(k: float) -> Tensor:
        with torch.no_grad():
            f.k.fill_(k)
        traj = rollout(f, q0.detach(), p0.detach(), 0.1, 6, name, save_every=2, adjoint=True)
        return (traj.q**2).sum() + traj.p.sum()

    (grad,) = torch.autograd.grad(loss(1.3), [f.k])
    h = 1e-6
    with torch.no_grad():
        difference = (loss(1.3 + h) - loss(1.3 - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(difference), rel=1e-7)


def _perturbed_vjp(monkeypatch, name: str) -> None:
    """Make the backward pass of ``name`` use one coefficient off by 1e-7 (relative)."""
    stepper_type = type(INTEGRATORS[name].stepper(PendulumModule(), 0.05, torch.zeros(1)))
    vjp = stepper_type.vjp

    def wrong_vjp(self, *args):
        if hasattr(self, "updates"):  # splitting: (is_kick, alpha) per substep
            saved = self.updates
            self.updates = ((saved[0][0], saved[0][1] * (1 + 1e-7)), *saved[1:])
        else:  # collocation: dt·A
            saved = self.dtA
            self.dtA = [[a * (1 + 1e-7) for a in row] for row in saved]
        try:
            return vjp(self, *args)
        finally:
            if hasattr(self, "updates"):
                self.updates = saved
            else:
                self.dtA = saved

    monkeypatch.setattr(stepper_type, "vjp", wrong_vjp)


@pytest.mark.parametrize("name", ["yoshida4", "gauss4"])
def test_the_agreement_check_catches_a_wrong_adjoint(monkeypatch, name: str) -> None:
    """A 1e-7 error in one coefficient of the backward pass alone fails the 1e-10 check."""
    f, (q0, p0) = PendulumModule(), _start(1)
    backprop = _gradients(f, q0, p0, 10, name, adjoint=False)
    _perturbed_vjp(monkeypatch, name)
    assert _gap(backprop, _gradients(f, q0, p0, 10, name, adjoint=True)) > 10 * TOL


@pytest.mark.parametrize("name", NO_ADJOINT)
def test_methods_without_an_adjoint_are_refused(name: str) -> None:
    q0, p0 = _start(1)
    with pytest.raises(IntegratorError, match=f"{name}' has no adjoint rollout.*gauss4"):
        rollout(Pendulum(), q0, p0, 0.05, 3, name, adjoint=True)


def test_tensors_the_field_closes_over_are_refused_not_dropped() -> None:
    """Only nn.Module parameters (and q0, p0) can be differentiated by the adjoint."""
    k = torch.tensor(1.3, requires_grad=True)
    q0, p0 = _start(1)
    with pytest.raises(ConfigError, match="not parameters of the field"):
        rollout(Pendulum(k), q0, p0, 0.05, 3, adjoint=True)
    # Backprop still reaches k; the adjoint reaches it once k is a parameter of a Module.
    (by_backprop,) = torch.autograd.grad(rollout(Pendulum(k), q0, p0, 0.05, 3).q.sum(), [k])
    f = PendulumModule(1.3)
    (by_adjoint,) = torch.autograd.grad(rollout(f, q0, p0, 0.05, 3, adjoint=True).q.sum(), [f.k])
    assert float(by_adjoint) == pytest.approx(float(by_backprop), rel=1e-13)


def test_frozen_parameters_and_no_grad() -> None:
    f, (q0, p0) = PendulumModule(), _start(1)
    f.k.requires_grad_(False)
    traj = rollout(f, q0.requires_grad_(), p0, 0.05, 5, adjoint=True)
    (g,) = torch.autograd.grad(traj.q.sum(), [q0])
    assert f.k.grad is None and torch.isfinite(g).all()
    with torch.no_grad():
        quiet = rollout(f, q0, p0, 0.05, 5, adjoint=True)
    assert not quiet.q.requires_grad
    assert torch.equal(quiet.q, rollout(f, q0.detach(), p0, 0.05, 5).q)  # the same forward pass


def test_forward_pass_is_unchanged_and_float32_stays_float32() -> None:
    f = _model("separable-gradnet").float()
    q0, p0 = (x.float() for x in _start(2))
    plain = rollout(f, q0, p0, 0.05, 20, "yoshida4", save_every=3)
    adj = rollout(f, q0, p0, 0.05, 20, "yoshida4", save_every=3, adjoint=True)
    assert torch.equal(plain.q, adj.q) and torch.equal(plain.p, adj.p)
    assert torch.equal(plain.t, adj.t) and adj.q.dtype == torch.float32
    grads = torch.autograd.grad(adj.q.sum() + adj.p.sum(), list(f.parameters()))
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_the_adjoint_keeps_no_graph_of_the_steps() -> None:
    """After the forward pass backprop's graph holds sin(q) of every step (for ∂/∂k); the
    adjoint's holds none."""

    class Tracking(PendulumModule):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[weakref.ref] = []

        def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
            sin = torch.sin(q)
            self.seen.append(weakref.ref(sin))
            return self.k * sin

    q0, p0 = _start(1)
    alive = {}
    for adjoint in (False, True):
        f = Tracking()
        traj = rollout(f, q0.requires_grad_(), p0, 0.05, 200, "leapfrog", 50, adjoint=adjoint)
        gc.collect()
        alive[adjoint] = sum(r() is not None for r in f.seen)
        del traj
    assert alive[False] >= 200 and alive[True] == 0


def test_a_stopped_rollout_differentiates_its_good_part() -> None:
    """on_failure='stop': the backward sweep starts at the last good saved state."""
    field = FreeThenNaN(threshold=1.0)
    q0, p0 = torch.tensor([[0.0], [0.1]]), torch.tensor([[0.05], [0.02]])
    grads = []
    for adjoint in (False, True):
        p = p0.clone().requires_grad_()
        traj = rollout(field, q0, p, 1.0, 40, "leapfrog", 2, on_failure="stop", adjoint=adjoint)
        assert traj.failure is not None
        good = traj.failure.last_good_step // 2 + 1
        (g,) = torch.autograd.grad((traj.q[..., :good, :] ** 2).sum(), [p])
        grads.append(g)
    assert torch.isfinite(grads[1]).all() and _gap(grads[0], grads[1]) < TOL


def test_batch_shapes_and_a_field_without_parameters() -> None:
    q0 = 0.3 * torch.randn(2, 3, 2)
    p0 = 0.3 * torch.randn(2, 3, 2)
    grads = [
        _gradients(HarmonicOscillator(), q0, p0, 9, "pefrl", adjoint=a, save_every=2)
        for a in (False, True)
    ]
    assert _gap(*grads) < TOL


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"adjoint": "yes"}, "adjoint must be True or False"),
        ({"checkpoint_every": 4}, "checkpoint_every=4 applies only with adjoint=True"),
        ({"adjoint": True, "checkpoint_every": 0}, "checkpoint_every must be an integer >= 1"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    q0, p0 = _start(1)
    with pytest.raises(ConfigError, match=match):
        rollout(Pendulum(), q0, p0, 0.05, 3, **kwargs)


@pytest.mark.parametrize(("n_steps", "save_every"), [(0, 1), (3, 5)])
def test_no_differentiated_step_gives_the_identity_gradient(n_steps, save_every) -> None:
    """No step before the last saved state: q0 and p0 get the loss's own gradient, the
    parameters zero, as with backprop (the backward sweep used to fail on an empty list)."""
    f = FIELDS["separable-gradnet"]()
    grads = []
    for adjoint in (False, True):
        q0, p0 = (x.clone().requires_grad_() for x in _start(2))
        traj = rollout(f, q0, p0, 0.05, n_steps, "leapfrog", save_every, adjoint=adjoint)
        loss = (torch.sin(traj.q) + traj.p**2).sum()
        inputs = [q0, p0, *f.parameters()]
        grads.append(torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True))
    for backprop, adjoint in zip(*grads, strict=True):
        assert torch.equal(backprop, adjoint)
    assert all(not g.any() for g in grads[1][2:])  # no step: no parameter gradient
