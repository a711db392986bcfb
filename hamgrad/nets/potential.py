"""Recover the scalar potential F of a gradient network by a line integral.

If ``f = ∇F`` then ``F(x) − F(r) = ∫_0^1 f(r + t(x − r))·(x − r) dt`` (gradient theorem). We
evaluate the integral with n-point Gauss–Legendre quadrature on [0, 1], which is exact for
polynomial integrands of degree ≤ 2n − 1 and converges geometrically for analytic ones
(Trefethen, "Is Gauss quadrature better than Clenshaw–Curtis?", SIAM Review 50, 2008).

Accuracy / cost trade-off: the cost is ``n_nodes`` evaluations of the net per point. Our nets are
analytic (tanh, softplus, softmax…), and the rate is set by how close the activations' complex
singularities come to the segment, i.e. by how steep the net is along it: a steep trained net or
a long segment needs more nodes. Measured on a GradNet-C (h = 16, L = 4) trained 1500 Adam
steps on the 2-D non-convex field of `hamgrad.demo`, 50 points in [0,1]², float64: max
|∇potential − net| = 2.6e-7 with 16 nodes, 4.9e-15 with 32, 6.0e-15 with 64. The default of 64
nodes leaves a wide margin for steeper nets; tests check 1e-8 at initialisation and after
training (tests/test_nets.py). Raise it for long segments or very steep nets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hamgrad.errors import HamgradError, check_int

__all__ = ["gauss_legendre_01", "potential"]


def gauss_legendre_01(n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Gauss–Legendre nodes and weights on [0, 1]: two tensors of shape ``[n]``, weights sum 1."""
    nodes, weights = np.polynomial.legendre.leggauss(n)  # on [-1, 1], computed in float64
    t = torch.as_tensor((nodes + 1.0) / 2.0, dtype=dtype, device=device)
    w = torch.as_tensor(weights / 2.0, dtype=dtype, device=device)
    return t, w


def potential(
    net: torch.nn.Module,
    x: Tensor,
    reference: Tensor | None = None,
    n_nodes: int = 64,
    use_exact: bool = True,
) -> Tensor:
    """The scalar ``F`` with ``∇F = net(x)``, fixed by ``F(reference) = 0``.

    Parameters
    ----------
    net : torch.nn.Module
        A net of `hamgrad.nets` with ``is_gradient = True`` (``net(x)``: ``[..., d] -> [..., d]``).
    x : Tensor
        Points, shape ``[..., d]``.
    reference : Tensor, optional
        Base point of the line integral, broadcastable to ``x`` (default: the origin).
    n_nodes : int
        Gauss–Legendre nodes (net evaluations per point); see the module notes on accuracy.
    use_exact : bool
        Read the scalar directly from a net that holds it (a ``potential(x)`` method, as the
        autograd baselines have) instead of integrating; False forces the quadrature.

    Returns
    -------
    Tensor
        ``F(x) − F(reference)``, shape ``[...]``; differentiable in ``x`` and in the net's weights.

    Raises
    ------
    HamgradError
        If the net is not a gradient network, or shapes do not match.
    """
    if not getattr(net, "is_gradient", False):
        raise HamgradError(
            f"potential: net={type(net).__name__} has is_gradient=False, so no scalar potential "
            "exists; expected a gradient network"
        )
    n = check_int("n_nodes", n_nodes)
    dim = getattr(net, "dim", None)
    if x.ndim == 0 or (dim is not None and x.shape[-1] != dim):
        raise HamgradError(
            f"potential: x must have shape [..., dim] with dim={dim}, got shape {tuple(x.shape)}"
        )
    r = torch.zeros_like(x) if reference is None else torch.as_tensor(reference).to(x)
    try:
        dx = x - r
    except RuntimeError:
        raise HamgradError(
            f"potential: reference of shape {tuple(r.shape)} does not broadcast to x of shape "
            f"{tuple(x.shape)}"
        ) from None
    exact = getattr(net, "potential", None)
    if use_exact and callable(exact):
        return exact(x) - exact(r)
    t, w = gauss_legendre_01(n, x.dtype, x.device)
    lead = (n,) + (1,) * dx.ndim
    points = r + t.view(lead) * dx  # [n, ..., d]: all nodes in one batched call
    integrand = (net(points) * dx).sum(-1)  # [n, ...]
    return torch.tensordot(w, integrand, dims=1)
