"""What every learned model shares: hyperparameters as JSON, normalisation, the vector field.

A model is a ``torch.nn.Module`` built from ``(dof, **hparams)`` where every hyperparameter is a
JSON value, so ``model.config()`` plus the ``state_dict`` (which also holds the normalisation
buffers) rebuild it exactly: see `hamgrad.models.model_from_config`.

The classes here are abstract; the registered models (`hamgrad.models.MODELS`) are final.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hamgrad.data import TrajectorySource
from hamgrad.errors import ConfigError, check_int, unknown_name
from hamgrad.integrators import Integrator, get_integrator
from hamgrad.models.normalization import build_features
from hamgrad.nets import NETS, FieldNet, get_net, potential

__all__ = ["HamiltonianModel", "LearnedModel", "NetHamiltonian", "build_net"]


def build_net(
    name: str,
    dim: int,
    hidden: int,
    depth: int,
    activation: str | None,
    allowed: tuple[str, ...],
    generator: torch.Generator | None = None,
) -> FieldNet:
    """Build ``hamgrad.nets`` network ``name`` mapping ``[..., dim] -> [..., dim]``.

    ``activation=None`` keeps the net's own default. ``allowed`` restricts the names a model
    accepts (a non-gradient MLP inside a "Hamiltonian" model would silently break the
    structure). ``generator`` draws the initial weights.
    """
    if name not in allowed or name not in NETS:
        raise unknown_name("net", name, [n for n in allowed if n in NETS])
    kwargs: dict[str, Any] = {} if activation is None else {"activation": activation}
    return get_net(name, dim=dim, hidden=hidden, depth=depth, generator=generator, **kwargs)


def _check_type(model: str, key: str, value: Any, default: Any) -> None:
    """A hyperparameter must have the JSON type of its default (``None`` default: a name).

    ``--param normalize=maybe`` arrives as the string ``"maybe"``; it must be refused, not
    read as true.
    """
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "a number"
    else:  # str, or None for "the net's own choice"
        ok, want = value is None or isinstance(value, str), "a name (or null)"
    if not ok:
        raise ConfigError(f"model {model!r}: hyperparameter {key} must be {want}, got {value!r}")


class LearnedModel(nn.Module, ABC):
    """Base of the models in `hamgrad.models.MODELS`.

    Subclasses set ``name``, ``defaults`` (every hyperparameter and its default, JSON values),
    ``default_integrator`` (long rollouts: evaluation), ``train_integrator`` (the short
    differentiable unrolls of the ``rollout:K`` loss, where a cheap explicit method is enough),
    ``default_lr`` (the Adam learning rate `hamgrad.training.TrainConfig` uses unless given;
    the models' best rates span a factor of 10, BENCHMARKS.md §6.5)
    and implement `time_derivative`.

    Parameters
    ----------
    dof : int
        Number of position coordinates; states are ``q, p`` of shape ``[..., dof]``.
    generator : torch.Generator, optional
        Source of the initial weights, used by subclasses when building their nets (not a
        hyperparameter: a rebuilt model gets its weights from the checkpoint).
    **hparams
        Hyperparameters; names outside ``defaults`` raise `ConfigError`.

    Attributes
    ----------
    is_hamiltonian : bool
        True when the model is a `hamgrad.HamiltonianField` with a learned energy
        (`HamiltonianModel`); False for a plain vector field (the NeuralODE baseline).
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    default_integrator: ClassVar[str]
    train_integrator: ClassVar[str] = "rk4"
    default_lr: ClassVar[float] = 3e-3
    is_hamiltonian: ClassVar[bool] = False

    def __init__(self, dof: int, generator: torch.Generator | None = None, **hparams: Any) -> None:
        super().__init__()
        self.dof = check_int("dof", dof)
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"model {self.name!r} got unknown hyperparameter {unknown[0]!r}; "
                f"expected some of: {', '.join(sorted(self.defaults))}"
            )
        for key, value in hparams.items():
            _check_type(self.name, key, value, self.defaults[key])
        self.hparams: dict[str, Any] = {**self.defaults, **hparams}
        for key in ("hidden", "depth"):
            if key in self.hparams:
                check_int(f"{self.name} {key}", self.hparams[key])
        # The input map: per-coordinate normalisation, or a feature map (``features``).
        self.normalizer = build_features(
            self.hparams.get("features", "affine"), self.dof, self.hparams.get("space_dim", 0)
        )

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description that, with the ``state_dict``, rebuilds the model."""
        return {"name": self.name, "dof": self.dof, "hparams": dict(self.hparams)}

    def fit_normalization(self, split: TrajectorySource, dt: float) -> None:
        """Set normalisation from a training split (trajectories ``[n_traj, n_t, dof]``).

        ``split`` is a `hamgrad.data.Split` or a lazy `hamgrad.data.SplitReader`, read in
        blocks (`Normalizer.fit`): the same blocks for both, so a model fitted on a file in
        memory and one fitted streaming get the same statistics. With ``normalize=False`` the
        model keeps the identity map (nothing is read).
        """
        if self.hparams.get("normalize", False):
            self.normalizer.fit(split, dt)

    def integrator(
        self, method: str | Integrator | None = None, *, training: bool = False, **options: Any
    ) -> Integrator:
        """Resolve the integrator that rolls this model out, checked to apply to it.

        Parameters
        ----------
        method : str or Integrator, optional
            The method; default ``train_integrator`` when ``training`` (short differentiable
            unrolls: explicit methods cost a fraction of an implicit solve) else
            ``default_integrator`` (long rollouts, where symplecticity matters).
        **options
            Method options (``omega``, ``tol``, ...), see `hamgrad.integrators.get_integrator`.

        Raises
        ------
        ConfigError
            Unknown method name or option.
        IntegratorError
            The method does not apply to the model (the message lists those that do).
        """
        if method is None:
            method = self.train_integrator if training else self.default_integrator
        return get_integrator(method, self, **options)

    @abstractmethod
    def time_derivative(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(dq/dt, dp/dt)`` at ``(q, p)``; shapes ``[..., dof]``."""


class HamiltonianModel(LearnedModel):
    """A learned model that is a `hamgrad.HamiltonianField` (abstract).

    Subclasses implement `grad_H`, which returns both halves of ∇H from one network
    evaluation (what training and `time_derivative` use), and `hamiltonian`; `dH_dq` /
    `dH_dp` are the protocol's halves for the integrators.
    """

    separable: ClassVar[bool] = False
    is_hamiltonian: ClassVar[bool] = True

    @abstractmethod
    def grad_H(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(∂H/∂q, ∂H/∂p)`` at ``(q, p)``, shapes ``[..., dof]``."""

    @abstractmethod
    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """Learned energy ``H(q, p)`` up to an additive constant; shape ``[...]``."""

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

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        """Deprecated name of `hamiltonian` (kept for one release)."""
        warnings.warn("energy() is deprecated; use hamiltonian()", DeprecationWarning, stacklevel=2)
        return self.hamiltonian(q, p)


class NetHamiltonian(HamiltonianModel):
    """``∇H(x) = c · Jφ(x)ᵀ g(φ(x))`` for one gradient field ``g`` on the features ``φ(q, p)``
    (abstract).

    ``φ`` is the model's input map (`hamgrad.models.normalization`): by default
    ``φ(x) = (x − μ)/σ``, so ``∇H = (c/σ) ⊙ g(φ(x))``; hyperparameter ``features`` selects
    another (``pairwise`` for particle systems). Either keeps the field exactly Hamiltonian:
    ``H = c · F(φ(x))`` with ``F`` the net's potential. Subclasses choose which nets ``g`` may be
    (``allowed_nets``); a ``net`` hyperparameter selects among them when there is a choice.
    Non-separable, so it is rolled out with implicit (midpoint, Gauss) or Tao methods.
    """

    allowed_nets: ClassVar[tuple[str, ...]]
    # Order 4 (symplectic, symmetric): at the data's dt the order-2 midpoint rule's own error
    # hides the model's (pendulum, dt = 0.1: valid time 8 vs 80 with the same trained model).
    default_integrator = "gauss4"

    def __init__(self, dof: int, generator: torch.Generator | None = None, **hparams: Any) -> None:
        super().__init__(dof, generator, **hparams)
        h = self.hparams
        net = h.get("net", self.allowed_nets[0])
        width = self.normalizer.q_features + dof
        self.net = build_net(
            net, width, h["hidden"], h["depth"], h["activation"], self.allowed_nets, generator
        )

    def grad_H(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(∂H/∂q, ∂H/∂p)`` from one network evaluation; shapes ``[..., dof]``."""
        return self.normalizer.chain(q, p, self.net(self.normalizer.encode(q, p)))

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """``c · (F(φ) − F(0))`` with ``F`` the net's potential, ``φ = φ(q, p)``; ``[...]``."""
        return self.normalizer.energy_scale * potential(self.net, self.normalizer.encode(q, p))
