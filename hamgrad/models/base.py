"""What every learned model shares: hyperparameters as JSON, normalisation, the vector field.

A model is a ``torch.nn.Module`` built from ``(dof, **hparams)`` where every hyperparameter is a
JSON value, so ``model.config()`` plus the ``state_dict`` (which also holds the normalisation
buffers) rebuild it exactly: see `hamgrad.models.model_from_config`.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from hamgrad.errors import ConfigError, HamgradError, check_int, unknown_name
from hamgrad.models.normalization import Normalizer, phase_statistics

__all__ = ["HamiltonianModel", "LearnedModel", "build_net", "no_energy"]

# Constructor keyword that sets a net's depth: cascades count layers, modular nets count modules.
_DEPTH_KEYWORDS = ("layers", "modules")


def build_net(name: str, dim: int, hidden: int, depth: int, activation: str | None,
              allowed: tuple[str, ...], generator: torch.Generator | None = None) -> nn.Module:
    """Build ``hamgrad.nets`` network ``name`` mapping ``[..., dim] -> [..., dim]``.

    ``depth`` goes to whichever of ``layers`` / ``modules`` the constructor takes, so one
    hyperparameter serves cascade and modular nets alike; ``activation=None`` keeps the net's
    own default. ``allowed`` restricts the names a model accepts (a non-gradient MLP inside a
    "Hamiltonian" model would silently break the structure). ``generator`` draws the initial
    weights.
    """
    from hamgrad.nets import NETS, get_net

    if name not in allowed or name not in NETS:
        raise unknown_name("net", name, [n for n in allowed if n in NETS])
    params = inspect.signature(NETS[name]).parameters
    kwargs: dict[str, Any] = {"dim": dim, "hidden": hidden, "generator": generator}
    depth_kw = next((k for k in _DEPTH_KEYWORDS if k in params), None)
    if depth_kw is not None:
        kwargs[depth_kw] = depth
    if activation is not None:
        kwargs["activation"] = activation
    return get_net(name, **kwargs)


class LearnedModel(nn.Module):
    """Base of the models in `hamgrad.models.MODELS`.

    Subclasses set ``name``, ``defaults`` (every hyperparameter and its default, JSON values),
    ``default_integrator`` (long rollouts: evaluation), ``train_integrator`` (the short
    differentiable unrolls of the ``rollout:K`` loss, where a cheap explicit method is enough)
    and implement `time_derivative` and `energy`.

    Parameters
    ----------
    dof : int
        Number of position coordinates; states are ``q, p`` of shape ``[..., dof]``.
    generator : torch.Generator, optional
        Source of the initial weights, used by subclasses when building their nets (not a
        hyperparameter: a rebuilt model gets its weights from the checkpoint).
    **hparams
        Hyperparameters; names outside ``defaults`` raise `ConfigError`.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    default_integrator: ClassVar[str]
    train_integrator: ClassVar[str] = "rk4"
    #: True when the model is a HamiltonianField (has dH_dq / dH_dp and a learned energy).
    hamiltonian: ClassVar[bool] = True

    def __init__(self, dof: int, generator: torch.Generator | None = None,
                 **hparams: Any) -> None:
        super().__init__()
        self.dof = check_int("dof", dof)
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ConfigError(f"model {self.name!r} got unknown hyperparameter {unknown[0]!r}; "
                              f"expected some of: {', '.join(sorted(self.defaults))}")
        self.hparams: dict[str, Any] = {**self.defaults, **hparams}
        if "hidden" in self.hparams:
            check_int(f"{self.name} hidden", self.hparams["hidden"])
        if "depth" in self.hparams:
            check_int(f"{self.name} depth", self.hparams["depth"])
        self.normalizer = Normalizer(self.dof)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description that, with the ``state_dict``, rebuilds the model."""
        return {"name": self.name, "dof": self.dof, "hparams": dict(self.hparams)}

    def fit_normalization(self, q: np.ndarray, p: np.ndarray, dt: float,
                          dq_dt: np.ndarray | None = None,
                          dp_dt: np.ndarray | None = None) -> None:
        """Set normalisation from training trajectories ``[n_traj, n_t, dof]`` if enabled.

        With ``normalize=False`` the model keeps the identity map (statistics ignored).
        """
        if not self.hparams.get("normalize", False):
            return
        mean, scale, energy_scale = phase_statistics(q, p, dt, dq_dt, dp_dt)
        self.normalizer.set_statistics(torch.from_numpy(mean), torch.from_numpy(scale),
                                       energy_scale)

    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(dq/dt, dp/dt)`` at ``(q, p)``; shapes ``[..., dof]``."""
        raise NotImplementedError

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        """Learned energy ``H(q, p)`` up to an additive constant; shape ``[...]``."""
        raise NotImplementedError


class HamiltonianModel(LearnedModel):
    """A learned model that is a `hamgrad.HamiltonianField`.

    Subclasses implement `grad_H`, which returns both halves of ∇H from one network
    evaluation (what training and `time_derivative` use); `dH_dq` / `dH_dp` are the protocol's
    halves for the integrators.
    """

    separable: bool = False

    def grad_H(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(∂H/∂q, ∂H/∂p)`` at ``(q, p)``, shapes ``[..., dof]``."""
        raise NotImplementedError

    def dH_dq(self, q: Tensor, p: Tensor) -> Tensor:
        """∂H/∂q, shape ``[..., dof]``."""
        return self.grad_H(q, p)[0]

    def dH_dp(self, q: Tensor, p: Tensor) -> Tensor:
        """∂H/∂p, shape ``[..., dof]``."""
        return self.grad_H(q, p)[1]

    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """Hamilton's equations ``(∂H/∂p, -∂H/∂q)``, shapes ``[..., dof]``."""
        dq, dp = self.grad_H(q, p)
        return dp, -dq


def no_energy(model: LearnedModel) -> HamgradError:
    """Error for asking a non-Hamiltonian model for its energy."""
    return ConfigError(f"model {model.name!r} is not Hamiltonian and has no learned energy; "
                       "expected a Hamiltonian model (gradnet, separable-gradnet, hnn)")
