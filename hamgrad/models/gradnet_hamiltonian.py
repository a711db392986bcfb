"""Hamiltonians whose gradient is a gradient network (Chaudhari, Pranav & Moura 2025).

The network outputs ∇H directly, so the vector field ``(∂H/∂p, -∂H/∂q)`` costs one forward pass
and training one backward pass: no derivative of the network is taken (unlike an HNN).

References
----------
S. Chaudhari, S. Pranav, J. M. F. Moura, "Gradient Networks", IEEE Trans. Signal Processing
73:324-339, 2025 (arXiv:2404.07361), section on Hamiltonian dynamics.
"""

from __future__ import annotations

from typing import Any, ClassVar, final

import torch
from torch import Tensor

from hamgrad.models.base import HamiltonianModel, NetHamiltonian, build_net
from hamgrad.nets import NETS, potential

__all__ = ["GRADNETS", "GradNetHamiltonian", "SeparableGradNetHamiltonian", "monotone_gradnets"]

#: The gradient networks of the paper (weight-tied, no autograd inside): the nets a GradNet
#: model accepts. Autograd-based gradients (``scalar-grad``, ``icnn-grad``) would reintroduce
#: double backprop, which is what `hamgrad.models.HNN` is for.
GRADNETS = ("gradnet-c", "gradnet-m", "mgradnet-c", "mgradnet-m")


def monotone_gradnets() -> tuple[str, ...]:
    """The entries of `GRADNETS` whose class declares ``monotone`` (gradients of convex F)."""
    return tuple(n for n in GRADNETS if NETS[n].monotone)


@final
class GradNetHamiltonian(NetHamiltonian):
    """``∇H(x) = (c / σ) ⊙ g((x − μ) / σ)``, ``g`` a gradient network, ``x = (q, p)``.

    Its Jacobian ``∂(∇H)/∂x`` is symmetric, so the vector field is exactly ``J · S`` with ``S``
    symmetric. Rolled out with Gauss–Legendre 4 by default (see `NetHamiltonian`).

    Parameters
    ----------
    dof : int
        Position coordinates; the network acts on ``2 * dof`` inputs.
    net : str
        One of `GRADNETS` (default ``gradnet-c``; Hamiltonians are rarely convex).
    hidden, depth : int
        Width and depth (layers of a cascade, modules of a modular net). Depth 6 by default:
        at 4000 parameters it reached a lower derivative error than shallower cascades of the
        same size on the pendulum and the spring (single-seed trials, BENCHMARKS.md §6.4).
    activation : str or None
        Passed to the net (``None``: the net's own default). Default ``tanh-mix``, the
        cascade's own default, for modular nets too (their own default, one ``softmax-mix``
        pair per module, fitted the pendulum worse in a single-seed trial during issue 11
        whose numbers were not kept). Configs saved with ``None`` still rebuild what they
        trained.
    normalize : bool
        Fit mean / scale / energy scale on the training split (see
        `hamgrad.models.normalization`).
    features : str
        Input map, a name in `hamgrad.models.FEATURES`: ``affine`` (per-coordinate
        normalisation) or ``pairwise`` (pair distances of particles; needs ``space_dim``).
        `hamgrad.training.train` picks ``pairwise`` for particle datasets unless given.
    space_dim : int
        Spatial dimension of one particle (``pairwise`` only; 0 otherwise).
    """

    name = "gradnet"
    # The rate validation picked most often for GradNet-C (11 of 18 runs) and -M (13 of 18)
    # on the six systems of BENCHMARKS.md §6.5 (0.03 on the rest, mostly particle systems);
    # the HNN's 0.03 leaves GradNet-C's loss 5-18x higher on the pendulum and springs.
    default_lr = 0.1
    defaults: ClassVar[dict[str, Any]] = {
        "net": "gradnet-c",
        "hidden": 64,
        "depth": 6,
        "activation": "tanh-mix",
        "normalize": True,
        "features": "affine",
        "space_dim": 0,
    }
    allowed_nets: ClassVar[tuple[str, ...]] = GRADNETS


@final
class SeparableGradNetHamiltonian(HamiltonianModel):
    """``H = V(q) + T(p)``: ``∂H/∂q`` a GradNet of ``q``, ``∂H/∂p`` an mGradNet of ``p``.

    The kinetic energy ``T`` is convex by construction (a monotone gradient network), the
    potential ``V`` is general. ``dH_dq`` reads only ``q`` and ``dH_dp`` only ``p``, so explicit
    splitting methods (leapfrog, Yoshida) apply and conserve a modified energy.

    Parameters
    ----------
    dof : int
        Position coordinates; each net acts on ``dof`` inputs.
    potential_net : str
        One of `GRADNETS` for ∇V (default ``gradnet-c``).
    kinetic_net : str
        A monotone entry of `GRADNETS` for ∇T (default ``mgradnet-m``, which fitted
        quadratic kinetic energies much faster than ``mgradnet-c`` in our runs).
    hidden, depth, activation, normalize, features, space_dim
        As in `GradNetHamiltonian`, shared by both nets (the features of ``q`` feed the
        potential net, those of ``p`` the kinetic net), except that ``activation`` defaults to
        None, each net's own: ``tanh-mix`` for both nets made the three-body fit worse in a
        single-seed trial (numbers not kept; the default's −52.0 dB state error @100 is in
        BENCHMARKS.md §6.4).
    """

    name = "separable-gradnet"
    default_lr = 0.1  # picked on 9 of 15 runs of BENCHMARKS.md §6.5 (0.03 on 5)
    defaults: ClassVar[dict[str, Any]] = {
        "potential_net": "gradnet-c",
        "kinetic_net": "mgradnet-m",
        "hidden": 64,
        "depth": 6,
        "activation": None,
        "normalize": True,
        "features": "affine",
        "space_dim": 0,
    }
    default_integrator = "yoshida4"
    train_integrator = "leapfrog"
    separable = True

    def __init__(self, dof: int, generator: torch.Generator | None = None, **hparams: Any) -> None:
        super().__init__(dof, generator, **hparams)
        h = self.hparams
        self.potential_net = build_net(
            h["potential_net"],
            self.normalizer.q_features,
            h["hidden"],
            h["depth"],
            h["activation"],
            GRADNETS,
            generator,
        )
        self.kinetic_net = build_net(
            h["kinetic_net"],
            dof,
            h["hidden"],
            h["depth"],
            h["activation"],
            monotone_gradnets(),
            generator,
        )

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """∇V(q), shape ``[..., dof]``; does not read ``p``."""
        n = self.normalizer
        return n.chain_q(q, self.potential_net(n.encode_q(q)))

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """∇T(p), shape ``[..., dof]``; does not read ``q``."""
        n = self.normalizer
        return n.chain_p(p, self.kinetic_net(n.encode_p(p)))

    def grad_H(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(∇V(q), ∇T(p))``, shapes ``[..., dof]``."""
        return self.dH_dq(q, p), self.dH_dp(q, p)

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """``c · (V(ξ) + T(η))`` from the two nets' potentials; shape ``[...]``."""
        n = self.normalizer
        return n.energy_scale * (
            potential(self.potential_net, n.encode_q(q))
            + potential(self.kinetic_net, n.encode_p(p))
        )
