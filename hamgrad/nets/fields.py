"""The 2-D gradient fields of the GradNet paper's benchmarks and the paper's dB error.

Chaudhari, Pranav & Moura, "Gradient Networks", IEEE TSP 73 (2025), Sec. on experiments; the
targets are used by `hamgrad.demo` and ``scripts/gradient_fields.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hamgrad.db import decibels

__all__ = ["error_db", "grad_convex2d", "grad_nonconvex2d"]


def grad_convex2d(x: Tensor) -> Tensor:
    """∇F for F = x₁⁴ + x₁²/2 + x₁x₂/2 + 3x₂²/2 − x₂³/3 (convex on [0,1]²); ``[..., 2]``."""
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([4 * x1**3 + x1 + 0.5 * x2, 0.5 * x1 + 3 * x2 - x2**2], dim=-1)


def grad_nonconvex2d(x: Tensor) -> Tensor:
    """∇G for G = ¼ sin(2πx₁) cos(πx₂) + x₁x₂/2 − x₂²/2; ``[..., 2]``."""
    x1, x2 = x[..., 0], x[..., 1]
    pi = math.pi
    g1 = 0.5 * pi * torch.cos(2 * pi * x1) * torch.cos(pi * x2) + 0.5 * x2
    g2 = -0.25 * pi * torch.sin(2 * pi * x1) * torch.sin(pi * x2) + 0.5 * x1 - x2
    return torch.stack([g1, g2], dim=-1)


def error_db(net: nn.Module, x: Tensor, target: Tensor, chunk: int = 2000) -> float:
    """``10·log10(mean_i ‖net(x_i) − target_i‖²)``, squared norm summed over outputs.

    ``x``, ``target``: ``[n, d]``; evaluated in chunks of ``chunk`` points without gradients.
    """
    sq = []
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            sq.append(((net(x[i : i + chunk]) - target[i : i + chunk]) ** 2).sum(-1))
    return decibels(float(torch.cat(sq).mean()))
