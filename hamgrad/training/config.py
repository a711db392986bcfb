"""Training configuration: one dataclass, read from TOML and/or flags, validated in one place.

Precedence: built-in defaults < TOML file < explicit flags. Unknown keys are errors (a typo must
not silently train with a default). The resolved configuration is written to the run's
``config.json`` and is what ``--resume`` continues with.

TOML layout: top-level keys are the fields of `TrainConfig`; the model's hyperparameters go in a
``[model_params]`` table and the rollout integrator's options in ``[integrator_options]``,
e.g.::

    data = "data/pendulum.h5"
    model = "gradnet"
    loss = "rollout:4"
    integrator = "tao2"
    epochs = 300
    [model_params]
    hidden = 32
    [integrator_options]
    omega = 20.0
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from hamgrad._device import DEVICES, DTYPES
from hamgrad.errors import ConfigError, check_finite, check_int, unknown_name
from hamgrad.integrators import get_integrator
from hamgrad.integrators.registry import check_adjoint
from hamgrad.models import MODELS
from hamgrad.run import check_run_name
from hamgrad.training.distributed import BACKENDS
from hamgrad.training.samples import DEFAULT_BUFFER_BYTES

__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainConfig", "fused_optimizer", "parse_loss"]


def fused_optimizer(
    cls: Callable[..., torch.optim.Optimizer],
) -> Callable[..., torch.optim.Optimizer]:
    """A builder of optimizer ``cls`` (Adam, AdamW) that asks for torch's fused kernel.

    ``fused=True`` runs the whole update as one kernel over all parameters (CPU and CUDA, torch
    >= 2.4); on a device or dtype without it, torch refuses and the plain version is built.
    The update is the same algorithm; results agree to round-off, not bit for bit.
    """

    def build(params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
        params = list(params)
        try:
            return cls(params, fused=True, **kwargs)
        except RuntimeError:
            return cls(params, **kwargs)

    name = getattr(cls, "__name__", "optimizer")
    build.__name__ = build.__qualname__ = f"fused_{name}"
    build.__doc__ = f"`torch.optim.{name}` with ``fused=True`` where supported."
    return build


#: Optimizers by name: builders ``(params, lr=, weight_decay=) -> Optimizer``, fused where the
#: device has the kernel (`fused_optimizer`).
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": fused_optimizer(torch.optim.Adam),
    "adamw": fused_optimizer(torch.optim.AdamW),
}


def _constant(optimizer: torch.optim.Optimizer, config: TrainConfig):
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _cosine(optimizer: torch.optim.Optimizer, config: TrainConfig):
    # Decay to 1 % of the initial rate over the planned epochs (Loshchilov & Hutter 2017,
    # "SGDR", without restarts).
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs, eta_min=optimizer.defaults["lr"] * 1e-2
    )


#: Learning-rate schedules, stepped once per epoch.
SCHEDULES = {"constant": _constant, "cosine": _cosine}

# Fields that are TOML tables; flags and the file merge them key by key.
_TABLES = ("model_params", "integrator_options")

_LOSS_RE = re.compile(r"^(auto|derivative|rollout:([1-9][0-9]*))$")


def parse_loss(spec: str) -> tuple[str, int]:
    """Parse ``auto`` / ``derivative`` / ``rollout:K`` into ``(kind, K)`` (K = 0 if unused)."""
    m = _LOSS_RE.match(str(spec))
    if m is None:
        raise ConfigError(
            f"loss must be 'auto', 'derivative' or 'rollout:K' with K >= 1, got {spec!r}"
        )
    if m.group(2) is not None:
        return "rollout", int(m.group(2))
    return m.group(1), 0


@dataclass
class TrainConfig:
    """Everything a training run depends on (JSON-serialisable).

    Attributes
    ----------
    data : str
        HDF5 dataset path (format of `hamgrad.data`); the file must exist.
    model : str
        Name in `hamgrad.models.MODELS`.
    model_params : dict
        Model hyperparameters (see the model class).
    loss : str
        ``derivative`` (match stored dq/dt, dp/dt), ``rollout:K`` (unroll K integrator steps
        from every observed state, match the next K observations) or ``auto`` (derivative when
        the training split stores derivatives, else ``rollout:4``).
    integrator : str or None
        Name of the rollout loss's integrator; ``None`` uses the model's
        ``train_integrator``. Checked against the registry by `validate`.
    integrator_options : dict
        Its options (``omega`` for Tao, ``tol``/``max_iter`` for implicit methods, ...).
    substeps : int
        Integrator steps per observation interval in the rollout loss.
    adjoint : bool
        Differentiate the ``rollout:K`` loss by the discrete adjoint
        (``rollout(..., adjoint=True)``, `hamgrad.integrators.adjoint`): the same gradient as
        backpropagation, in memory that grows as √K instead of K, for about backprop's time
        (0.7-1.4x measured, BENCHMARKS.md §7).
        Needs an integrator that supports it (`hamgrad.integrators.adjoint_methods`).
    optimizer, lr, weight_decay, schedule, grad_clip
        Adam/AdamW, learning rate, weight decay, ``constant``/``cosine`` schedule and maximum
        gradient norm (0 disables clipping). ``lr = None`` (the default) takes the model's
        ``default_lr`` when the config is built, so ``config.json`` records the rate used.
    epochs, batch_size, patience
        Passes over the training split, samples per step, and epochs without a validation
        improvement of at least 0.01 % before stopping (0 disables early stopping).
    dtype, device, seed
        ``float32``/``float64``, ``auto``/``cpu``/``cuda`` and the seed of initialisation and
        shuffling.
    runs_dir, name
        The run goes to ``runs_dir/name`` (``name`` defaults to a timestamp).
    init : str or None
        Run directory (its ``best.pt``) or checkpoint file whose weights and normalisation
        start this run instead of the seeded initialisation; the model name, dof and
        hyperparameters must match. A curriculum for long horizons: train ``rollout:10``,
        then ``rollout:1000`` from there (a long-horizon loss from random weights sees phase
        errors of many periods and gives little usable gradient).
    threads : int
        CPU threads for torch (0 keeps torch's default; see `hamgrad._device.set_threads` for
        why the default is 1).
    compile : bool
        Compile the loss and its backward with `torch.compile` (`hamgrad.training.step`);
        the compile time is recorded in the first epoch's metrics row (``compile_s``).
    buffer_mib : float
        MiB of training samples held in memory at once: a split that fits is read once and
        kept, a larger one is streamed from the file in blocks of trajectories, shuffled
        block-wise and within buffers of `hamgrad.training.samples.BLOCKS_PER_BUFFER`
        blocks. Part of the run's definition (it sets the sample order), not a cache knob.
    backend : str
        ``torch.distributed`` backend under ``torchrun``: ``auto`` (NCCL for CUDA, gloo for
        CPU), ``gloo`` or ``nccl``. Unused by a single process.
    dist_timeout : float
        Seconds a process waits for the others in a collective (and in the rendezvous) before
        it gives up; bounds how long the others hang when one stops responding.
    """

    data: str | None = None
    model: str = "gradnet"
    model_params: dict[str, Any] = field(default_factory=dict)
    loss: str = "auto"
    integrator: str | None = None
    integrator_options: dict[str, Any] = field(default_factory=dict)
    substeps: int = 1
    adjoint: bool = False
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    schedule: str = "cosine"
    grad_clip: float = 10.0
    epochs: int = 150
    batch_size: int = 256
    patience: int = 0
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 0
    runs_dir: str = "runs"
    name: str | None = None
    init: str | None = None
    threads: int = 1
    compile: bool = False
    buffer_mib: float = DEFAULT_BUFFER_BYTES / 2**20
    backend: str = "auto"
    dist_timeout: float = 600.0

    def __post_init__(self) -> None:
        # The model's own rate unless one was given (an unknown model is reported by validate).
        if self.lr is None and isinstance(self.model, str) and self.model in MODELS:
            self.lr = MODELS[self.model].default_lr

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys raise `ConfigError` naming ``source``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {unknown[0]!r}; expected some of: "
                f"{', '.join(sorted(names))}"
            )
        config = cls(**dict(values))
        config.validate()
        return config

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike,
        overrides: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> TrainConfig:
        """Read a TOML file between ``defaults`` (below it) and ``overrides`` (flags given
        explicitly, above it); validate."""
        try:
            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"config file {path}: not valid TOML ({exc}); expected UTF-8 TOML"
            ) from None
        return cls.from_layers(
            defaults or {}, values, overrides or {}, source=f"config file {path}"
        )

    @classmethod
    def from_layers(cls, *layers: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Merge mappings, later ones winning; tables (``model_params``...) merge key by key."""
        merged: dict[str, Any] = {}
        for layer in layers:
            for key, value in layer.items():
                if key in _TABLES:
                    if not isinstance(value, dict):
                        raise ConfigError(f"{source}: {key} must be a table, got {value!r}")
                    merged[key] = {**merged.get(key, {}), **value}
                else:
                    merged[key] = value
        return cls.from_mapping(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy."""
        return dataclasses.asdict(self)

    def changed_fields(self) -> list[str]:
        """Names of the fields that differ from the defaults, sorted (``lr`` against the
        model's own default rate)."""
        default, per_model = type(self)(), type(self)(model=self.model)
        return sorted(
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(per_model if f.name == "lr" else default, f.name)
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raise `ConfigError` naming the first bad one.

        An integrator name or option it cannot resolve, or one without an adjoint when
        ``adjoint`` is set, raises `hamgrad.errors.IntegratorError` (from the registry).
        """
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError(f"data must be the path of an HDF5 dataset, got {self.data!r}")
        for key, registry in (
            ("model", MODELS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("dtype", DTYPES),
        ):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in registry:
                raise unknown_name(key, str(value), registry)
        if not isinstance(self.runs_dir, str) or not self.runs_dir:
            raise ConfigError(f"runs_dir must be a directory path, got {self.runs_dir!r}")
        for table in _TABLES:
            if not isinstance(getattr(self, table), dict):
                raise ConfigError(f"{table} must be a table, got {getattr(self, table)!r}")
        parse_loss(self.loss)
        if self.integrator is not None and not isinstance(self.integrator, str):
            raise ConfigError(f"integrator must be a name, got {self.integrator!r}")
        if self.integrator is not None:
            get_integrator(self.integrator, **self.integrator_options)  # name and options
        elif self.integrator_options:
            raise ConfigError(
                f"integrator_options {self.integrator_options} given without "
                "an integrator; expected integrator = NAME too"
            )
        check_int("substeps", self.substeps)
        self._validate_adjoint()
        check_finite("lr", self.lr, positive=True)
        if check_finite("weight_decay", self.weight_decay) < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if check_finite("grad_clip", self.grad_clip) < 0:
            raise ConfigError(f"grad_clip must be >= 0 (0 disables), got {self.grad_clip!r}")
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        check_int("patience", self.patience, minimum=0)
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        check_int("seed", self.seed, minimum=0)
        check_int("threads", self.threads, minimum=0)
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be true or false, got {self.compile!r}")
        check_finite("buffer_mib", self.buffer_mib, positive=True)
        if self.backend not in BACKENDS:
            raise unknown_name("backend", str(self.backend), BACKENDS)
        check_finite("dist_timeout", self.dist_timeout, positive=True)
        if self.name is not None:
            check_run_name(self.name)
        if self.init is not None and (not isinstance(self.init, str) or not self.init):
            raise ConfigError(f"init must be a run directory or checkpoint path, got {self.init!r}")

    def _validate_adjoint(self) -> None:
        if not isinstance(self.adjoint, bool):
            raise ConfigError(f"adjoint must be true or false, got {self.adjoint!r}")
        if not self.adjoint:
            return
        if parse_loss(self.loss)[0] == "derivative":
            raise ConfigError(
                "adjoint = true differentiates a rollout:K loss, got loss 'derivative'; "
                "expected loss = 'rollout:K' or adjoint = false"
            )
        if self.integrator is not None:
            check_adjoint(get_integrator(self.integrator, **self.integrator_options))
