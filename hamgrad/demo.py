"""Demo: train a GradNet on a built-in 2-D gradient field and print its test error in dB.

Run ``python -m hamgrad.demo`` (or ``make demo-gradnet``). The target is the gradient of the
non-convex G(x) = ¼ sin(2πx₁) cos(πx₂) + x₁x₂/2 − x₂²/2 on [0,1]² (Chaudhari, Pranav &
Moura, "Gradient Networks", IEEE TSP 2025, arXiv:2404.07361); the error is 10·log10 of the
mean squared error norm on a 50×50 grid. Lower is better; a trained model reaches far below
0 dB, the level of predicting zero-mean noise of the field's size.
"""

from __future__ import annotations

import torch

from hamgrad.nets import GradNetC, count_parameters
from hamgrad.nets.fields import error_db, grad_nonconvex2d


def grid_error_db(net: torch.nn.Module, n_grid: int = 50) -> float:
    """The paper's dB error against the non-convex field on an ``n_grid``² grid of [0,1]²."""
    s = torch.linspace(0.0, 1.0, n_grid)
    x = torch.stack(torch.meshgrid(s, s, indexing="ij"), dim=-1).reshape(-1, 2)
    return error_db(net, x, grad_nonconvex2d(x))


def main(steps: int = 3000, seed: int = 0) -> float:
    """Train ``steps`` Adam steps and print the error in dB before and after; return it.

    A fixed step count, not a time budget, so the result is the same on any machine.
    """
    gen = torch.Generator().manual_seed(seed)
    net = GradNetC(dim=2, hidden=16, depth=4, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    print(f"GradNet-C, {count_parameters(net)} parameters, target: 2-D non-convex gradient field")
    print(f"error before training: {grid_error_db(net):7.2f} dB")
    for _ in range(steps):
        x = torch.rand(256, 2, generator=gen)
        opt.zero_grad()
        ((net(x) - grad_nonconvex2d(x)) ** 2).sum(-1).mean().backward()
        opt.step()
    db = grid_error_db(net)
    print(f"error after {steps} Adam steps: {db:7.2f} dB")
    return db


if __name__ == "__main__":
    main()
