"""Registry of built-in systems and the one way to build a system from a name or import path."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import TYPE_CHECKING, Any

from hamgrad.errors import ConfigError, DatasetError, HamgradError, unknown_name
from simulators.base import System
from simulators.double_pendulum import DoublePendulum
from simulators.nbody import Kepler, NBody, ThreeBody
from simulators.pendulum import Pendulum
from simulators.spring import Spring, SpringChain

if TYPE_CHECKING:
    from hamgrad.data import Dataset

__all__ = ["ALIASES", "SYSTEMS", "get_system", "system_from_dataset"]

#: Built-in systems by canonical registry name (aliases live in `ALIASES`, never here).
SYSTEMS: dict[str, type[System]] = {
    cls.name: cls
    for cls in (Pendulum, Spring, SpringChain, DoublePendulum, Kepler, ThreeBody, NBody)
}
#: Alternative names accepted by `get_system`, resolved at lookup: alias -> canonical name.
ALIASES: dict[str, str] = {"two-body": "kepler"}


def _import_class(spec: str) -> type[System]:
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"system must be a registry name or 'module:Class', got {spec!r}")
    # `hamgrad simulate my_module:MySystem` should find my_module.py in the working directory,
    # as `python -m` would; console scripts do not put it on sys.path themselves.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for system {spec!r}: {exc}"
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, System)):
        raise ConfigError(
            f"system {spec!r} must name a subclass of simulators.System, got "
            f"{type(cls).__name__ if cls is None else cls!r}"
        )
    return cls


def _registered_class(name: str) -> type[System]:
    """The built-in class of a canonical name or alias; never imports anything."""
    canonical = ALIASES.get(name, name)
    if canonical not in SYSTEMS:
        raise unknown_name("system", name, [*SYSTEMS, *ALIASES])
    return SYSTEMS[canonical]


def _build(cls: type[System], spec: str, params: dict[str, Any]) -> System:
    signature = inspect.signature(cls).parameters
    accepted = [
        n
        for n, prm in signature.items()
        if prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)
    ]
    takes_any = any(prm.kind is prm.VAR_KEYWORD for prm in signature.values())
    for key in params:
        if key not in accepted and not takes_any:
            raise ConfigError(
                f"unknown parameter {key!r} for system {spec!r}; expected one "
                f"of: {', '.join(accepted) or '(none)'}"
            )
    try:
        return cls(**params)
    except HamgradError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid parameters for system {spec!r}: {exc}") from None


def get_system(spec: str, **params: Any) -> System:
    """Build a system from a registry name, an alias or ``"module:Class"``, with parameters.

    A ``"module:Class"`` spec imports that module: this function is for specs the user typed
    (``hamgrad simulate my_module:MySystem``) or wrote in code. A spec read from a file goes
    through `system_from_dataset`, which imports nothing unless the caller trusts it.

    Parameters
    ----------
    spec : str
        One of `SYSTEMS` (``"pendulum"``, ...), one of `ALIASES` (``"two-body"``) or
        ``"module:Class"`` naming a subclass of `simulators.System` (the module is looked up
        on ``sys.path`` and in the current directory).
    **params
        Constructor arguments (the dataclass fields) of the system.

    Raises
    ------
    ConfigError
        Unknown name (listing the canonical names and aliases), unknown parameter (listing
        the accepted ones) or an invalid parameter value.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"system must be a string, got {spec!r}")
    cls = _import_class(spec) if ":" in spec else _registered_class(spec)
    return _build(cls, spec, params)


def system_from_dataset(dataset: Dataset, *, trusted_system: str | None = None) -> System:
    """Rebuild the system recorded in a dataset's ``system`` / ``system_params`` attributes.

    A dataset is data, never a reason to run code: a built-in system is looked up by its
    registry name only, and a ``"module:Class"`` recorded in the file is imported only when
    the caller trusts exactly that spec (on the command line, ``--system module:Class``).

    Parameters
    ----------
    dataset : hamgrad.data.Dataset
        A loaded dataset.
    trusted_system : str, optional
        The system the caller vouches for: the ``"module:Class"`` it allows to be imported, or
        a registry name. It must equal the file's ``system`` attribute; a file that names no
        system is read as made by it (with the file's ``system_params``, if any).

    Returns
    -------
    System
        Built with the file's ``system_params``; its ``dof`` equals the file's.

    Raises
    ------
    DatasetError
        The file records no system (and none is trusted), names code that is not trusted,
        names another system than the trusted one, the system cannot be built, or its
        ``dof`` differs from the file's.
    """
    if trusted_system is not None and not isinstance(trusted_system, str):
        raise ConfigError(f"trusted_system must be a string, got {trusted_system!r}")
    recorded = dataset.system
    if not recorded and trusted_system is None:
        raise DatasetError(
            f"{dataset.path}: attribute 'system' is absent; the dataset does "
            "not say which system made it"
        )
    if (
        recorded
        and trusted_system is not None
        and ALIASES.get(trusted_system, trusted_system) != ALIASES.get(recorded, recorded)
    ):
        raise DatasetError(
            f"{dataset.path}: attribute 'system' is {recorded!r} but the trusted "
            f"system is {trusted_system!r}; expected the same spec"
        )
    spec = recorded or trusted_system or ""
    if ":" in spec and trusted_system != spec:
        raise DatasetError(
            f"{dataset.path}: attribute 'system' is {spec!r}, a module to "
            "import, and a file alone is never trusted to run code; pass "
            f"--system {spec} on the command line to trust it"
        )
    try:
        system = get_system(spec, **dataset.system_params)
    except ConfigError as exc:
        raise DatasetError(f"{dataset.path}: attribute 'system': {exc}") from None
    if system.dof != dataset.dof:
        raise DatasetError(
            f"{dataset.path}: attribute 'dof' is {dataset.dof} but system "
            f"{spec!r} has dof {system.dof}"
        )
    return system
