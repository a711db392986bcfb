"""Bad input to nets, activations and registry helpers: one-line HamgradError naming the problem."""

from __future__ import annotations

import math

import pytest
import torch

from hamgrad.errors import HamgradError
from hamgrad.nets import (
    ACTIVATIONS,
    NETS,
    count_parameters,
    get_activation,
    get_net,
    hidden_for_budget,
    potential,
)

LEGACY_DEPTH_KWARG = {
    name: ("modules" if name.endswith("-m") else "layers") for name in NETS
}  # version 0.1's per-family depth keywords, deprecated aliases of `depth`


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("bad_shape", [(3,), (4, 3), (2, 5), ()])
def test_wrong_input_width(name, bad_shape):
    net = get_net(name, dim=2, hidden=4)
    with pytest.raises(HamgradError, match=r"dim=2.*got shape"):
        net(torch.zeros(bad_shape))


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("arg", ["dim", "hidden", "depth"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_sizes(name, arg, value):
    kwargs = {"dim": 2, "hidden": 4}
    kwargs[arg] = value
    with pytest.raises(HamgradError, match=rf"{arg} must be an integer >= 1, got {value!r}"):
        get_net(name, **kwargs)


@pytest.mark.parametrize("name", [n for n in sorted(NETS) if "gradnet" in n])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0, "x"])
def test_bad_init_scale(name, value):
    with pytest.raises(HamgradError, match="init_scale"):
        get_net(name, dim=2, hidden=4, init_scale=value)


def test_unknown_net_lists_sorted_names():
    with pytest.raises(HamgradError) as info:
        get_net("gradnet-x", dim=2)
    assert ", ".join(sorted(NETS)) in str(info.value) and "gradnet-x" in str(info.value)


def test_unknown_activation_lists_names():
    with pytest.raises(HamgradError, match="unknown activation 'relu'") as info:
        get_net("gradnet-c", dim=2, activation="relu")
    assert ", ".join(sorted(ACTIVATIONS)) in str(info.value)


NON_MONOTONE = sorted(n for n, s in ACTIVATIONS.items() if not s.monotone)
VECTOR = sorted(n for n, s in ACTIVATIONS.items() if not s.elementwise)


@pytest.mark.parametrize("name", sorted(n for n, c in NETS.items() if c.monotone))
@pytest.mark.parametrize("activation", NON_MONOTONE)
def test_monotone_nets_refuse_non_monotone_activation(name, activation):
    with pytest.raises(HamgradError, match=rf"activation={activation!r} is not .*monotone|convex"):
        get_net(name, dim=2, hidden=3, activation=activation)


@pytest.mark.parametrize("name", ["gradnet-c", "mgradnet-c", "mlp", "scalar-grad"])
@pytest.mark.parametrize("activation", VECTOR)
def test_elementwise_nets_refuse_vector_activation(name, activation):
    with pytest.raises(HamgradError, match="element-wise"):
        get_net(name, dim=2, hidden=3, activation=activation)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_flags_are_true(activation):
    """The registry flags are checked numerically, so a wrongly flagged entry fails here."""
    spec = ACTIVATIONS[activation]
    z = torch.linspace(-6, 6, 2001)
    width = 5
    zz = z[:, None] + torch.linspace(-1, 1, width)  # [n, width], distinct values per unit
    act = get_activation(activation, width, monotone=spec.monotone)
    if spec.elementwise:
        y = act(zz)
        # Element-wise: perturbing one unit changes only that unit.
        bumped = zz.clone()
        bumped[:, 0] += 0.1
        assert torch.equal(act(bumped)[:, 1:], y[:, 1:])
        steps = torch.diff(y, dim=0)
        nondecreasing = bool((steps >= -1e-12).all())
        assert nondecreasing == spec.monotone, f"{activation}: monotone flag disagrees"
        if spec.convex:
            assert (torch.diff(steps, dim=0) >= -1e-12).all()
    else:
        J = torch.func.vmap(torch.func.jacrev(act))(zz)
        assert torch.allclose(J, J.transpose(-1, -2), atol=1e-12)
        assert (torch.linalg.eigvalsh(J).amin(-1) >= -1e-12).all() == spec.monotone


def test_get_activation_bad_width():
    with pytest.raises(HamgradError, match="width must be an integer >= 1, got 0"):
        get_activation("tanh", 0, monotone=False)


@pytest.mark.parametrize("name", sorted(NETS))
def test_hidden_for_budget_is_largest_fit(name):
    budget = 700

    def build(h):
        return get_net(name, dim=5, hidden=h, depth=2)

    h = hidden_for_budget(build, budget)
    assert count_parameters(build(h)) <= budget
    assert count_parameters(build(h + 1)) > budget


def test_hidden_for_budget_errors():
    def build(h):
        return get_net("gradnet-c", dim=5, hidden=h)

    with pytest.raises(HamgradError, match="budget=10 is below"):
        hidden_for_budget(build, 10)
    with pytest.raises(HamgradError, match="budget must be an integer >= 1, got 0"):
        hidden_for_budget(build, 0)


@pytest.mark.parametrize("name", sorted(NETS))
def test_legacy_depth_keyword_warns_and_builds_the_same_net(name):
    with pytest.warns(DeprecationWarning, match="use depth="):
        old = get_net(name, dim=3, hidden=4, **{LEGACY_DEPTH_KWARG[name]: 3})
    assert old.depth == 3
    new = get_net(name, dim=3, hidden=4, depth=3)
    assert count_parameters(old) == count_parameters(new)


def test_legacy_hidden_for_budget_signature_warns():
    with pytest.warns(DeprecationWarning, match="pass a builder"):
        h = hidden_for_budget("gradnet-c", 5, 700, depth=2)
    assert h == hidden_for_budget(lambda h: get_net("gradnet-c", dim=5, hidden=h, depth=2), 700)
    with pytest.raises(HamgradError, match="unknown net"), pytest.warns(DeprecationWarning):
        hidden_for_budget("nope", 5, 100)


def test_potential_bad_input():
    net = get_net("gradnet-c", dim=2, hidden=3)
    with pytest.raises(HamgradError, match="n_nodes must be an integer >= 1, got 0"):
        potential(net, torch.zeros(2), n_nodes=0)
    with pytest.raises(HamgradError, match=r"dim=2, got shape \(3,\)"):
        potential(net, torch.zeros(3))
    with pytest.raises(HamgradError, match="does not broadcast"):
        potential(net, torch.zeros(4, 2), reference=torch.zeros(3, 2))


def test_hidden_for_budget_nearest_within_a_tolerance():
    def build(h):
        return get_net("gradnet-c", dim=5, hidden=h, depth=2)

    below = hidden_for_budget(build, 700)
    nearest = hidden_for_budget(build, 700, tolerance=0.05)
    assert nearest in (below, below + 1)
    counts = {h: count_parameters(build(h)) for h in (below, below + 1)}
    assert abs(counts[nearest] - 700) == min(abs(c - 700) for c in counts.values())
    with pytest.raises(HamgradError, match="within"):
        hidden_for_budget(build, 40, tolerance=0.01)  # widths 2 and 3 give 35 and 50
