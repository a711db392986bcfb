"""Fused forward and analytic backward of the GradNet-C cascade with tanh-affine activations.

The cascade of `hamgrad.nets.GradNetC` with activations ``σ_l(z) = c1_l·tanh z + c2_l·z``
(the learnable ``tanh-mix``, and the fixed ``tanh`` and ``identity``) is one
`torch.autograd.Function` here: a training step then runs a few large kernels per layer instead
of autograd's chain of small ones, and no ``tanh`` kernel at all.

Two rewrites make it cheap without changing the function:

- ``tanh z = 2 σ(2z) − 1`` (σ the logistic sigmoid): on the x86 CPU build of torch 2.13 the
  ``sigmoid`` kernel is ~6× faster per element than ``tanh`` (measured, BENCHMARKS.md §6).
  The recurrence runs on ``y_l = 2 z_l``, so each layer costs one ``sigmoid`` and the factor 2
  folds into the coefficients.
- With ``A_l = α_l c1_l``, ``B_l = α_l c2_l`` and ``u = Wx`` the cascade reads ::

      y_1     = 2β_1 (u + b_1)
      y_{l+1} = 2β_{l+1}(u + b_{l+1}) − 2A_l + 4A_l σ(y_l) + B_l y_l,     l = 1..L−1
      y_top   =                      − 2A_L + 4A_L σ(y_L) + B_L y_L
      f(x)    = ½ Wᵀ y_top + b_out

  (``y_top = 2 α_L σ_L(z_L)``), and its vector-Jacobian product is one backward sweep with
  ``∂y_{l+1}/∂y_l = 4A_l σ(y_l)(1 − σ(y_l)) + B_l`` and batch sums for the parameters.

The intermediate ``y_l`` and ``σ(y_l)`` are returned as (differentiable) outputs of the
Function and saved from there, and the backward is written in differentiable torch
operations, so double backward (``create_graph=True``, `torch.autograd.functional.hessian`)
and the reverse-mode `torch.func` transforms (``vmap``, ``jacrev``, ``grad``) are exact; forward
mode (``jacfwd``, ``torch.func.hessian``) is not implemented. Tests: gradcheck, gradgradcheck and
the reference cascade (tests/test_nets_fused.py).

Matrix products with a skinny factor (``d`` = 2–24 columns) are written as ``(Bᵀ Aᵀ)ᵀ``: for
``[N, h] @ [h, d]`` and ``[h, N] @ [N, d]`` that layout is 2–6× faster in MKL on this machine at
``d ≤ 6`` and within 12 % either way at ``d = 24`` (measured side by side, BENCHMARKS.md §6).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cascade_tanh", "mm_skinny"]


def mm_skinny(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` computed as ``(bᵀ aᵀ)ᵀ`` (the fast layout when ``b`` has few columns)."""
    return (b.t() @ a.t()).t()


def _coefficients(
    alpha: Tensor, c1: Tensor, c2: Tensor, beta: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(4A, B, 2β)`` from the effective scales and activation coefficients, each ``[L, h]``."""
    return 4 * (alpha * c1), alpha * c2, beta + beta


class _CascadeTanh(torch.autograd.Function):
    """The cascade as one autograd node; see the module docstring for the algebra.

    Outputs ``(f, y_top, Y, S)`` with ``Y = [y_1..y_L]`` and ``S = σ(Y)`` stacked on axis 1
    (``[N, L, h]``): the backward reads them, and being outputs they are differentiable, so
    the backward (written in torch operations) can itself be differentiated.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor,
        W: Tensor,
        b: Tensor,
        alpha: Tensor,
        beta: Tensor,
        c1: Tensor,
        c2: Tensor,
        b_out: Tensor,
    ) -> tuple[Tensor, ...]:
        A4, B, beta2 = _coefficients(alpha, c1, c2, beta)
        # The u-independent part of y_l: 2β_l b_l − 2A_{l−1} (no A before the first layer);
        # all layers' 2β_l (u + b_l) − 2A_{l−1} in one op.
        const = torch.addcmul(-0.5 * F.pad(A4[:-1], (0, 0, 1, 0)), beta2, b)
        base = torch.addcmul(const, beta2, F.linear(x, W).unsqueeze(-2))  # [N, L, h]
        depth = b.shape[0]
        y = base[:, 0]
        ys: list[Tensor] = []
        ss: list[Tensor] = []
        for layer in range(depth):
            s = torch.sigmoid(y)
            ys.append(y)
            ss.append(s)
            nxt = base[:, layer + 1] if layer + 1 < depth else -0.5 * A4[layer]
            y = torch.addcmul(torch.addcmul(nxt, A4[layer], s), B[layer], y)
        f = torch.addmm(b_out[:, None], W.t(), y.t(), alpha=0.5).t()
        return f, y, torch.stack(ys, dim=1), torch.stack(ss, dim=1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        ctx.save_for_backward(*inputs[:7], *output[1:])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(
        ctx: Any, g_f: Tensor | None, g_top: Tensor | None, g_Y: Tensor | None, g_S: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, W, b, alpha, beta, c1, c2, y_top, Y, S = ctx.saved_tensors
        _, depth, h = Y.shape
        A4, B, beta2 = _coefficients(alpha, c1, c2, beta)
        # G: gradient with respect to the current y, from y_top down to y_1.
        G = torch.zeros_like(y_top) if g_f is None else F.linear(g_f, 0.5 * W)
        if g_top is not None:
            G = G + g_top
        grads = [G]
        for layer in reversed(range(depth)):
            s = S[:, layer]
            # ∂y_{l+1}/∂y_l = A4_l σ'(y_l) + B_l, and σ' = σ(1 − σ)
            G = torch.addcmul(G * B[layer], A4[layer], torch.ops.aten.sigmoid_backward(G, s))
            if g_Y is not None:
                G = G + g_Y[:, layer]
            if g_S is not None:
                G = G + torch.ops.aten.sigmoid_backward(g_S[:, layer], s)
            grads.append(G)
        every = torch.stack(grads[::-1], dim=1)  # [N, L + 1, h]: ∂/∂y_1 … ∂/∂y_L, ∂/∂y_top
        G_next = every[:, 1:]
        sums = every.sum(0)  # [L + 1, h]
        # y_{l+1} = … + A4_l (σ(y_l) − ½) + B_l y_l
        g_A = 4 * ((G_next * S).sum(0) - 0.5 * sums[1:])
        g_B = (G_next * Y).sum(0)
        # y_l = 2β_l (u + b_l) + …, u = Wx: through β_l, b_l, W and x
        moments = mm_skinny(every.flatten(1).t(), x).unflatten(0, (depth + 1, h))[:depth]
        g_beta = 2 * ((moments * W).sum(-1) + b * sums[:depth])
        g_W = (beta2.unsqueeze(-1) * moments).sum(0)
        g_x = None
        if ctx.needs_input_grad[0]:
            weights = F.pad(beta2.unsqueeze(-1) * W, (0, 0, 0, 0, 0, 1))  # no u in y_top
            g_x = mm_skinny(every.flatten(1), weights.reshape(-1, W.shape[1]))
        g_bout = None
        if g_f is not None:
            g_W = g_W + 0.5 * mm_skinny(y_top.t(), g_f)
            g_bout = g_f.sum(0)
        return (
            g_x,
            g_W,
            beta2 * sums[:depth],
            g_A * c1 + g_B * c2,
            g_beta,
            g_A * alpha,
            g_B * alpha,
            g_bout,
        )


def cascade_tanh(
    x: Tensor,
    W: Tensor,
    b: Tensor,
    alpha: Tensor,
    beta: Tensor,
    c1: Tensor,
    c2: Tensor,
    b_out: Tensor,
) -> Tensor:
    """GradNet-C field ``f(x)`` with activations ``σ_l(z) = c1_l tanh z + c2_l z``.

    ``z_1 = β_1 ⊙ (Wx + b_1)``, ``z_l = β_l ⊙ (Wx + b_l) + α_{l−1} ⊙ σ_{l−1}(z_{l−1})``,
    ``f(x) = Wᵀ(α_L ⊙ σ_L(z_L)) + b_out`` (Chaudhari, Pranav & Moura, "Gradient Networks",
    IEEE TSP 73, 2025, arXiv:2404.07361), computed by one fused autograd node.

    Parameters
    ----------
    x : Tensor, shape ``[N, d]``
        Inputs (one batch axis).
    W : Tensor, shape ``[h, d]``
        The shared ridge directions.
    b, alpha, beta : Tensor, shape ``[L, h]``
        Per-layer biases and the effective (already constrained) scales α, β.
    c1, c2 : Tensor, shape ``[L, h]``
        Activation coefficients of each layer and unit.
    b_out : Tensor, shape ``[d]``
        Output bias.

    Returns
    -------
    Tensor, shape ``[N, d]``
        The field, equal to the plain autograd cascade up to round-off.
    """
    return _CascadeTanh.apply(x, W, b, alpha, beta, c1, c2, b_out)[0]
