"""Baselines trained and evaluated exactly like the GradNet models.

- `HNN`: a scalar MLP ``H(q, p)`` whose gradient comes from autograd (Greydanus, Dzamba &
  Yosinski, "Hamiltonian Neural Networks", NeurIPS 2019). Training differentiates through that
  gradient, i.e. a second backward pass: the cost GradNets avoid.
- `NeuralODE`: an unconstrained MLP vector field (Chen et al., "Neural Ordinary Differential
  Equations", NeurIPS 2018). Not Hamiltonian, so it offers only ``time_derivative`` and is
  rolled out with non-symplectic methods only.

Both use the same normalisation as `hamgrad.models.GradNetHamiltonian`, so a comparison
isolates the network structure.
"""

from __future__ import annotations

from typing import Any, ClassVar, final

import torch
from torch import Tensor

from hamgrad.errors import ConfigError
from hamgrad.models.base import LearnedModel, NetHamiltonian, build_net

__all__ = ["HNN", "NeuralODE"]


@final
class HNN(NetHamiltonian):
    """Hamiltonian neural network: ``∇H`` is the autograd gradient of a scalar MLP ``c · F(z)``.

    The field is `hamgrad.nets.ScalarGradient`, whose gradient keeps its graph, so a loss on it
    trains by double backprop (and it also works under ``torch.no_grad``). Its `hamiltonian` is
    the scalar network itself (no quadrature).

    Parameters
    ----------
    dof : int
        Position coordinates; the MLP reads ``2 * dof`` inputs.
    hidden, depth : int
        Width and number of hidden layers of the scalar MLP.
    activation : str or None
        MLP activation (``None``: the net's smooth default).
    normalize : bool
        Fit normalisation on the training split.
    features, space_dim
        Input map, as in `hamgrad.models.GradNetHamiltonian`.
    """

    name = "hnn"
    # Picked on 14 of 18 runs of BENCHMARKS.md §6.5 (0.01 on the rest); at 0.1 its loss is
    # 14 to 160 000 times higher.
    default_lr = 0.03
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 64,
        "depth": 3,
        "activation": None,
        "normalize": True,
        "features": "affine",
        "space_dim": 0,
    }
    allowed_nets: ClassVar[tuple[str, ...]] = ("scalar-grad",)


@final
class NeuralODE(LearnedModel):
    """Unconstrained MLP vector field, scaled like a Hamiltonian model's.

    ``(dq/dt, dp/dt) = ((c/σ_p) ⊙ m_p(z), −(c/σ_q) ⊙ m_q(z))`` with ``m`` an MLP on the
    normalised state: the same units as `GradNetHamiltonian`, without the gradient structure.

    Parameters
    ----------
    dof : int
        Position coordinates.
    hidden, depth, activation, normalize
        As in `HNN`.
    """

    name = "neural-ode"
    default_lr = 0.01  # picked on 15 of 18 runs of BENCHMARKS.md §6.5 (0.03 on the rest)
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 64,
        "depth": 3,
        "activation": None,
        "normalize": True,
    }
    default_integrator = "rk4"

    def __init__(self, dof: int, generator: torch.Generator | None = None, **hparams: Any) -> None:
        super().__init__(dof, generator, **hparams)
        h = self.hparams
        self.net = build_net(
            "mlp", 2 * dof, h["hidden"], h["depth"], h["activation"], ("mlp",), generator
        )

    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(dq/dt, dp/dt)``, shapes ``[..., dof]``."""
        m = self.net(self.normalizer.encode(q, p)) * self.normalizer.gradient_factor()
        return m[..., self.dof :], -m[..., : self.dof]

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Always raises: a NeuralODE learns no Hamiltonian."""
        raise ConfigError(
            f"model {self.name!r} is not Hamiltonian and has no learned energy; expected a "
            "Hamiltonian model (gradnet, separable-gradnet, hnn)"
        )
