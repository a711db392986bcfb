"""Gradient networks GradNet-C, mGradNet-C, GradNet-M and mGradNet-M.

S. Chaudhari, S. Pranav, J. M. F. Moura, "Gradient Networks", IEEE Transactions on Signal
Processing 73:324–339 (2025), arXiv:2404.07361; precursor "Learning Gradients of Convex Functions
with Monotone Gradient Networks", ICASSP 2023, arXiv:2301.10862. Details the text leaves open
(one scalar pair per softmax mix, most initialisation ranges) follow the authors' public code
(SPronav/GradientNetworks); the code here is our own. Three free-net ranges differ from
theirs: the free cascade's scales α, β are U(−1, 1) (theirs U(−½, ½)), its layer biases
b_2..b_L are ±1/√d like b_1 (theirs ±1/√h), and GradNet-M's module weights α are U(−1, 1)
(theirs N(0, 1)). With their ranges the non-convex 2-D task came out 2.4–2.8 dB worse over
five seeds (BENCHMARKS.md §6.4), so ours stay.

Each net maps ``x`` ``[..., d]`` to ``f(x)`` ``[..., d]`` with ``f = ∇F`` by construction: the
input weight is reused, transposed, at the output, so the Jacobian is ``Σ Wᵀ D W`` with ``D``
symmetric (diagonal for element-wise activations). The monotone versions keep ``D ⪰ 0``
(softplus scales and nondecreasing activations) so ``F`` is convex.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamgrad.nets._base import FieldNet, centred_, resolve_depth, uniform_
from hamgrad.nets._fused import cascade_tanh, mm_skinny
from hamgrad.nets.activations import get_activation

__all__ = ["GradNetC", "GradNetM", "MGradNetC", "MGradNetM"]


def _scale_init(shape: tuple[int, ...], monotone: bool, g: torch.Generator | None) -> Tensor:
    # Monotone nets read scales through softplus: raw U(0, 1) gives scales in (0.69, 1.31).
    # Free nets use raw scales of both signs, U(-1, 1).
    raw = uniform_(shape, 0.0, 1.0, g)
    return raw if monotone else 2.0 * raw - 1.0


class _Cascade(FieldNet):
    """GradNet-C family (abstract): one shared ``W ∈ R^{h×d}``, L layers of per-unit scales.

    ``z_1 = β_1 ⊙ (Wx + b_1)``, ``z_l = β_l ⊙ (Wx + b_l) + α_{l−1} ⊙ σ_{l−1}(z_{l−1})``,
    ``f(x) = Wᵀ(α_L ⊙ σ_L(z_L)) + b_out``. Every ``z_l`` depends on x only through ``u = Wx``
    unit by unit, so ``∂f/∂x = Wᵀ diag(α_L σ_L'(z_L) ∂z_L/∂u) W`` is symmetric. Parameters with the
    ``tanh-mix`` activation: ``h·d + 5·L·h + d`` (with a fixed activation: ``h·d + 3·L·h + d``).

    Parameters
    ----------
    dim : int
        d, the input/output width.
    hidden : int
        h, the number of ridge units.
    depth : int
        L, the number of cascade layers (``layers=`` is a deprecated alias).
    activation : str
        Name in `hamgrad.nets.activations.ACTIVATIONS`; must be element-wise (a vector activation
        breaks the diagonal structure) and, for the monotone net, nondecreasing.
    init_scale : float
        ``W`` is drawn from U(−s/√d, s/√d).
    generator : torch.Generator, optional
        Source of the initial weights (torch's global generator if None).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 4,
        activation: str = "tanh-mix",
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        layers: int | None = None,
    ) -> None:
        super().__init__(dim, hidden, resolve_depth(depth, layers=layers))
        scale = self._check_scale("init_scale", init_scale)
        h, d, L = hidden, dim, self.depth
        self.W = nn.Parameter(centred_((h, d), scale / math.sqrt(d), generator))
        self.b = nn.Parameter(centred_((L, h), 1.0 / math.sqrt(d), generator))
        self.alpha = nn.Parameter(_scale_init((L, h), self.monotone, generator))
        self.beta = nn.Parameter(_scale_init((L, h), self.monotone, generator))
        self.b_out = nn.Parameter(centred_((d,), 1.0 / math.sqrt(h), generator))
        # One bank holds the activations of all L layers (parameters [L, h]).
        self.act = get_activation(
            activation,
            h,
            monotone=self.monotone,
            elementwise=True,
            owner=type(self).__name__,
            copies=L,
        )
        self._accept_per_layer_activation_keys()

    def _scales(self) -> tuple[Tensor, Tensor]:
        if self.monotone:
            return F.softplus(self.alpha), F.softplus(self.beta)
        return self.alpha, self.beta

    def _field(self, x: Tensor) -> Tensor:
        alpha, beta = self._scales()
        form = self.act.tanh_form()
        if form is not None:  # tanh-mix, tanh, identity: the fused kernel
            c1, c2 = (
                torch.as_tensor(c, dtype=x.dtype, device=x.device).expand_as(alpha) for c in form
            )
            flat = x.reshape(-1, self.dim)
            f = cascade_tanh(flat, self.W, self.b, alpha, beta, c1, c2, self.b_out)
            return f.reshape(x.shape)
        u = F.linear(x, self.W)  # Wx, shared by every layer
        # β_l ⊙ (Wx + b_l) for all layers in one op: [..., L, h].
        # (unbind, not indexing: its backward is one stack, not L zero-filled full copies.)
        pre = torch.addcmul(beta * self.b, beta, u.unsqueeze(-2)).unbind(-2)
        z = pre[0]
        for l in range(1, self.depth):
            z = torch.addcmul(pre[l], alpha[l - 1], self.act.at(z, l - 1))
        out = alpha[-1] * self.act.at(z, self.depth - 1)
        return out @ self.W + self.b_out  # Wᵀ(·): the same W, so the Jacobian is symmetric


class GradNetC(_Cascade):
    """GradNet-C: cascade gradient network, ``f = ∇F`` for any smooth ``F = Σ_i G_i(w_iᵀx)``.

    Scales α, β are unconstrained; the default activation is the free ``tanh-mix``.
    See `_Cascade` for the parameters and the construction.
    """

    monotone = False


class MGradNetC(_Cascade):
    """mGradNet-C: monotone cascade, ``f = ∇F`` with F convex (Jacobian symmetric PSD).

    Scales α, β pass through softplus and the activation must be nondecreasing (default: the
    monotone ``tanh-mix``). See `_Cascade` for the parameters and the construction.
    """

    monotone = True


class _Modular(FieldNet):
    """GradNet-M family (abstract): a weighted sum of K modules with their own ``W_k ∈ R^{h×d}``.

    ``module_k(x) = W_kᵀ σ_k(softplus(β_k)·(W_k x + b_k))`` and
    ``f(x) = Σ_k a_k module_k(x) + b_out`` with ``a_k = softplus(α_k)`` (monotone) or ``α_k``
    (general). The Jacobian of module k is
    ``softplus(β_k) W_kᵀ ∇σ_k W_k``, symmetric because σ_k is a gradient map (vector maps such as
    the softmax mix are allowed). Parameters with ``softmax-mix``: ``K(h·d + h + 3) + K + d``
    (with a fixed activation: ``K(h·d + h + 1) + K + d``).

    Parameters
    ----------
    dim : int
        d, the input/output width.
    hidden : int
        h, the width of each module.
    depth : int
        K, the number of modules (``modules=`` is a deprecated alias).
    activation : str
        Name in `hamgrad.nets.activations.ACTIVATIONS` (nondecreasing for the monotone net).
    init_scale : float
        Each ``W_k`` is drawn from U(−s/√d, s/√d).
    generator : torch.Generator, optional
        Source of the initial weights (torch's global generator if None).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 4,
        activation: str = "softmax-mix",
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        modules: int | None = None,
    ) -> None:
        super().__init__(dim, hidden, resolve_depth(depth, modules=modules))
        scale = self._check_scale("init_scale", init_scale)
        h, d, K = hidden, dim, self.depth
        self.W = nn.Parameter(centred_((K, h, d), scale / math.sqrt(d), generator))
        self.b = nn.Parameter(centred_((K, h), 1.0 / math.sqrt(d), generator))
        self.beta = nn.Parameter(uniform_((K,), 0.0, 1.0, generator))
        self.alpha = nn.Parameter(_scale_init((K,), self.monotone, generator))
        self.b_out = nn.Parameter(centred_((d,), 1.0 / math.sqrt(h), generator))
        # One bank holds the activations of all K modules, applied in one call.
        self.act = get_activation(
            activation, h, monotone=self.monotone, owner=type(self).__name__, copies=K
        )
        self._accept_per_layer_activation_keys()

    def _field(self, x: Tensor) -> Tensor:
        K, h, d = self.W.shape
        a = F.softplus(self.alpha) if self.monotone else self.alpha
        scale = F.softplus(self.beta)[:, None]
        flat = x.reshape(-1, d)
        # Every module's W_k x in one matmul: [N, K·h] viewed as [N, K, h].
        u = F.linear(flat, self.W.reshape(K * h, d)).view(-1, K, h)
        s = self.act(torch.addcmul(scale * self.b, scale, u))  # σ_k(softplus(β_k)(W_k x + b_k))
        # Σ_k a_k W_kᵀ s_k: the module weights folded into W, again one matmul.
        weights = (a[:, None, None] * self.W).reshape(K * h, d)
        return (mm_skinny(s.reshape(-1, K * h), weights) + self.b_out).reshape(x.shape)


class GradNetM(_Modular):
    """GradNet-M: modular gradient network with free module weights α_k.

    The default activation is the free ``softmax-mix``. See `_Modular` for the parameters.
    """

    monotone = False


class MGradNetM(_Modular):
    """mGradNet-M: monotone modular gradient network (softplus module weights).

    The activation must be monotone (default: the monotone ``softmax-mix``). See `_Modular`.
    """

    monotone = True
