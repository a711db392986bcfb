"""Smoke tests of the Hamiltonian benchmark scripts (tiny settings: plumbing, not results).

The three scripts (main suite, HNN protocol, long horizon) run their ``--smoke`` profile: fixed
epoch and step counts, so the rows do not depend on the machine's speed, and nothing here reads
the clock.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from _scripts import load_script

from hamgrad.errors import ConfigError
from hamgrad.models import get_model
from hamgrad.nets import count_parameters
from simulators import get_system


def _finite_numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _finite_numbers(v)]
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _finite_numbers(v)]
    if isinstance(obj, float | int) and not isinstance(obj, bool):
        return [float(obj)]
    return []


def _smoke(script, tmp_path, capsys, *options: str) -> tuple[str, dict]:
    """Run ``script`` at its smoke profile; check ``--report`` re-renders the same tables.

    Returns the printed tables and the JSON results.
    """
    out_json = tmp_path / "out.json"
    argv = ["--smoke", "--work-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert script.main([*argv, *options, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    # --report re-renders the same tables from the JSON (what a partial run is read with)
    assert script.main(["--report", str(out_json)]) == 0
    report = capsys.readouterr().out
    assert "profile smoke, total wall time" in text
    assert report.split("profile smoke")[0] == text.split("profile smoke")[0]
    return text, json.loads(out_json.read_text())


@pytest.mark.slow
def test_main_suite_has_every_row_and_finite_numbers(tmp_path, capsys):
    bh = load_script("bench_hamiltonian")
    text, results = _smoke(bh, tmp_path, capsys)
    profile = bh.PROFILES["smoke"]

    # one row per (system, applicable model, seed), every metric finite.
    expected = set()
    for label, spec in bh.SYSTEM_SPECS.items():
        separable = get_system(spec.system, **spec.params).separable
        for mlabel, mspec in bh.MODEL_SPECS.items():
            if separable or not mspec.separable_only:
                expected.add((label, mlabel))
                # particle systems get the pairwise features, tagged in the model column
                assert re.search(rf"\| {label} \| {mlabel}( \[pairwise\])? \|", text)
    runs = results["main"]["runs"]
    assert {(r["system"], r["model"]) for r in runs} == expected
    assert len(runs) == len(expected) * len(profile.seeds)
    hs = [h for h in bh.STATE_HORIZONS if h <= profile.horizon]
    for r in runs:
        assert {str(h) for h in hs} <= set(r["state_error_db"])
        values = [
            r["derivative_error_db"],
            *[r["state_error_db"][str(h)] for h in hs],
            r["energy_rel_error_max"],
            r["vpt_time"],
            r["epoch_s"],
        ]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), r
    # every model of one system within the ±5 % budget
    budgets = results["main"]["budgets"]
    assert {(b["system"], b["model"]) for b in budgets} == expected
    for b in budgets:
        assert abs(b["params"] - b["budget"]) <= 0.05 * b["budget"]
    # a floor row per (system, integrator) and a GradNet-vs-HNN line per GradNet variant
    floors = {(f["system"], f["integrator"]) for f in results["main"]["floors"]}
    assert floors == {(r["system"], r["integrator"]) for r in runs}
    assert all(f"- {m}:" in text for m, s in bh.MODEL_SPECS.items() if s.gradnet)


@pytest.mark.slow
def test_a_learning_rate_grid_evaluates_the_rate_with_the_lowest_validation_loss(tmp_path, capsys):
    bh = load_script("bench_hamiltonian")
    # 1e6 diverges (refused by training as a non-finite loss, or far worse): never chosen.
    text, results = _smoke(
        bh,
        tmp_path,
        capsys,
        "--systems",
        "pendulum",
        "--models",
        "gradnet-c,hnn",
        "--lrs",
        "0.01,0.1,1e6",
    )
    runs = results["main"]["runs"]
    assert results["lrs"] == [0.01, 0.1, 1e6] and len(runs) == 2
    for r in runs:
        losses = r["lr_val_loss"]
        assert set(losses) == {"0.01", "0.1", "1e+06"}
        finite = {k: v for k, v in losses.items() if v is not None}
        assert r["lr"] in (0.01, 0.1)
        assert f"{r['lr']:g}" == min(finite, key=finite.__getitem__)
        assert r["run_dir"].endswith(f"-lr{r['lr']:g}")  # the evaluated run is the chosen one
    assert re.search(r"\| pendulum \| gradnet-c \| \d+ \| gauss4 \| (0\.01|0\.1) \|", text)


@pytest.mark.slow
def test_hnn_protocol_has_every_row_and_the_published_figures(tmp_path, capsys):
    hp = load_script("bench_hnn_protocol")
    text, results = _smoke(hp, tmp_path, capsys)

    runs = results["hnn"]["runs"]
    assert {(r["task"], r["model"]) for r in runs} == {
        (t, m) for t in hp.TASKS for m in hp.MODEL_SPECS
    }
    assert all(math.isfinite(x) for r in runs for x in _finite_numbers(r))
    # every model at the budget of the protocol's HNN, within ±5 %
    budget = results["hnn"]["budget"]
    assert budget == hp.budget(hp.PROFILES["smoke"].hidden)
    assert all(abs(r["params"] - budget) <= 0.05 * budget for r in runs)
    assert "3.84e-04" in text and "2.49e-02" in text  # published beside ours
    # the noise floor of the derivative MSE is about 4 sigma² for both tasks (|∂f/∂x| = 2)
    for task in hp.TASKS:
        assert 0.01 < results["hnn"]["oracle"][task] < 0.1


@pytest.mark.slow
def test_long_horizon_has_both_models_and_finite_ratios(tmp_path, capsys):
    lh = load_script("bench_long_horizon")
    text, results = _smoke(lh, tmp_path, capsys)

    runs = results["long"]["runs"]
    assert [(r["model"], r["integrator"]) for r in runs] == [
        ("separable-gradnet", "yoshida4"),
        ("neural-ode", "rk4"),
    ]
    assert all(math.isfinite(x) for r in runs for x in _finite_numbers(r))
    assert results["long"]["steps"] == lh.PROFILES["smoke"].steps
    assert "### Long horizon: pendulum, 200 steps (dt = 0.05), float64" in text


def test_matched_width_is_the_closest_width():
    bench = load_script("_bench")
    for model, dof, hparams in [
        ("hnn", 1, {}),
        ("neural-ode", 1, {}),
        ("gradnet", 1, {"net": "gradnet-c"}),
        ("separable-gradnet", 10, {}),
    ]:

        def miss(h, budget, model=model, dof=dof, hparams=hparams):
            with torch.device("meta"):
                return abs(count_parameters(get_model(model, dof, **hparams, hidden=h)) - budget)

        for budget in (1500, 4000):
            hidden, n = bench.matched_width(model, dof, budget, hparams)
            best = miss(hidden, budget)
            assert best == abs(n - budget)
            # counts grow with the width, so the miss has a single minimum: no neighbour is
            # closer (on a tie the narrower width wins)
            assert miss(hidden - 1, budget) > best, (model, budget)
            assert miss(hidden + 1, budget) >= best, (model, budget)
    # the parameter counts of BENCHMARKS.md (quick profile): the closest width may lie above
    assert bench.matched_width("hnn", 1, 1500, {})[1] == 1508
    assert bench.matched_width("neural-ode", 1, 1500, {})[1] == 1536


def test_matched_width_rejects_a_budget_it_cannot_meet():
    bench = load_script("_bench")
    # dof 500: one unit of width costs ~1000 parameters, so 2500 is ~20 % from either width
    with pytest.raises(ConfigError, match="±5%"):
        bench.matched_width("gradnet", 500, 2500, {})


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("bench_hamiltonian", ["--systems", "pendulum,nope"]),
        ("bench_hamiltonian", ["--models", "hnn,nope"]),
        ("bench_hnn_protocol", ["--tasks", "nope"]),
        ("bench_long_horizon", ["--quick", "--smoke"]),
    ],
)
def test_bad_options_are_rejected(name, argv):
    parser = load_script(name).build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
