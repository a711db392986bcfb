"""Smoke test of the Hamiltonian benchmark script (tiny settings: checks plumbing, not results)."""

from __future__ import annotations

import json
import math

import pytest
from _scripts import load_script as _load

from hamgrad.errors import ConfigError
from simulators import get_system


def load_script():
    return _load("bench_hamiltonian")


def _finite_numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _finite_numbers(v)]
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _finite_numbers(v)]
    if isinstance(obj, float | int) and not isinstance(obj, bool):
        return [float(obj)]
    return []


@pytest.mark.slow
def test_smoke_run_has_every_row_and_finite_numbers(tmp_path, capsys):
    bh = load_script()
    out_json = tmp_path / "out.json"
    assert bh.main(["--smoke", "--work-dir", str(tmp_path / "runs"), "--data-dir",
                    str(tmp_path / "data"), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    results = json.loads(out_json.read_text())
    profile = bh.PROFILES["smoke"]

    # main: one row per (system, applicable model, seed), every metric finite.
    expected = set()
    for label, spec in bh.SYSTEM_SPECS.items():
        separable = get_system(spec.system, **spec.params).separable
        for mlabel, mspec in bh.MODEL_SPECS.items():
            if separable or not mspec.separable_only:
                expected.add((label, mlabel))
                assert f"| {label} | {mlabel} |" in text
    runs = results["main"]["runs"]
    assert {(r["system"], r["model"]) for r in runs} == expected
    assert len(runs) == len(expected) * len(profile.seeds)
    for r in runs:
        hs = [h for h in bh.STATE_HORIZONS if h <= profile.horizon]
        assert {str(h) for h in hs} <= set(r["state_error_db"])
        values = [r["derivative_error_db"], *[r["state_error_db"][str(h)] for h in hs],
                  r["energy_rel_error_max"], r["vpt_time"], r["epoch_s"]]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), r
    # every model of one system within the ±5 % budget
    for b in results["main"]["budgets"]:
        assert abs(b["params"] - b["budget"]) <= bh.BUDGET_TOLERANCE * b["budget"]
    # a GradNet-vs-HNN line for every GradNet variant
    assert all(f"- {m}:" in text for m, s in bh.MODEL_SPECS.items() if s.gradnet)

    # HNN protocol: both tasks, every model, the published figures printed beside ours.
    hnn_rows = {(r["task"], r["model"]) for r in results["hnn"]["runs"]}
    assert hnn_rows == {(t, m) for t in bh.HNN_TASKS for m in bh.MODEL_SPECS}
    assert all(math.isfinite(x) for r in results["hnn"]["runs"] for x in _finite_numbers(r))
    assert "3.84e-04" in text and "2.49e-02" in text
    # the noise floor of the derivative MSE is about 4 sigma² for both tasks (|∂f/∂x| = 2)
    for task in bh.HNN_TASKS:
        assert 0.01 < results["hnn"]["oracle"][task] < 0.1

    # long horizon: both models, finite ratios
    long_models = {r["model"] for r in results["long"]["runs"]}
    assert long_models == set(bh.LONG_MODELS)
    assert all(math.isfinite(r["ratio"]) for r in results["long"]["runs"])

    # --report re-renders the same tables from the JSON (what a partial run is read with)
    assert bh.main(["--report", str(out_json)]) == 0
    report = capsys.readouterr().out
    assert report.split("profile smoke")[0] == text.split("profile smoke")[0]


def test_match_budget_picks_closest_width_and_rejects_a_mismatch():
    bh = load_script()

    def count(model, dof, hidden, hparams):  # a model whose count jumps by 100 per unit width
        return 100 * hidden

    assert bh.match_budget("x", 1, 1000, {}, count=count) == (10, 1000)
    assert bh.match_budget("x", 1, 1040, {}, count=count) == (10, 1000)  # 3.8 % below: kept
    assert bh.match_budget("x", 1, 1060, {}, count=count) == (11, 1100)  # closest is above

    def coarse(model, dof, hidden, hparams):  # jumps of 300: 1050 is 14 % from either width
        return 300 * hidden

    assert bh.match_budget("x", 1, 900, {}, count=coarse) == (3, 900)
    with pytest.raises(ConfigError, match="±5%"):
        bh.match_budget("x", 1, 1050, {}, count=coarse)


def test_match_budget_on_real_models_is_within_tolerance():
    bh = load_script()
    for spec in bh.SYSTEM_SPECS.values():
        dof = get_system(spec.system, **spec.params).dof
        for mspec in bh.MODEL_SPECS.values():
            hidden, n = bh.match_budget(mspec.model, dof, 4000, mspec.hparams)
            assert n == bh.model_parameters(mspec.model, dof, hidden, mspec.hparams)
            assert abs(n - 4000) <= 0.05 * 4000


def test_unknown_names_are_rejected():
    bh = load_script()
    with pytest.raises(SystemExit):
        bh.build_parser().parse_args(["--systems", "pendulum,nope"])
