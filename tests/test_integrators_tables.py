"""Coefficient tables are validated when built, and the registry behaves as documented."""

from __future__ import annotations

import pytest

from hamgrad.errors import ConfigError, HamgradError
from hamgrad.integrators import ALIASES, INTEGRATORS, Integrator, get_integrator, rollout
from hamgrad.integrators.coefficients import BUTCHER_TABLEAUS, SPLITTING_TABLEAUS
from hamgrad.integrators.tableau import ButcherTableau, SplittingTableau, merge_ops


def test_merge_ops_merges_neighbours_and_drops_zeros() -> None:
    ops = [("K", 0.5), ("K", 0.25), ("D", 0.0), ("D", 1.0), ("K", 0.25), ("K", -0.25)]
    assert merge_ops(ops) == (("K", 0.75), ("D", 1.0))


@pytest.mark.parametrize("name", SPLITTING_TABLEAUS)
def test_splitting_tables_are_consistent(name: str) -> None:
    table = SPLITTING_TABLEAUS[name]
    assert table.reference
    with pytest.raises(ConfigError, match="drift coefficients sum to"):
        SplittingTableau(name, table.order, ((*table.ops, ("D", 1e-6))), False, "broken")


def test_claimed_reversibility_is_checked() -> None:
    with pytest.raises(ConfigError, match="claims reversibility"):
        SplittingTableau("bad", 1, (("K", 1.0), ("D", 1.0)), reversible=True, reference="x")


@pytest.mark.parametrize("name", BUTCHER_TABLEAUS)
def test_butcher_tableaus_satisfy_their_claims(name: str) -> None:
    tab = BUTCHER_TABLEAUS[name]
    assert (tab.symplecticity_defect() < 1e-13) == tab.symplectic
    with pytest.raises(ConfigError, match="weights b sum to"):
        ButcherTableau(name, tab.order, tab.A, (*tab.b[:-1], tab.b[-1] + 1e-6), tab.c, False, "x")


def test_claimed_symplecticity_of_a_tableau_is_checked() -> None:
    rk4 = BUTCHER_TABLEAUS["rk4"]
    with pytest.raises(ConfigError, match="claims symplecticity"):
        ButcherTableau("rk4", 4, rk4.A, rk4.b, rk4.c, symplectic=True, reference="x")


@pytest.mark.parametrize("name", INTEGRATORS)
def test_registry_entries_declare_their_contract(name: str) -> None:
    method = INTEGRATORS[name]
    assert isinstance(method, Integrator) and method.name == name
    assert method.order is None or method.order >= 1
    assert method.reference
    assert get_integrator(name) is method


def test_get_integrator_lists_sorted_names_and_resolves_aliases() -> None:
    with pytest.raises(HamgradError) as info:
        get_integrator("leapfrogg")
    listed = str(info.value).split("expected one of: ")[1].split(", ")
    assert listed == sorted(listed) and set(INTEGRATORS) <= set(listed)
    for alias, target in ALIASES.items():
        assert get_integrator(alias) is INTEGRATORS[target]
    assert get_integrator("torchdiffeq:bosh3").name == "torchdiffeq:bosh3"
    assert get_integrator("gauss4", tol=1e-15).tol == 1e-15
    with pytest.raises(ConfigError, match="valid options: none"):
        get_integrator("leapfrog", tol=1.0)


class _CountingModelField:
    """Non-separable H = (q² + p²)/2 + q²p²/2 whose two halves come from one evaluation, as a
    learned model's do: integrators must call ``time_derivative``, never the halves."""

    separable = False

    def __init__(self) -> None:
        self.joint = self.halves = 0

    def time_derivative(self, q, p):
        self.joint += 1
        return p + q * q * p, -(q + q * p * p)

    def dH_dq(self, q, p):
        self.halves += 1
        return q + q * p * p

    def dH_dp(self, q, p):
        self.halves += 1
        return p + q * q * p


@pytest.mark.parametrize(
    "name", sorted(n for n, m in INTEGRATORS.items() if not m.requires_separable)
)
def test_non_separable_methods_evaluate_the_field_once_per_stage(name):
    import math

    import torch

    field = _CountingModelField()
    n_steps = 8
    rollout(field, torch.full((3, 1), 0.3), torch.full((3, 1), 0.2), 0.05, n_steps, method=name)
    assert field.halves == 0, f"{name} evaluated ∂H/∂q and ∂H/∂p separately"
    declared = INTEGRATORS[name].force_evals_per_step
    if declared is not None and math.isfinite(declared):
        # Up to the one extra evaluation a method may spend to start its first step.
        assert field.joint <= math.ceil(declared * n_steps) + 1, (field.joint, declared)
