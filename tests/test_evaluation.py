"""Evaluation: metric definitions on known inputs, an oracle model equals the floor, errors."""

from __future__ import annotations

import functools
import json
import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from test_training_helpers import _one_thread, make_dataset, strip_to_trajectories  # noqa: F401
from torch import nn

from hamgrad.data import load_dataset
from hamgrad.errors import ConfigError, DatasetError, IntegratorError
from hamgrad.evaluation import evaluate, horizons, state_metrics
from hamgrad.integrators import get_integrator
from hamgrad.models import MODELS, HamiltonianModel, get_model
from hamgrad.report import format_table
from hamgrad.run import RunPaths, load_curves, predict_split, save_evaluation
from simulators import reference_solution, system_from_dataset


class Oracle(HamiltonianModel):
    """A "learned" model that is exactly the true system: its metrics must equal the floor."""

    name = "oracle"
    defaults: ClassVar[dict] = {}
    default_integrator = "yoshida4"
    separable = True

    def __init__(self, system) -> None:
        super().__init__(system.dof)
        self.system = system
        self.unused = nn.Parameter(torch.zeros(()))  # gives the evaluator a dtype / device

    def grad_H(self, q, p):
        return self.system.dH_dq(q, p), self.system.dH_dp(q, p)

    def hamiltonian(self, q, p):
        return self.system.hamiltonian(q, p)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "pendulum.h5"
    return load_dataset(make_dataset(path, "pendulum", n_steps_test=40))


def known(dataset):
    """The true system and its reference solution, as the CLI passes them to evaluate."""
    system = system_from_dataset(dataset)
    return {"system": system, "truth": functools.partial(reference_solution, system)}


def test_horizons():
    assert horizons(1) == [1]
    assert horizons(99) == [1, 10]
    assert horizons(1000) == [1, 10, 100, 1000]


def test_state_metrics_on_a_known_error():
    """Error growing as k/64 in q and p from a true state of norm √2 (dof = 1)."""
    n = 20
    k = np.arange(n + 1, dtype=float)
    q_true = np.ones((2, n + 1, 1))
    p_true = np.ones((2, n + 1, 1))
    q_pred, p_pred = q_true + (k / 64)[None, :, None], p_true + (k / 64)[None, :, None]
    metrics, curves = state_metrics(
        q_pred,
        p_pred,
        q_true,
        p_true,
        dt=0.5,
        threshold=0.1,
        hamiltonian=lambda q, p: (q**2 + p**2).sum(-1),
    )
    # |x̂_k - x_k|² = 2 (k/64)²
    assert metrics["state_error_db"]["10"] == pytest.approx(10 * math.log10(2 * (10 / 64) ** 2))
    assert list(metrics["state_error_db"]) == ["1", "10"]
    # relative error k/64 first exceeds 0.1 at k = 7 (6.4 < 7)
    assert metrics["vpt_steps"] == 7 and metrics["vpt_time"] == 3.5
    assert metrics["vpt_censored"] == 0
    # H = q² + p² = 2 (1 + k/64)², H0 = 2: relative error (1 + k/64)² - 1
    expected = (1 + k / 64) ** 2 - 1
    assert metrics["energy_rel_error_max"] == pytest.approx(expected[-1])
    np.testing.assert_allclose(curves["energy_rel_error"], expected)
    slope = np.polyfit(0.5 * k, expected, 1)[0]
    assert metrics["energy_drift_slope"] == pytest.approx(slope)


def test_state_metrics_censoring_and_no_hamiltonian():
    x = np.ones((3, 5, 2))
    metrics, curves = state_metrics(x, x, x, x, dt=0.1)
    assert metrics["vpt_censored"] == 3 and metrics["vpt_steps"] == 4
    assert metrics["energy_rel_error_max"] is None and "energy_rel_error" not in curves
    assert metrics["state_error_db"]["1"] is None  # an exact fit (-inf dB): not a JSON number


def test_nan_prediction_ends_valid_time():
    x = np.ones((1, 5, 1))
    bad = x.copy()
    bad[0, 3] = np.nan
    metrics, _ = state_metrics(bad, x, x, x, dt=1.0)
    assert metrics["vpt_steps"] == 3


def test_oracle_model_equals_the_floor(pendulum):
    truth = known(pendulum)
    evaluation = evaluate(Oracle(truth["system"]), pendulum, method="leapfrog", **truth)
    m, f = evaluation.metrics["model_metrics"], evaluation.metrics["floor_metrics"]
    assert m["state_error_db"] == f["state_error_db"]
    for key in ("energy_rel_error_max", "energy_drift_slope", "vpt_time", "vpt_censored"):
        assert m[key] == f[key], key
    # Stored derivatives are the system's field at the stored (noise-free) states.
    assert m["derivative_error_db"] < -250
    # The floor is a real, non-zero error: leapfrog is not exact.
    assert -100 < f["state_error_db"]["10"] < 0
    assert evaluation.metrics["truth"] == "stored"


def test_truth_beyond_the_stored_horizon_is_generated(pendulum):
    truth = known(pendulum)
    stored = pendulum.splits["test"].n_t - 1
    evaluation = evaluate(Oracle(truth["system"]), pendulum, horizon=3 * stored, **truth)
    assert evaluation.metrics["truth"].startswith("generated")
    assert evaluation.metrics["horizon_steps"] == 3 * stored
    assert "100" in evaluation.metrics["model_metrics"]["state_error_db"]
    # The generated truth agrees with the stored one where both exist.
    np.testing.assert_allclose(
        evaluation.curves["q_true"][:, : stored + 1], pendulum.splits["test"].q[:4], atol=1e-10
    )


def test_errors(pendulum, tmp_path):
    model = get_model("gradnet", 1, hidden=8, depth=2)
    with pytest.raises(IntegratorError, match="yoshida4"):
        evaluate(model, pendulum, method="yoshida4")
    with pytest.raises(IntegratorError, match="leapfrog"):
        evaluate(get_model("neural-ode", 1, hidden=8, depth=2), pendulum, method="leapfrog")
    with pytest.raises(DatasetError, match=r"dof is 1 but .* expects dof 2"):
        evaluate(get_model("gradnet", 2, hidden=8, depth=2), pendulum)
    no_val = load_dataset(strip_to_trajectories(pendulum.path, tmp_path / "a.h5", ("val",)))
    with pytest.raises(DatasetError, match="split 'val' is absent"):
        evaluate(model, no_val, split="val")
    with pytest.raises(ConfigError, match="horizon 100 exceeds the 40 stored steps"):
        evaluate(model, pendulum, horizon=100)  # no truth given
    with pytest.raises(ConfigError, match="threshold"):
        evaluate(model, pendulum, threshold=0)


def test_unknown_system_still_evaluates_without_floor_and_energy(pendulum, tmp_path):
    bare = load_dataset(strip_to_trajectories(pendulum.path, tmp_path / "b.h5"))
    evaluation = evaluate(get_model("neural-ode", 1, hidden=8, depth=2), bare)
    metrics = evaluation.metrics
    assert metrics["floor_metrics"] is None and "no true system" in metrics["floor_note"]
    assert metrics["model_metrics"]["derivative_error_db"] is None
    table = format_table(metrics)
    assert "n/a" in table and "floor not computed" in table


def test_table_and_saved_files(pendulum, tmp_path):
    evaluation = evaluate(
        get_model("separable-gradnet", 1, hidden=8, depth=2), pendulum, **known(pendulum)
    )
    table = format_table(evaluation.metrics)
    for needle in (
        "derivative error (dB)",
        "state error @ 10 steps",
        "valid prediction time",
        "energy rel. error, max",
        "yoshida4",
    ):
        assert needle in table
    paths = RunPaths(tmp_path)
    save_evaluation(evaluation, paths)
    curves = load_curves(paths.curves)
    assert set(curves) == set(evaluation.curves)
    assert "model_learned_energy_change" in curves
    assert json.loads(paths.evaluation.read_text())["integrator"] == "yoshida4"


def test_integrator_options_reach_the_rollout_and_the_report(pendulum):
    model = get_model("gradnet", 1, hidden=8, depth=2)
    tao = get_integrator("tao2", omega=37.0)
    metrics = evaluate(model, pendulum, horizon=5, method=tao, **known(pendulum)).metrics
    assert metrics["integrator"] == "tao2" and metrics["integrator_options"]["omega"] == 37.0


def test_predict_split_writes_the_dataset_format(pendulum, tmp_path):
    model = get_model("gradnet", 1, hidden=8, depth=2)
    out = predict_split(model, pendulum, tmp_path / "pred.h5", n_steps=12, source="run")
    pred = load_dataset(out)
    assert pred.system is None and pred.attrs["integrator"] == model.default_integrator
    assert pred.splits["test"].q.shape == (3, 13, 1)
    np.testing.assert_allclose(pred.splits["test"].q[:, 0], pendulum.splits["test"].q[:, 0])
    before = out.read_bytes()
    with pytest.raises(DatasetError, match="file exists"):
        predict_split(model, pendulum, out, n_steps=3)
    assert out.read_bytes() == before


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_evaluates_with_its_default_integrator(name, pendulum):
    model = get_model(name, 1, hidden=8, depth=2, generator=torch.Generator().manual_seed(0))
    s = pendulum.splits["train"]
    model.fit_normalization(s, pendulum.dt)
    evaluation = evaluate(model, pendulum, horizon=12, **known(pendulum))
    metrics = evaluation.metrics
    assert metrics["integrator"] == MODELS[name].default_integrator
    assert math.isfinite(metrics["model_metrics"]["derivative_error_db"])
    assert metrics["floor_metrics"] is not None  # the pendulum is separable: every method fits
    assert ("model_learned_energy_change" in evaluation.curves) == MODELS[name].is_hamiltonian


def test_failed_floor_rollout_keeps_the_model_metrics(pendulum, monkeypatch):
    # The true system's rollout fails (as Gauss-4 does at a three-body close encounter); the
    # model's metrics must survive and the table must say why the floor is missing.
    import hamgrad.evaluation as ev

    real = ev.rollout_numpy

    def failing_for_systems(field, *args, **kwargs):
        if not isinstance(field, torch.nn.Module):
            raise IntegratorError("gauss4: fixed-point iteration did not converge at step 3")
        return real(field, *args, **kwargs)

    monkeypatch.setattr(ev, "rollout_numpy", failing_for_systems)
    model = get_model("gradnet", 1, hidden=8, depth=2)
    result = ev.evaluate(model, pendulum, horizon=5, **known(pendulum))
    assert result.metrics["floor_metrics"] is None
    assert "rollout failed" in result.metrics["floor_note"]
    assert np.isfinite(result.metrics["model_metrics"]["state_error_db"]["1"])


def test_optional_floor_and_learned_energy_can_be_skipped(pendulum):
    model = get_model("gradnet", 1, hidden=8, depth=2)
    result = evaluate(
        model, pendulum, horizon=5, floor=False, learned_energy=False, **known(pendulum)
    )
    assert result.metrics["floor_metrics"] is None
    assert result.metrics["floor_note"] == "not requested"
    assert "model_learned_energy_change" not in result.curves
    assert "model_learned_energy_change" in evaluate(model, pendulum, horizon=5).curves


class Runaway(HamiltonianModel):
    """A free particle whose force becomes NaN past |q| > 3: its rollout diverges mid-way."""

    name = "runaway"
    defaults: ClassVar[dict] = {}
    default_integrator = "leapfrog"
    separable = True

    def __init__(self) -> None:
        super().__init__(1)
        self.unused = nn.Parameter(torch.zeros(()))

    def grad_H(self, q, p):
        bad = q.abs() > 3
        return torch.where(bad, torch.full_like(q, float("nan")), torch.zeros_like(q)), p

    def hamiltonian(self, q, p):
        return 0.5 * (p**2).sum(-1)


def test_a_diverging_model_gets_metrics_up_to_its_divergence(pendulum):
    """0.1 raised and wrote nothing; now the metrics cover the steps before the divergence."""
    evaluation = evaluate(Runaway(), pendulum, **known(pendulum))
    m = evaluation.metrics["model_metrics"]
    step = m["diverged"]["step"]
    assert 10 < step < 40 and m["diverged"]["time"] == pytest.approx(step * pendulum.dt)
    assert "non-finite" in m["diverged"]["reason"]
    assert m["state_error_db"]["1"] is not None and m["state_error_db"]["10"] is not None
    assert m["energy_rel_error_max"] is not None and m["vpt_steps"] <= step
    assert not np.isfinite(evaluation.curves["q_model"][:, step:]).any()
    assert np.isfinite(evaluation.curves["q_model"][:, :step]).all()
    json.dumps(evaluation.metrics, allow_nan=False)  # strict JSON: no NaN, no Infinity
    table = format_table(evaluation.metrics)
    assert f"model diverged at step {step}" in table
