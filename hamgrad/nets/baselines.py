"""Baselines with the GradNet call signature: ``x [..., d] -> [..., d]``.

- `MLPField`: an unconstrained MLP, not a gradient (its Jacobian is not symmetric).
- `ScalarGradient`: the autograd gradient of a scalar MLP, the approach of Hamiltonian Neural
  Networks (Greydanus, Dzamba & Yosinski, NeurIPS 2019). Training differentiates through that
  gradient, i.e. it needs double backprop.
- `ICNNGradient`: the autograd gradient of an input-convex neural network (Amos, Xu & Kolter,
  "Input Convex Neural Networks", ICML 2017): a monotone baseline.
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamgrad.nets._base import FieldNet, centred_, resolve_depth
from hamgrad.nets.activations import get_activation

__all__ = ["ICNNGradient", "MLPField", "ScalarGradient"]


def _linear(n_in: int, n_out: int, g: torch.Generator | None, bias: bool = True) -> nn.Linear:
    # PyTorch's default Linear init, drawn from an explicit generator.
    layer = nn.Linear(n_in, n_out, bias=bias)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.copy_(centred_((n_out, n_in), bound, g))
        if bias:
            layer.bias.copy_(centred_((n_out,), bound, g))
    return layer


def _mlp(
    n_in: int,
    hidden: int,
    layers: int,
    n_out: int,
    activation: str,
    owner: str,
    g: torch.Generator | None,
    out_bias: bool = True,
) -> nn.Sequential:
    widths = [n_in] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        blocks.append(_linear(a, b, g))
        blocks.append(get_activation(activation, b, monotone=False, elementwise=True, owner=owner))
    blocks.append(_linear(hidden, n_out, g, bias=out_bias))
    return nn.Sequential(*blocks)


class MLPField(FieldNet):
    """Unconstrained MLP ``R^d -> R^d`` with ``layers`` hidden layers of width ``hidden``.

    Not a gradient: no potential exists, and `hamgrad.nets.potential` refuses it.

    Parameters
    ----------
    dim, hidden, depth : int
        Input/output width, hidden width, number of hidden layers (``layers=`` is a deprecated
        alias of ``depth``).
    activation : str
        An element-wise entry of `hamgrad.nets.activations.ACTIVATIONS`.
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    monotone = False
    is_gradient = False

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "tanh",
        generator: torch.Generator | None = None,
        *,
        layers: int | None = None,
    ) -> None:
        super().__init__(dim, hidden, resolve_depth(depth, layers=layers))
        self.net = _mlp(dim, hidden, self.depth, dim, activation, type(self).__name__, generator)

    def _field(self, x: Tensor) -> Tensor:
        return self.net(x)


class _AutogradGradient(FieldNet):
    """A field defined as the autograd gradient of a scalar network, its `potential` (abstract).

    `forward` uses `torch.func.grad`, which composes with everything a caller may wrap around it:
    ordinary backprop to the weights (the gradient keeps its graph, so a loss on it trains the
    net by double backprop), evaluation under `torch.no_grad` (a function transform enables its
    own autograd), and `torch.func` transforms such as `vmap`/`jacrev`.
    """

    def potential(self, x: Tensor) -> Tensor:
        """The scalar potential ``F(x)`` whose gradient the net is: ``[..., dim] -> [...]``.

        Exact (the network itself); `hamgrad.nets.potential` uses it in place of a line
        integral.
        """
        self._check_input(x)
        return self._scalar(x)

    @abstractmethod
    def _scalar(self, x: Tensor) -> Tensor:
        """``F(x)`` for checked ``x`` ``[..., dim]``; returns ``[...]``."""

    def _field(self, x: Tensor) -> Tensor:
        # Samples are independent, so ∇ of the batch sum is the per-sample gradient.
        return torch.func.grad(lambda y: self._scalar(y).sum())(x)


class ScalarGradient(_AutogradGradient):
    """``f = ∇F`` with ``F`` a scalar MLP (the HNN approach; Greydanus et al. 2019).

    Parameters
    ----------
    dim, hidden, depth : int
        Input width, hidden width, number of hidden layers of the scalar MLP (``layers=`` is a
        deprecated alias of ``depth``).
    activation : str
        An element-wise entry of `ACTIVATIONS`; it must be smooth, since training uses its
        second derivative.
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    monotone = False

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "tanh",
        generator: torch.Generator | None = None,
        *,
        layers: int | None = None,
    ) -> None:
        super().__init__(dim, hidden, resolve_depth(depth, layers=layers))
        # No output bias: a constant in F does not change ∇F, so it would be a dead parameter.
        self.net = _mlp(
            dim, hidden, self.depth, 1, activation, type(self).__name__, generator, out_bias=False
        )

    def _scalar(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class ICNNGradient(_AutogradGradient):
    """``f = ∇F`` with ``F`` a fully input-convex network (Amos, Xu & Kolter, ICML 2017).

    ``z_1 = σ(A_1 x + c_1)``, ``z_{k+1} = σ(softplus(U_k) z_k + A_{k+1} x + c_{k+1})``,
    ``F = softplus(u)ᵀ z_L + aᵀx``. With σ convex and nondecreasing and the z-path weights
    nonnegative, F is convex, so f is monotone. Nonnegativity is by softplus, not clipping.

    Parameters
    ----------
    dim, hidden, depth : int
        Input width, hidden width, number of hidden layers L (``layers=`` is a deprecated
        alias of ``depth``).
    activation : str
        A convex nondecreasing element-wise entry of `ACTIVATIONS` (``softplus``; ReLU is excluded
        because its second derivative vanishes, which would stall double-backprop training).
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    monotone = True

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "softplus",
        generator: torch.Generator | None = None,
        *,
        layers: int | None = None,
    ) -> None:
        super().__init__(dim, hidden, resolve_depth(depth, layers=layers))
        h = hidden
        self.A = nn.ModuleList(_linear(dim, h, generator) for _ in range(self.depth))
        # Raw z-path weights near log(1/h): softplus(raw) ≈ 1/h keeps activations O(1) at init.
        raw0 = -math.log(h)
        self.U = nn.ParameterList(
            nn.Parameter(raw0 + centred_((h, h), 0.5, generator)) for _ in range(self.depth - 1)
        )
        self.u = nn.Parameter(raw0 + centred_((h,), 0.5, generator))
        self.a = nn.Parameter(centred_((dim,), 1.0 / math.sqrt(dim), generator))
        self.act = get_activation(
            activation, h, monotone=True, elementwise=True, convex=True, owner=type(self).__name__
        )

    def _scalar(self, x: Tensor) -> Tensor:
        z = self.act(self.A[0](x))
        for U, A in zip(self.U, self.A[1:], strict=True):
            z = self.act(F.linear(z, F.softplus(U)) + A(x))
        return z @ F.softplus(self.u) + x @ self.a
