"""The net registry `NETS`, `get_net`, and parameter-budget helpers."""

from __future__ import annotations

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
"""Net name -> class. Every class takes ``dim`` and ``hidden`` and declares ``monotone`` and
``is_gradient``; tests are parametrised over this dict, so a new entry gets them for free."""


def get_net(name: str, **kwargs: object) -> FieldNet:
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


def hidden_for_budget(name: str, dim: int, budget: int, **kwargs: object) -> int:
    """Largest ``hidden`` whose net ``name`` has at most ``budget`` trainable parameters.

    Used to compare models at matched parameter budgets. The nets are built on the ``meta``
    device (shapes only, no memory), and the count grows with ``hidden``, so a bisection
    finds the answer in O(log budget) constructions.

    Raises
    ------
    ConfigError
        Unknown name, bad budget, or even ``hidden=1`` exceeds the budget.
    """
    if name not in NETS:
        raise unknown_name("net", name, NETS)
    check_int("budget", budget)

    def count(h: int) -> int:
        with torch.device("meta"):
            return count_parameters(NETS[name](dim=dim, hidden=h, **kwargs))

    if count(1) > budget:
        raise ConfigError(
            f"hidden_for_budget: budget={budget} is below the {count(1)} parameters of "
            f"{name!r} with hidden=1 (dim={dim}, {kwargs})"
        )
    lo, hi = 1, 2
    while count(hi) <= budget:  # exponential search for an upper bracket
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: count(lo) <= budget < count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo
