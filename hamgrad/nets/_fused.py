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
``[N, h] @ [h, d]`` and ``[h, N] @ [N, d]`` that layout is 2–5× faster in MKL on this machine at
``d ≤ 6`` and never slower (measured side by side, BENCHMARKS.md §6).
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


def _coefficients(alpha: Tensor, c1: Tensor, c2: Tensor, beta: Tensor) -> tuple[Tensor, ...]:
    """``(4A, B, 2β)`` from the effective scales and activation coefficients, each ``[L, h]``."""
    return 4 * (alpha * c1), alpha * c2, beta + beta


class _CascadeTanh(torch.autograd.Function):
    """The cascade as one autograd node; see the module docstring for the algebra."""

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
        # Constant part of y_l: 2β_l b_l − 2A_{l−1} (no A before the first layer).
        const = torch.addcmul(-0.5 * F.pad(A4[:-1], (0, 0, 1, 0)), beta2, b)
        u = F.linear(x, W)
        depth = b.shape[0]
        y = torch.addcmul(const[0], beta2[0], u)
        saved: list[Tensor] = []
        for layer in range(depth):
            s = torch.sigmoid(y)
            saved += [y, s]
            if layer + 1 < depth:
                base = torch.addcmul(const[layer + 1], beta2[layer + 1], u)
            else:
                base = -0.5 * A4[layer]
            y = torch.addcmul(torch.addcmul(base, A4[layer], s), B[layer], y)
        f = torch.addmm(b_out[:, None], W.t(), y.t(), alpha=0.5).t()
        return (f, y, *saved)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        ctx.save_for_backward(*inputs[:7], *output[1:])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, g_f: Tensor | None, g_top: Tensor | None, *g_saved: Tensor | None):
        x, W, b, alpha, beta, c1, c2, y_top, *saved = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        depth = b.shape[0]
        A4, B, beta2 = _coefficients(alpha, c1, c2, beta)
        # G: gradient with respect to the current y (starting at y_top).
        G = torch.zeros_like(y_top) if g_f is None else F.linear(g_f, 0.5 * W)
        if g_top is not None:
            G = G + g_top
        g_A4: list[Tensor] = []
        g_B: list[Tensor] = []
        sums: list[Tensor] = []
        moments: list[Tensor] = []
        sum_next = G.sum(0)
        g_u: Tensor | None = None
        for layer in reversed(range(depth)):
            y, s = saved[2 * layer], saved[2 * layer + 1]
            # y_{l+1} = … + 4A_l σ(y_l) − 2A_l + B_l y_l
            g_A4.insert(0, (G * s).sum(0) - 0.5 * sum_next)
            g_B.insert(0, (G * y).sum(0))
            G = torch.addcmul(G * B[layer], A4[layer], torch.ops.aten.sigmoid_backward(G, s))
            g_y, g_s = g_saved[2 * layer], g_saved[2 * layer + 1]
            if g_y is not None:
                G = G + g_y
            if g_s is not None:
                G = G + torch.ops.aten.sigmoid_backward(g_s, s)
            # y_l = 2β_l (u + b_l) + …: contributions to β_l, b_l, W (through u) and x.
            sum_next = G.sum(0)
            sums.insert(0, sum_next)
            moments.insert(0, mm_skinny(G.t(), x))  # Σ_n G_n x_nᵀ, [h, d]
            if need_x:
                g_u = G * beta2[layer] if g_u is None else torch.addcmul(g_u, G, beta2[layer])
        M, S = torch.stack(moments), torch.stack(sums)
        gA4, gB = torch.stack(g_A4), torch.stack(g_B)
        g_beta = 2 * ((M * W).sum(-1) + b * S)
        g_W = (beta2[:, :, None] * M).sum(0)
        g_bout = None
        if g_f is not None:
            g_W = g_W + 0.5 * mm_skinny(y_top.t(), g_f)
            g_bout = g_f.sum(0)
        g_x = mm_skinny(g_u, W) if g_u is not None else None
        g_A = 4 * gA4
        g_alpha = g_A * c1 + gB * c2
        return g_x, g_W, beta2 * S, g_alpha, g_beta, g_A * alpha, gB * alpha, g_bout


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
