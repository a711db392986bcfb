"""Learned Hamiltonian models: each a `hamgrad.HamiltonianField` (except the NeuralODE baseline).

Registry `MODELS` (API): name -> class. Every model is built from ``(dof, **hparams)`` with JSON
hyperparameters; ``model.config()`` and the ``state_dict`` rebuild it (`model_from_config`).

| name | class | structure | default rollout |
|---|---|---|---|
| ``gradnet`` | `GradNetHamiltonian` | ∇H = GradNet(q, p) | Gauss–Legendre 4 |
| ``separable-gradnet`` | `SeparableGradNetHamiltonian` | ∇V = GradNet, ∇T = mGradNet | Yoshida 4 |
| ``hnn`` | `HNN` | ∇H = autograd of a scalar MLP | Gauss–Legendre 4 |
| ``neural-ode`` | `NeuralODE` | unconstrained MLP vector field | RK4 |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from hamgrad.errors import CheckpointError, ConfigError, unknown_name
from hamgrad.models.base import HamiltonianModel, LearnedModel, NetHamiltonian
from hamgrad.models.baselines import HNN, NeuralODE
from hamgrad.models.gradnet_hamiltonian import GradNetHamiltonian, SeparableGradNetHamiltonian
from hamgrad.models.normalization import (
    FEATURES,
    Normalizer,
    PairwiseNormalizer,
    features_for_system,
    phase_statistics,
)

__all__ = [
    "FEATURES",
    "HNN",
    "MODELS",
    "GradNetHamiltonian",
    "HamiltonianModel",
    "LearnedModel",
    "NetHamiltonian",
    "NeuralODE",
    "Normalizer",
    "PairwiseNormalizer",
    "SeparableGradNetHamiltonian",
    "features_for_system",
    "get_model",
    "hparams_for_data",
    "model_from_config",
    "phase_statistics",
    "register_model",
]

MODELS: dict[str, type[LearnedModel]] = {
    cls.name: cls for cls in (GradNetHamiltonian, SeparableGradNetHamiltonian, HNN, NeuralODE)
}


def get_model(
    name: str, dof: int, generator: torch.Generator | None = None, **hparams: Any
) -> LearnedModel:
    """Build registered model ``name`` for ``dof`` position coordinates.

    ``generator`` draws the initial weights; ``hparams`` are the model's hyperparameters.

    Raises
    ------
    ConfigError
        Unknown name (message lists the valid ones) or unknown / invalid hyperparameter.
    """
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name](dof, generator, **hparams)


def hparams_for_data(
    name: str, hparams: Mapping[str, Any], system: str | None, system_params: Mapping[str, Any]
) -> dict[str, Any]:
    """``hparams`` with the feature map chosen for data of ``system`` where the user chose none.

    For a model with a ``features`` hyperparameter that is absent or ``"auto"``, fill in
    `features_for_system` (``pairwise`` for particle systems, else ``affine``); anything else
    is returned as given. `hamgrad.training.train` calls this with the dataset's ``system``
    attributes, so ``model.config()`` records the resolved, concrete choice.
    """
    out = dict(hparams)
    cls = MODELS.get(name)
    if cls is not None and "features" in cls.defaults and out.get("features", "auto") == "auto":
        out.pop("features", None)
        out = {**features_for_system(system, system_params), **out}
    return out


def register_model(cls: type[LearnedModel]) -> type[LearnedModel]:
    """Add a model class to `MODELS` under its ``name`` (usable as a class decorator).

    The extension point for new models (see docs/extending.md): once registered, a model is
    built by `get_model`, trained by `hamgrad.training.train` and rebuilt from checkpoints.

    Raises
    ------
    ConfigError
        Not a `LearnedModel` subclass, no ``name``, or the name is taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, LearnedModel)):
        raise ConfigError(f"register_model needs a LearnedModel subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model class {cls.__name__} must set a class attribute name")
    if name in MODELS:
        raise ConfigError(f"model name {name!r} is taken; expected a new name")
    MODELS[name] = cls
    return cls


def model_from_config(config: Mapping[str, Any]) -> LearnedModel:
    """Rebuild an (untrained) model from ``model.config()``; then load its ``state_dict``.

    Raises
    ------
    CheckpointError
        The config lacks ``name`` / ``dof`` / ``hparams`` or names an unknown model.
    """
    missing = [k for k in ("name", "dof", "hparams") if k not in config]
    if missing:
        raise CheckpointError(
            f"model config lacks field {missing[0]!r}; expected name, dof, "
            f"hparams, got keys {sorted(config)}"
        )
    if config["name"] not in MODELS:
        raise CheckpointError(
            f"checkpoint names unknown model {config['name']!r}; expected one "
            f"of: {', '.join(sorted(MODELS))}"
        )
    hparams = dict(config["hparams"])
    if config["name"] == "hnn" and hparams.get("net") == "scalar-grad":
        # Version 0.1 recorded HNN's fixed net as a (dead) hyperparameter; its checkpoints
        # still load. Dropped in 0.3.
        del hparams["net"]
    return get_model(config["name"], int(config["dof"]), **hparams)
