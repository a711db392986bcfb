"""Structural properties of every registered net: symmetry, monotonicity, potentials, shapes.

Parametrised over `NETS`, so a new entry is checked automatically. Each structural check is also
run on a net that violates it, to show that the check can fail.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

from hamgrad.nets import NETS, MLPField, count_parameters, get_net, potential

GRADIENT_NETS = sorted(n for n, c in NETS.items() if c.is_gradient)
MONOTONE_NETS = sorted(n for n, c in NETS.items() if c.monotone)
DIMS = [1, 2, 7]
STAGES = ["init", "trained"]
REL_TOL = 1e-10


def make_net(name: str, dim: int, stage: str) -> torch.nn.Module:
    """A small float64 net, at initialisation or after 20 Adam steps on a random target."""
    g = torch.Generator().manual_seed(1000 * dim + len(name))
    net = get_net(name, dim=dim, hidden=6, generator=g)
    if stage == "trained":
        A = torch.randn(dim, dim, generator=g)
        x = torch.rand(64, dim, generator=g) * 2 - 1
        y = torch.sin(3 * x @ A) + x  # not a gradient: the nets can only approximate it
        opt = torch.optim.Adam(net.parameters(), lr=3e-2)
        for _ in range(20):
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
    return net


def sample_points(dim: int, n: int = 16) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(7)) * 2 - 1


def jacobians(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-point Jacobians ``[n, d, d]`` by torch.func (reverse mode, vectorised)."""
    return vmap(jacrev(net))(x)


def assert_symmetric(J: torch.Tensor) -> None:
    asym = (J - J.transpose(-1, -2)).abs().amax()
    scale = J.abs().amax().clamp_min(1e-300)
    assert asym <= REL_TOL * scale, f"Jacobian asymmetry {asym:.3e} relative to {scale:.3e}"


def assert_psd(J: torch.Tensor) -> None:
    assert_symmetric(J)  # eigvalsh reads one triangle only: check symmetry first
    eig = torch.linalg.eigvalsh(J)
    scale = eig.abs().amax().clamp_min(1e-300)
    assert eig.amin() >= -REL_TOL * scale, f"min eigenvalue {eig.amin():.3e} (scale {scale:.3e})"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("name", GRADIENT_NETS)
def test_jacobian_symmetric(name, dim, stage):
    net = make_net(name, dim, stage)
    assert_symmetric(jacobians(net, sample_points(dim)))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("name", MONOTONE_NETS)
def test_monotone_jacobian_psd(name, dim, stage):
    net = make_net(name, dim, stage)
    assert_psd(jacobians(net, sample_points(dim)))


@pytest.mark.parametrize("stage", STAGES)
def test_symmetry_check_detects_mlp(stage):
    # d = 1 is excluded: every 1x1 Jacobian is symmetric.
    for dim in (2, 7):
        J = jacobians(make_net("mlp", dim, stage), sample_points(dim))
        with pytest.raises(AssertionError, match="asymmetry"):
            assert_symmetric(J)


@pytest.mark.parametrize("name", sorted(n for n in GRADIENT_NETS if not NETS[n].monotone))
def test_psd_check_detects_non_monotone_gradnet(name):
    J = jacobians(make_net(name, 7, "trained"), sample_points(7, 64))
    with pytest.raises(AssertionError, match="min eigenvalue"):
        assert_psd(J)


# ---------------------------------------------------------------------------- parameter counts


def count_c(h: int, d: int, L: int, learnable: bool) -> int:
    """PAPER.md: h·d + 5·L·h + d with the tanh mix (2h per layer), h·d + 3·L·h + d without."""
    return h * d + (5 if learnable else 3) * L * h + d


def count_m(h: int, d: int, K: int, learnable: bool) -> int:
    """PAPER.md: K(h·d + h + 3) + K + d with the softmax mix (2 per module); else K(h·d + h + 1)."""
    return K * (h * d + h + (3 if learnable else 1)) + K + d


@pytest.mark.parametrize("name", ["gradnet-c", "mgradnet-c"])
@pytest.mark.parametrize(("d", "h", "L"), [(2, 93, 4), (32, 629, 4), (3, 5, 1), (7, 11, 3)])
@pytest.mark.parametrize(("activation", "learnable"), [("tanh-mix", True), ("tanh", False)])
def test_cascade_parameter_count(name, d, h, L, activation, learnable):
    net = get_net(name, dim=d, hidden=h, depth=L, activation=activation)
    assert count_parameters(net) == count_c(h, d, L, learnable)


@pytest.mark.parametrize("name", ["gradnet-m", "mgradnet-m"])
@pytest.mark.parametrize(("d", "h", "K"), [(2, 169, 4), (32, 247, 4), (3, 5, 1), (7, 11, 3)])
@pytest.mark.parametrize(("activation", "learnable"), [("softmax-mix", True), ("softmax", False)])
def test_modular_parameter_count(name, d, h, K, activation, learnable):
    net = get_net(name, dim=d, hidden=h, depth=K, activation=activation)
    assert count_parameters(net) == count_m(h, d, K, learnable)


@pytest.mark.parametrize(
    ("name", "kwargs", "published"),
    [
        # PAPER.md table: 2-D tasks (width 7, fixed activations) and PolyMax d = 256.
        ("mgradnet-c", {"dim": 2, "hidden": 7, "activation": "tanh"}, 100),
        ("mgradnet-m", {"dim": 2, "hidden": 7, "activation": "softmax"}, 94),
        ("mgradnet-c", {"dim": 256, "hidden": 948}, 261_904),
        ("mgradnet-m", {"dim": 256, "hidden": 254}, 261_384),
    ],
)
def test_published_parameter_counts(name, kwargs, published):
    with torch.device("meta"):  # shapes only
        assert count_parameters(get_net(name, **kwargs)) == published


# ---------------------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [(), (5,), (3, 4)])
@pytest.mark.parametrize("name", sorted(NETS))
def test_batch_shapes_and_dtypes(name, batch, dtype):
    net = get_net(name, dim=3, hidden=5).to(dtype)
    x = torch.randn(*batch, 3, dtype=dtype)
    y = net(x)
    assert y.shape == x.shape and y.dtype == dtype
    # Batched evaluation equals point-by-point evaluation.
    flat = x.reshape(-1, 3)
    rows = torch.stack([net(p) for p in flat]) if flat.shape[0] else flat
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y.reshape(-1, 3), rows, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", ["scalar-grad", "icnn-grad"])
def test_autograd_nets_train_and_eval(name):
    net = get_net(name, dim=3, hidden=8)
    x = torch.randn(10, 3)
    assert net.potential(x).shape == (10,)
    # Training: the loss reaches the weights through the gradient (double backprop).
    loss = (net(x) ** 2).sum()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # Evaluation under no_grad still works and matches, with no graph attached.
    with torch.no_grad():
        y = net(x)
    assert not y.requires_grad
    torch.testing.assert_close(y, net(x).detach())


# ---------------------------------------------------------------------------- potential


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("name", GRADIENT_NETS)
def test_potential_gradient_matches_net(name, dim, stage):
    net = make_net(name, dim, stage)
    x = sample_points(dim, 8).requires_grad_(True)
    ref = torch.full((dim,), 0.25)
    (grad,) = torch.autograd.grad(potential(net, x, reference=ref).sum(), x)
    err = (grad - net(x)).abs().amax()
    assert err <= 1e-8, f"|∇potential − net| = {err:.2e}"


@pytest.mark.parametrize("name", ["scalar-grad", "icnn-grad"])
def test_potential_matches_known_scalar(name):
    # Independent check of the quadrature: these nets know their potential exactly, up to the
    # constant fixed at ref, and `potential` reads it unless told to integrate.
    net = make_net(name, 3, "trained")
    x, ref = sample_points(3, 8), torch.zeros(3)
    expected = net.potential(x) - net.potential(ref)
    torch.testing.assert_close(potential(net, x, use_exact=False), expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(potential(net, x), expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize("batch", [(), (5,), (3, 4)])
def test_potential_shapes_and_reference(batch):
    net = get_net("gradnet-c", dim=2, hidden=5)
    x = torch.randn(*batch, 2)
    assert potential(net, x).shape == batch
    torch.testing.assert_close(potential(net, x, reference=x), torch.zeros(batch))


def test_potential_refuses_non_gradient():
    with pytest.raises(ValueError, match="is_gradient=False"):
        potential(MLPField(2), torch.zeros(2))
