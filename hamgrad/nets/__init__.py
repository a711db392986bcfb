"""Gradient networks: neural maps ``R^d -> R^d`` that are gradients by construction.

GradNet-C / mGradNet-C / GradNet-M / mGradNet-M (Chaudhari, Pranav & Moura, IEEE TSP 2025,
arXiv:2404.07361), baselines (unconstrained MLP, scalar-MLP gradient, ICNN gradient), the
scalar potential of any gradient net, and the registry `NETS`.
"""

from hamgrad.nets._base import FieldNet
from hamgrad.nets.activations import ACTIVATIONS, get_activation
from hamgrad.nets.baselines import ICNNGradient, MLPField, ScalarGradient
from hamgrad.nets.gradnet import GradNetC, GradNetM, MGradNetC, MGradNetM
from hamgrad.nets.potential import potential
from hamgrad.nets.registry import NETS, count_parameters, get_net, hidden_for_budget

__all__ = [
    "ACTIVATIONS",
    "NETS",
    "FieldNet",
    "GradNetC",
    "GradNetM",
    "ICNNGradient",
    "MGradNetC",
    "MGradNetM",
    "MLPField",
    "ScalarGradient",
    "count_parameters",
    "get_activation",
    "get_net",
    "hidden_for_budget",
    "potential",
]
