"""Common base of every net in `hamgrad.nets`: the ``R^d -> R^d`` contract and its checks."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from hamgrad.errors import HamgradError, check_finite, check_int

__all__ = ["FieldNet", "centred_", "resolve_depth", "uniform_"]


def uniform_(
    shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None
) -> Tensor:
    """A tensor of ``shape`` drawn from U(low, high) with ``generator``, in the default dtype.

    Drawn in float64 whatever the default dtype, then cast: the same seed gives the same
    initial weights (up to rounding) in a float32 and a float64 session, so a run does not
    depend on the caller's ``torch.set_default_dtype``.
    """
    draw = torch.empty(shape, dtype=torch.float64).uniform_(low, high, generator=generator)
    return draw.to(torch.get_default_dtype())


def centred_(shape: tuple[int, ...], bound: float, generator: torch.Generator | None) -> Tensor:
    """`uniform_` on the symmetric interval (−bound, bound)."""
    return uniform_(shape, -bound, bound, generator)


def resolve_depth(depth: int, **legacy: int | None) -> int:
    """``depth``, unless a deprecated per-family keyword (``layers=``, ``modules=``) is given.

    Every net takes one depth keyword, ``depth`` (layers of a cascade or an MLP, modules of a
    modular net). The old keywords still work for one release, with a `DeprecationWarning`.
    """
    for name, value in legacy.items():
        if value is not None:
            warnings.warn(f"{name}= is deprecated; use depth=", DeprecationWarning, stacklevel=3)
            return value
    return depth


class FieldNet(nn.Module, ABC):
    """A network ``f: R^dim -> R^dim`` applied over any leading batch shape.

    Subclasses set the class attributes and implement ``_field(x)`` for ``x`` of shape
    ``[..., dim]``; `forward` checks the input first. Every net is sized by the same three
    numbers, declared here once.

    Attributes
    ----------
    dim : int
        Input and output width.
    hidden : int
        Width of the hidden units (ridge units, modules' width, MLP width).
    depth : int
        Layers of a cascade or an MLP, modules of a modular net.
    monotone : bool
        The Jacobian is symmetric positive semidefinite everywhere (f = ∇F with F convex).
    is_gradient : bool
        The Jacobian is symmetric everywhere (f = ∇F for some scalar F).
    """

    monotone: ClassVar[bool] = False
    is_gradient: ClassVar[bool] = True

    def __init__(self, dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)
        self.hidden = check_int("hidden", hidden)
        self.depth = check_int("depth", depth)

    @staticmethod
    def _check_scale(name: str, value: float) -> float:
        return check_finite(name, value, positive=True)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise HamgradError(
                f"{type(self).__name__}: x must be a torch.Tensor, got {type(x).__name__}"
            )
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise HamgradError(
                f"{type(self).__name__}: x must have shape [..., dim] with dim={self.dim}, "
                f"got shape {tuple(x.shape)}"
            )

    def _accept_per_layer_activation_keys(self) -> None:
        """Let `load_state_dict` read checkpoints whose ``act`` was one module per layer.

        Up to version 0.2 the GradNets held a ``ModuleList`` of activations (keys
        ``act.<i>.<name>``, one tensor per layer or module); they now hold one bank
        (``act.<name>``, the same tensors stacked on a leading axis). The hook stacks the old
        keys, so runs saved before still load and give the same field.
        """

        def stack_old_keys(
            module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *args: object
        ) -> None:
            head = f"{prefix}act."
            per_name: dict[str, dict[int, Tensor]] = {}
            for key in [k for k in state_dict if k.startswith(head)]:
                index, _, name = key[len(head) :].partition(".")
                if index.isdigit() and name:
                    per_name.setdefault(name, {})[int(index)] = state_dict.pop(key)
            for name, parts in per_name.items():
                state_dict[head + name] = torch.stack([parts[i] for i in sorted(parts)])

        self.register_load_state_dict_pre_hook(stack_old_keys)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the field at ``x`` ``[..., dim]``; returns ``[..., dim]``."""
        self._check_input(x)
        return self._field(x)

    @abstractmethod
    def _field(self, x: Tensor) -> Tensor:
        """The field at ``x`` ``[..., dim]`` (input already checked)."""
