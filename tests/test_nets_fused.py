"""The fused GradNet-C kernel and the batched activation banks compute the same functions.

`hamgrad.nets._fused` replaces autograd's chain of small kernels by one node with an analytic
backward. A reverse-mode Jacobian (what `tests/test_nets.py` checks for symmetry) comes from
that backward, so here the backward is also checked against the forward by finite differences
(gradcheck, gradgradcheck, and a central-difference Jacobian), and each check is shown to fail
on a deliberately broken variant.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_nets import assert_psd, assert_symmetric, jacobians, make_net, sample_points
from torch.autograd.gradcheck import GradcheckError
from torch.func import jacrev, vmap

from hamgrad.nets import get_net
from hamgrad.nets._fused import _CascadeTanh, cascade_tanh

L, H, D = 3, 5, 4


def _inputs(seed: int = 0, n: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(n, D), (H, D), (L, H), (L, H), (L, H), (L, H), (L, H), (D,)]
    return [torch.randn(s, generator=g).requires_grad_() for s in shapes]


def reference_cascade(x, W, b, alpha, beta, c1, c2, b_out):
    """The cascade of PAPER.md written plainly (torch.tanh, autograd), to compare against."""
    z = beta[0] * (F.linear(x, W) + b[0])
    for layer in range(1, b.shape[0]):
        sigma = c1[layer - 1] * torch.tanh(z) + c2[layer - 1] * z
        z = beta[layer] * (F.linear(x, W) + b[layer]) + alpha[layer - 1] * sigma
    return (alpha[-1] * (c1[-1] * torch.tanh(z) + c2[-1] * z)) @ W + b_out


def test_fused_equals_reference_with_its_gradients():
    args = _inputs()
    torch.testing.assert_close(cascade_tanh(*args), reference_cascade(*args), rtol=0, atol=1e-13)
    weights = torch.randn(6, D, generator=torch.Generator().manual_seed(1))
    fused = torch.autograd.grad((cascade_tanh(*args) * weights).sum(), args)
    plain = torch.autograd.grad((reference_cascade(*args) * weights).sum(), args)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_fused_backward_and_double_backward_match_finite_differences():
    args = _inputs(n=3)
    assert torch.autograd.gradcheck(cascade_tanh, args)
    assert torch.autograd.gradgradcheck(cascade_tanh, args)


class _OffByOnePercent(_CascadeTanh):
    """Broken on purpose: the backward returns ∂f/∂x 1 % too large."""

    @staticmethod
    def backward(ctx, g_f, g_top, *g_saved):
        grads = list(_CascadeTanh.backward(ctx, g_f, g_top, *g_saved))
        grads[0] = grads[0] * 1.01
        return tuple(grads)


def test_gradcheck_detects_a_broken_backward():
    args = _inputs(n=3)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda *a: _OffByOnePercent.apply(*a)[0], args)


def _fd_jacobian(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central-difference Jacobian ``[n, d, d]`` of a row-wise map at points ``x`` ``[n, d]``."""
    cols = []
    for k in range(x.shape[-1]):
        step = torch.zeros_like(x)
        step[:, k] = eps
        cols.append((f(x + step) - f(x - step)) / (2 * eps))
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("name", ["gradnet-c", "mgradnet-c"])
@pytest.mark.parametrize("activation", ["tanh-mix", "tanh", "identity"])
def test_fast_net_forward_jacobian_is_symmetric_and_equals_backward(name, activation):
    g = torch.Generator().manual_seed(5)
    net = get_net(name, dim=D, hidden=H, depth=L, activation=activation, generator=g)
    x = sample_points(D, 8)
    with torch.no_grad():
        fd = _fd_jacobian(net, x)
    assert_symmetric(0.5 * (fd + fd.transpose(-1, -2)))  # the FD estimate itself
    assert (fd - fd.transpose(-1, -2)).abs().amax() < 1e-7
    torch.testing.assert_close(jacobians(net, x), fd, rtol=1e-6, atol=1e-7)


def test_symmetry_check_detects_an_untied_fast_net():
    """Output matrix ≠ input matrix: the same fused kernel, but the Jacobian is not symmetric."""
    net = make_net("gradnet-c", 4, "trained")
    alpha, beta = net._scales()
    c1, c2 = net.act.tanh_form()
    W_out = net.W.detach() + 0.1 * torch.randn(
        net.W.shape, generator=torch.Generator().manual_seed(2)
    )

    def untied(x):
        # out ⊗ W_out instead of W: compute ½ y_top from the fused node, then a different matrix.
        _, y_top, *_ = _CascadeTanh.apply(x[None], net.W, net.b, alpha, beta, c1, c2, net.b_out)
        return (0.5 * y_top @ W_out)[0]

    J = vmap(jacrev(untied))(sample_points(4))
    with pytest.raises(AssertionError, match="asymmetry"):
        assert_symmetric(J)


@pytest.mark.parametrize("stage", ["init", "trained"])
@pytest.mark.parametrize("activation", ["softplus", "sigmoid", "tanh", "identity"])
def test_cascade_with_other_activations_is_monotone(activation, stage):
    """Both cascade paths (fused for tanh / identity, per-layer otherwise) keep the proof."""
    g = torch.Generator().manual_seed(11)
    net = get_net("mgradnet-c", dim=3, hidden=6, depth=3, activation=activation, generator=g)
    if stage == "trained":
        with torch.no_grad():
            for prm in net.parameters():
                prm.add_(0.5 * torch.randn(prm.shape, generator=g))
    assert_psd(jacobians(net, sample_points(3)))


@pytest.mark.parametrize("name", ["gradnet-c", "mgradnet-c", "gradnet-m", "mgradnet-m"])
def test_checkpoints_with_one_activation_module_per_layer_still_load(name):
    """0.2 stored ``act.<i>.a``; the bank stores ``act.a`` stacked. Old state dicts load."""
    net = make_net(name, 3, "trained")
    old = {k: v for k, v in net.state_dict().items() if not k.startswith("act.")}
    for key, value in net.state_dict().items():
        if key.startswith("act."):
            field = key.split(".", 1)[1]
            old.update({f"act.{i}.{field}": part.clone() for i, part in enumerate(value)})
    fresh = get_net(name, dim=3, hidden=6)
    fresh.load_state_dict(old)
    x = sample_points(3)
    torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("activation", ["tanh-mix", "softmax-mix", "tanh", "softmax"])
def test_activation_bank_applies_each_copy(activation):
    from hamgrad.nets import get_activation

    bank = get_activation(activation, 5, monotone=True, copies=3)
    with torch.no_grad():
        for prm in bank.parameters():
            prm.copy_(torch.randn(prm.shape, generator=torch.Generator().manual_seed(3)))
    z = torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(4))
    together = bank(z)
    for i in range(3):
        torch.testing.assert_close(bank.at(z[:, i], i), together[:, i], rtol=0, atol=1e-14)


def test_fused_backward_of_an_empty_batch_is_zero():
    # A DDP rank can hold no sample of a short last batch; its backward must still run.
    # (Failed before the fix: reshape(0, -1) is ambiguous.)
    inputs = _inputs(n=0)
    cascade_tanh(*inputs).sum().backward()
    for tensor in inputs:
        assert tensor.grad is not None and torch.count_nonzero(tensor.grad) == 0
