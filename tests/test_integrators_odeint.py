"""``odeint``: the torchdiffeq-style front door (time on axis 0, fixed substeps, adjoint)."""

from __future__ import annotations

import math

import pytest
import torch
from _fields import HarmonicOscillator, NonSeparable
from test_training_helpers import _one_thread  # noqa: F401
from torch import Tensor, nn

from hamgrad.errors import ConfigError, IntegratorError
from hamgrad.integrators import odeint, rollout


def _start() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    return 0.5 * torch.randn(4, 2, generator=g), 0.5 * torch.randn(4, 2, generator=g)


def test_shapes_time_first_and_agreement_with_rollout() -> None:
    q0, p0 = _start()
    t = torch.linspace(1.0, 2.0, 6)  # intervals equal to round-off: one rollout
    q, p = odeint(NonSeparable(), (q0, p0), t, method="gauss4", substeps=3)
    assert q.shape == p.shape == (6, 4, 2)
    assert torch.equal(q[0], q0) and torch.equal(p[0], p0)
    traj = rollout(NonSeparable(), q0, p0, 0.2 / 3, 15, "gauss4", save_every=3)
    assert torch.allclose(q, traj.q.movedim(-2, 0), rtol=0, atol=1e-14)
    assert torch.allclose(p, traj.p.movedim(-2, 0), rtol=0, atol=1e-14)


def test_unequal_intervals_are_stepped_interval_by_interval() -> None:
    q0, p0 = _start()
    t = torch.tensor([0.0, 0.1, 0.4, 0.45, 1.3])
    q, p = odeint(HarmonicOscillator(), (q0, p0), t, method="yoshida6", substeps=8)
    for i, ti in enumerate(t.tolist()):
        q_exact, p_exact = HarmonicOscillator.exact(q0, p0, ti)
        assert torch.allclose(q[i], q_exact, atol=1e-9) and torch.allclose(p[i], p_exact, atol=1e-9)
    # Each interval takes `substeps` steps of its own length.
    q1, p1 = odeint(HarmonicOscillator(), (q0, p0), t[:3], method="yoshida6", substeps=8)
    step = rollout(HarmonicOscillator(), q1[1], p1[1], 0.3 / 8, 8, "yoshida6", save_every=8)
    assert torch.allclose(q1[2], step.q[..., -1, :], rtol=0, atol=1e-15)


def test_a_single_time_returns_the_initial_state() -> None:
    q0, p0 = _start()
    q, p = odeint(HarmonicOscillator(), (q0, p0), torch.tensor([3.0]))
    assert q.shape == (1, 4, 2) and torch.equal(q[0], q0) and torch.equal(p[0], p0)


class _Oscillator(nn.Module):
    """``H = k q²/2 + p²/2`` with a trainable stiffness."""

    separable = True

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(1.7))

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        return self.k * q

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        return p


@pytest.mark.parametrize("t", [torch.linspace(0, 2, 11), torch.tensor([0.0, 0.3, 0.35, 1.2])])
def test_adjoint_through_odeint_matches_backprop(t: Tensor) -> None:
    field = _Oscillator()
    grads = []
    for adjoint in (False, True):
        q0, p0 = (x.clone().requires_grad_() for x in _start())
        q, p = odeint(field, (q0, p0), t, "leapfrog", adjoint=adjoint, substeps=4)
        loss = (torch.cos(q) + p**2).sum()
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, [q0, p0, field.k])]))
    assert float((grads[0] - grads[1]).abs().max() / grads[0].abs().max()) < 1e-12


@pytest.mark.parametrize(
    ("y0", "t", "match"),
    [
        ("pair", torch.tensor([0.0, 1.0]), "y0 must be the pair"),
        ("ok", torch.tensor([[0.0, 1.0]]), "t must be a 1-D floating tensor"),
        ("ok", torch.tensor([0, 1]), "t must be a 1-D floating tensor"),
        ("ok", torch.tensor([]), "t must be a 1-D floating tensor"),
        ("ok", [0.0, 1.0], "t must be a 1-D floating tensor of times, got list"),
        ("ok", torch.tensor([0.0, 1.0, 1.0]), r"strictly increasing, got t\[2\] = 1.0 after"),
        ("ok", torch.tensor([0.0, math.nan]), r"t must be finite, got t\[1\] = nan"),
        ("ok", torch.tensor([0.0, 1.0], requires_grad=True), "does not differentiate"),
    ],
)
def test_bad_input_is_one_line(y0, t, match) -> None:
    start = _start() if y0 == "ok" else (torch.zeros(2),)
    with pytest.raises(ConfigError, match=match) as err:
        odeint(HarmonicOscillator(), start, t)
    assert "\n" not in str(err.value)


def test_rollout_errors_pass_through() -> None:
    with pytest.raises(ConfigError, match="substeps must be an integer >= 1"):
        odeint(HarmonicOscillator(), _start(), torch.tensor([0.0, 1.0]), substeps=0)
    with pytest.raises(IntegratorError, match="needs a separable"):
        odeint(NonSeparable(), _start(), torch.tensor([0.0, 1.0]), method="leapfrog")
    with pytest.raises(IntegratorError, match="has no adjoint"):
        odeint(HarmonicOscillator(), _start(), torch.tensor([0.0, 1.0]), "tao2", adjoint=True)
