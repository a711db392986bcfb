"""Activations for gradient networks, and their registry `ACTIVATIONS`.

A GradNet stays a gradient map only if its activation is itself a gradient map: every
element-wise map is (it is the derivative of its antiderivative), and a vector map such as
softmax is when it equals ∇φ for a scalar φ (softmax = ∇ logsumexp). It is *monotone*
(the gradient of a convex φ) when the element-wise map is nondecreasing, or φ is convex.

Each registry entry says which of these properties it has, so a net can refuse an activation
that would break its guarantee (a monotone net with ``sin``, a cascade with ``softmax``).

The two learnable activations follow Chaudhari, Pranav & Moura, "Gradient Networks",
IEEE TSP 73 (2025), arXiv:2404.07361, Sec. on GradNet-C/M and their public code
(SPronav/GradientNetworks):

- ``tanh-mix``: σ(z) = a·tanh z + b·(z − tanh z), per unit. Monotone form: a, b = softplus(·) ≥ 0,
  so σ' = a·sech²z + b·tanh²z > 0 and σ grows linearly (quadratic potentials stay reachable).
  Free form: σ(z) = a·tanh z − b·(z − tanh z) with a, b unconstrained.
- ``softmax-mix``: σ(z) = a·softmax(z) − b·softmin(z) = ∇[a·LSE(z) + b·LSE(−z)], one scalar a, b
  per activation; monotone when a, b = softplus(·) ≥ 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamgrad.errors import ConfigError, check_int, unknown_name

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ActivationSpec",
    "Elementwise",
    "SoftmaxMix",
    "TanhMix",
    "VectorSoftmax",
    "get_activation",
    "tanh_via_sigmoid",
]


def _identity(z: Tensor) -> Tensor:
    return z


def tanh_via_sigmoid(z: Tensor) -> Tensor:
    """``tanh z`` as ``2 σ(2z) − 1``: the same function, several times cheaper per element on CPU.

    The ``sigmoid`` kernel of the x86 CPU build of torch 2.13 is ~6× faster than ``tanh``
    (BENCHMARKS.md §6); both are exact to round-off (a few ulp; near ``z = 0`` the absolute
    error is that of ``2σ − 1``, about one ulp of 1).
    """
    return torch.sigmoid(z + z).mul(2.0).sub(1.0)


class Activation(nn.Module):
    """Base of every activation: one map, or a bank of ``copies`` maps with their own parameters.

    A bank (``copies`` given) holds the parameters of the L layers of a cascade or the K
    modules of a modular net in one tensor, so a net applies them all with one call
    (`forward` on ``[..., copies, width]``) or one at a time (`at`). A single activation
    (``copies=None``) acts on ``[..., width]``.
    """

    def at(self, z: Tensor, index: int) -> Tensor:
        """Copy ``index`` of a bank applied to ``z`` ``[..., width]`` (no parameters: `forward`)."""
        return self(z)

    def tanh_form(self) -> tuple[Tensor | float, Tensor | float] | None:
        """``(c1, c2)`` with ``σ(z) = c1·tanh z + c2·z`` (shapes ``[copies, width]`` or scalars),
        or None when the activation has no such form. Nets use it to run a fused kernel
        (`hamgrad.nets._fused`)."""
        return None


class Elementwise(Activation):
    """A fixed element-wise activation ``σ(z)`` (no parameters), for any trailing shape.

    ``tanh_form`` is ``(c1, c2)`` when the map is ``c1·tanh z + c2·z`` (``tanh``, ``identity``).
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[Tensor], Tensor],
        tanh_form: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.fn = fn
        self._tanh_form = tanh_form

    def forward(self, z: Tensor) -> Tensor:
        """Return ``σ(z)``, same shape as ``z``."""
        return self.fn(z)

    def tanh_form(self) -> tuple[Tensor | float, Tensor | float] | None:
        return self._tanh_form

    def extra_repr(self) -> str:
        return self.name


class VectorSoftmax(Activation):
    """Softmax over the last axis: ∇ logsumexp, a monotone vector gradient map."""

    def forward(self, z: Tensor) -> Tensor:
        """Return ``softmax(z)`` over the last axis of ``z`` ``[..., width]``."""
        return torch.softmax(z, dim=-1)


def _positive_or_free(raw: Tensor, monotone: bool) -> Tensor:
    # Non-negativity by softplus, not clamping: clamping zeroes the gradient and gets stuck.
    return F.softplus(raw) if monotone else raw


def _shape(width: int, copies: int | None, per_unit: bool) -> tuple[int, ...]:
    unit = (width,) if per_unit else ()
    return unit if copies is None else (check_int("copies", copies), *unit)


class TanhMix(Activation):
    """Learnable per-unit tanh mix ``a·tanh z ± b·(z − tanh z)`` (2·width parameters per copy).

    Parameters
    ----------
    width : int
        Number of units (last axis of the input).
    monotone : bool
        If True, ``a, b = softplus(raw) ≥ 0`` and ``σ(z) = a·tanh z + b·(z − tanh z)``, which is
        strictly increasing. If False, ``σ(z) = a·tanh z − b·(z − tanh z)`` with free a, b.
    copies : int, optional
        Bank of this many activations (parameters ``[copies, width]``, input
        ``[..., copies, width]``); None: one activation (parameters ``[width]``).
    """

    def __init__(self, width: int, monotone: bool, copies: int | None = None) -> None:
        super().__init__()
        self.monotone = monotone
        # Start tanh-dominated (a > b): with a = b the monotone form is exactly linear (σ(z) = a z),
        # which makes the whole net affine at initialisation.
        a0, b0 = (1.0, -1.0) if monotone else (1.0, 0.1)
        shape = _shape(width, copies, per_unit=True)
        self.a = nn.Parameter(torch.full(shape, a0))
        self.b = nn.Parameter(torch.full(shape, b0))

    def tanh_form(self) -> tuple[Tensor, Tensor]:
        """``(c1, c2)`` with ``σ(z) = c1·tanh z + c2·z``: ``c1 = a ∓ b``, ``c2 = ±b``."""
        a = _positive_or_free(self.a, self.monotone)
        slope = _positive_or_free(self.b, self.monotone)
        if not self.monotone:
            slope = -slope
        # a·tanh z + slope·(z − tanh z) = (a − slope)·tanh z + slope·z
        return a - slope, slope

    def forward(self, z: Tensor) -> Tensor:
        """Apply σ element-wise to ``z`` ``[..., width]`` (``[..., copies, width]`` for a bank)."""
        c1, c2 = self.tanh_form()
        return torch.addcmul(c2 * z, c1, tanh_via_sigmoid(z))

    def at(self, z: Tensor, index: int) -> Tensor:
        """Copy ``index`` of a bank applied to ``z`` ``[..., width]``."""
        c1, c2 = self.tanh_form()
        return torch.addcmul(c2[index] * z, c1[index], tanh_via_sigmoid(z))


class SoftmaxMix(Activation):
    """Learnable ``a·softmax(z) − b·softmin(z)`` over the last axis (2 scalar parameters per copy).

    It equals ∇[a·LSE(z) + b·LSE(−z)], a gradient for any a, b, and monotone (LSE is convex)
    when ``monotone`` puts a, b through softplus. A bank (``copies``) holds ``a, b`` of shape
    ``[copies]`` and acts on ``[..., copies, width]``.
    """

    def __init__(self, width: int, monotone: bool, copies: int | None = None) -> None:
        super().__init__()
        # one scalar pair per activation, as in the authors' configuration
        self.monotone = monotone
        shape = _shape(width, copies, per_unit=False)
        self.a = nn.Parameter(torch.full(shape, 0.5))
        self.b = nn.Parameter(torch.full(shape, 0.5))

    def _ab(self) -> tuple[Tensor, Tensor]:
        a = _positive_or_free(self.a, self.monotone)
        b = _positive_or_free(self.b, self.monotone)
        return (a[:, None], b[:, None]) if a.ndim else (a, b)

    def forward(self, z: Tensor) -> Tensor:
        """Apply σ to ``z`` ``[..., width]`` (mixes units along the last axis)."""
        a, b = self._ab()
        return a * torch.softmax(z, dim=-1) - b * torch.softmax(-z, dim=-1)

    def at(self, z: Tensor, index: int) -> Tensor:
        """Copy ``index`` of a bank applied to ``z`` ``[..., width]``."""
        a, b = self._ab()
        return a[index] * torch.softmax(z, dim=-1) - b[index] * torch.softmax(-z, dim=-1)


@dataclass(frozen=True)
class ActivationSpec:
    """A registry entry: how to build an activation and what it guarantees.

    Attributes
    ----------
    build : callable ``(width, monotone, copies) -> Activation``
        Builds the activation for ``width`` units; ``monotone`` selects the nondecreasing form of
        learnable activations (ignored by fixed ones); ``copies`` builds a bank (see
        `Activation`).
    monotone : bool
        The activation (in its monotone form) is the gradient of a convex function.
    elementwise : bool
        Acts unit by unit (required by the cascade GradNet-C and by MLP baselines).
    convex : bool
        The element-wise map is itself convex and nondecreasing (required by the ICNN).
    learnable : bool
        Has trainable parameters.
    """

    build: Callable[[int, bool, int | None], Activation]
    monotone: bool
    elementwise: bool
    convex: bool = False
    learnable: bool = False


def _fixed(
    name: str, fn: Callable[[Tensor], Tensor], tanh_form: tuple[float, float] | None = None
) -> Callable[[int, bool, int | None], Activation]:
    return lambda width, monotone, copies: Elementwise(name, fn, tanh_form)


ACTIVATIONS: dict[str, ActivationSpec] = {
    "tanh-mix": ActivationSpec(TanhMix, monotone=True, elementwise=True, learnable=True),
    "softmax-mix": ActivationSpec(SoftmaxMix, monotone=True, elementwise=False, learnable=True),
    "tanh": ActivationSpec(_fixed("tanh", torch.tanh, (1.0, 0.0)), monotone=True, elementwise=True),
    "softplus": ActivationSpec(
        _fixed("softplus", F.softplus), monotone=True, elementwise=True, convex=True
    ),
    "sigmoid": ActivationSpec(_fixed("sigmoid", torch.sigmoid), monotone=True, elementwise=True),
    "identity": ActivationSpec(
        _fixed("identity", _identity, (0.0, 1.0)), monotone=True, elementwise=True, convex=True
    ),
    "sin": ActivationSpec(_fixed("sin", torch.sin), monotone=False, elementwise=True),
    "gelu": ActivationSpec(_fixed("gelu", F.gelu), monotone=False, elementwise=True),
    "silu": ActivationSpec(_fixed("silu", F.silu), monotone=False, elementwise=True),
    "softmax": ActivationSpec(lambda w, m, c: VectorSoftmax(), monotone=True, elementwise=False),
}
"""Activation name -> `ActivationSpec`. Every entry is smooth (C^∞): no ReLU, whose Jacobian is
piecewise constant and whose second derivative (needed by the autograd baselines) is zero."""


def get_activation(
    name: str,
    width: int,
    *,
    monotone: bool,
    elementwise: bool = False,
    convex: bool = False,
    owner: str = "net",
    copies: int | None = None,
) -> Activation:
    """Build activation ``name`` for ``width`` units, checking it suits the net that asks.

    Parameters
    ----------
    name : str
        Key of `ACTIVATIONS`.
    width : int
        Number of units.
    monotone : bool
        The net must stay monotone: refuse activations that cannot be nondecreasing, and build
        learnable ones in their nonnegative form.
    elementwise, convex : bool
        Require an element-wise (resp. convex nondecreasing) activation.
    owner : str
        Name of the asking net, for the error message.
    copies : int, optional
        Build a bank of this many activations with their own parameters (the layers of a
        cascade, the modules of a modular net), applied in one call; see `Activation`.

    Raises
    ------
    ConfigError
        Unknown name, or an activation lacking a required property.
    """
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    check_int("width", width)
    spec = ACTIVATIONS[name]
    for needed, has, what in (
        (monotone, spec.monotone, "a monotone (nondecreasing) activation"),
        (elementwise, spec.elementwise, "an element-wise activation"),
        (convex, spec.convex and spec.monotone, "a convex nondecreasing activation"),
    ):
        if needed and not has:
            valid = sorted(
                n
                for n, s in ACTIVATIONS.items()
                if (s.monotone or not monotone)
                and (s.elementwise or not elementwise)
                and (s.convex or not convex)
            )
            raise ConfigError(
                f"{owner}: activation={name!r} is not {what}; expected one of: {', '.join(valid)}"
            )
    return spec.build(width, monotone, copies)
