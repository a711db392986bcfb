"""The net registry `NETS`, `get_net`, and parameter-budget helpers."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hamgrad.errors import ConfigError, check_int, unknown_name
from hamgrad.nets._base import FieldNet
from hamgrad.nets.baselines import ICNNGradient, MLPField, ScalarGradient
from hamgrad.nets.gradnet import GradNetC, GradNetM, MGradNetC, MGradNetM

__all__ = ["NETS", "count_parameters", "get_net", "hidden_for_budget"]

NETS: dict[str, type[FieldNet]] = {
    "gradnet-c": GradNetC,
    "mgradnet-c": MGradNetC,
    "gradnet-m": GradNetM,
    "mgradnet-m": MGradNetM,
    "mlp": MLPField,
    "scalar-grad": ScalarGradient,
    "icnn-grad": ICNNGradient,
}
"""Net name -> class. Every class takes ``dim``, ``hidden`` and ``depth`` and declares
``monotone`` and ``is_gradient``; tests are parametrised over this dict, so a new entry gets
them for free."""


def get_net(name: str, **kwargs: Any) -> FieldNet:
    """Build the net registered as ``name`` with constructor keywords ``kwargs``.

    Raises
    ------
    ConfigError
        If ``name`` is not in `NETS` (the message lists the valid names, sorted).
    """
    if name not in NETS:
        raise unknown_name("net", name, NETS)
    return NETS[name](**kwargs)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module`` (the convention of the published counts)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def hidden_for_budget(
    build: Callable[[int], nn.Module] | str,
    budget: int,
    *args: Any,
    tolerance: float | None = None,
    **kwargs: Any,
) -> int:
    """The width ``hidden`` at which ``build(hidden)`` has ``budget`` trainable parameters.

    The one budget-matching rule of the package: benchmarks compare models at matched
    parameter budgets with it. Modules are built on the ``meta`` device (shapes only, no
    memory); the count grows with ``hidden``, so an exponential then binary search finds the
    answer in O(log budget) constructions.

    Parameters
    ----------
    build : callable ``hidden -> nn.Module``
        Builds the module at a given width, e.g.
        ``lambda h: get_model("hnn", dof=1, hidden=h, depth=3)``.
    budget : int
        Target number of trainable parameters (`count_parameters`).
    tolerance : float, optional
        Without it: the largest width whose count is at most ``budget``. With it: the width
        whose count is *closest* to ``budget`` (that width or the next), which must lie within
        ``tolerance · budget`` of it; models of one comparison then all match the budget to
        that relative tolerance, above or below.

    Returns
    -------
    int
        The width, >= 1.

    Raises
    ------
    ConfigError
        Bad budget, even ``hidden=1`` exceeds it, or no width is within ``tolerance``.

    Notes
    -----
    The form ``hidden_for_budget(name, dim, budget, **kwargs)`` of version 0.1 (a net name of
    `NETS`) still works for one release, with a `DeprecationWarning`.
    """
    if isinstance(build, str):
        name = build
        warnings.warn(
            "hidden_for_budget(name, dim, budget) is deprecated; pass a builder: "
            "hidden_for_budget(lambda h: get_net(name, dim=dim, hidden=h), budget)",
            DeprecationWarning,
            stacklevel=2,
        )
        if name not in NETS:
            raise unknown_name("net", name, NETS)
        dim, budget = budget, args[0]
        return hidden_for_budget(lambda h: NETS[name](dim=dim, hidden=h, **kwargs), budget)
    check_int("budget", budget)

    def count(h: int) -> int:
        with torch.device("meta"):
            return count_parameters(build(h))

    if count(1) > budget and tolerance is None:
        raise ConfigError(
            f"hidden_for_budget: budget={budget} is below the {count(1)} parameters of the "
            "module at hidden=1; expected a larger budget"
        )
    lo, hi = 1, 2
    while count(hi) <= budget:  # exponential search for an upper bracket
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: count(lo) <= budget < count(hi), or lo = 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    if tolerance is None:
        return lo
    best = min((lo, lo + 1), key=lambda h: abs(count(h) - budget))
    if abs(count(best) - budget) > tolerance * budget:
        raise ConfigError(
            f"hidden_for_budget: no width has {budget} parameters within ±{tolerance:.0%}: the "
            f"closest, hidden={best}, has {count(best)}; expected a larger budget"
        )
    return best
