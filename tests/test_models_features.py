"""Feature maps: ``∇H = c·Jφᵀ g(φ)`` stays exactly Hamiltonian through any smooth ``φ``.

Parametrised over the Hamiltonian models of `MODELS` that take a ``features`` hyperparameter
and over `FEATURES`; the structural checks are the ones of `tests/test_models.py`, and each is
shown to fail on a deliberately broken chain rule.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_models import hamiltonian_form_defect
from test_training_helpers import _one_thread, make_dataset  # noqa: F401

from hamgrad.checkpoint import load_checkpoint
from hamgrad.data import load_dataset
from hamgrad.errors import ConfigError
from hamgrad.models import (
    FEATURES,
    MODELS,
    PairwiseNormalizer,
    get_model,
    hparams_for_data,
    model_from_config,
)
from hamgrad.training import TrainConfig, train

WITH_FEATURES = sorted(
    n for n, c in MODELS.items() if c.is_hamiltonian and "features" in c.defaults
)
BODIES, SPACE = 3, 2
DOF = BODIES * SPACE
SETTINGS = {"affine": {}, "pairwise": {"space_dim": SPACE}}


def _model(name: str, features: str, seed: int = 0):
    """A small model whose feature statistics are non-trivial (so the scalings are exercised)."""
    model = get_model(
        name,
        DOF,
        generator=torch.Generator().manual_seed(seed),
        hidden=8,
        depth=2,
        features=features,
        **SETTINGS[features],
    )
    g = torch.Generator().manual_seed(seed + 50)
    with torch.no_grad():
        for name_, buf in model.normalizer.named_buffers():
            if name_ in ("mean", "pair_mean"):
                buf.copy_(torch.randn(buf.shape, generator=g))
            elif name_ in ("scale", "pair_scale"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
        model.normalizer.energy_scale.fill_(1.7)
    return model


def _states(n: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(n, DOF, generator=g), torch.randn(n, DOF, generator=g)


@pytest.mark.parametrize("features", sorted(FEATURES))
@pytest.mark.parametrize("name", WITH_FEATURES)
def test_field_through_features_has_exact_hamiltonian_form(name, features):
    model = _model(name, features)
    q, p = _states()
    for i in range(q.shape[0]):
        assert hamiltonian_form_defect(model, q[i], p[i]) < 1e-10


@pytest.mark.parametrize("features", sorted(FEATURES))
@pytest.mark.parametrize("name", WITH_FEATURES)
def test_energy_gradient_equals_field_through_features(name, features):
    model = _model(name, features, seed=3)
    q, p = _states(seed=4)
    q.requires_grad_(True)
    p.requires_grad_(True)
    gq, gp = torch.autograd.grad(model.hamiltonian(q, p).sum(), (q, p))
    torch.testing.assert_close(gq, model.dH_dq(q, p), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gp, model.dH_dp(q, p), rtol=1e-8, atol=1e-8)


class _WrongChain(PairwiseNormalizer):
    """Broken on purpose: the scatter-add gives each body its own (wrong) weight."""

    def chain_q(self, q, g):
        weights = torch.linspace(1.0, 1.2, self.bodies).repeat_interleave(self.space_dim)
        return super().chain_q(q, g) * weights.to(q)


def test_hamiltonian_form_check_catches_a_broken_chain_rule():
    model = _model("gradnet", "pairwise")
    broken = _WrongChain(DOF, SPACE)
    broken.load_state_dict(model.normalizer.state_dict())
    model.normalizer = broken
    q, p = _states()
    assert hamiltonian_form_defect(model, q[0], p[0]) > 1e-3


@pytest.mark.parametrize("name", WITH_FEATURES)
def test_pairwise_potential_is_translation_and_rotation_invariant(name):
    """Forces sum to zero (total momentum conserved) and rotate with the bodies."""
    model = _model(name, "pairwise", seed=5)
    q, p = _states(seed=6)
    force = model.dH_dq(q, p).unflatten(-1, (BODIES, SPACE))
    torch.testing.assert_close(force.sum(-2), torch.zeros(q.shape[0], SPACE), rtol=0, atol=1e-12)
    angle = 0.7
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = (q.unflatten(-1, (BODIES, SPACE)) @ rot.T + torch.tensor([0.3, -1.1])).flatten(-2)
    turned = model.dH_dq(moved, p).unflatten(-1, (BODIES, SPACE))  # same p: only q moved
    torch.testing.assert_close(turned, force @ rot.T, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", WITH_FEATURES)
def test_config_with_features_rebuilds_the_same_field(name):
    model = _model(name, "pairwise", seed=7)
    rebuilt = model_from_config(json.loads(json.dumps(model.config())))
    rebuilt.load_state_dict(model.state_dict())
    q, p = _states()
    for a, b in zip(model.grad_H(q, p), rebuilt.grad_H(q, p), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("system", "params", "expected"),
    [
        ("two-body", {}, {"features": "pairwise", "space_dim": 2}),
        ("kepler", {}, {"features": "pairwise", "space_dim": 2}),
        ("three-body", {}, {"features": "pairwise", "space_dim": 2}),
        ("nbody", {"n": 4, "dim": 3}, {"features": "pairwise", "space_dim": 3}),
        ("pendulum", {}, {"features": "affine"}),
        (None, {}, {"features": "affine"}),
    ],
)
def test_features_follow_the_dataset_system_unless_chosen(system, params, expected):
    assert hparams_for_data("gradnet", {"hidden": 8}, system, params) == {"hidden": 8, **expected}
    assert hparams_for_data("gradnet", {"features": "auto"}, system, params) == expected
    chosen = {"features": "affine"}
    assert hparams_for_data("hnn", chosen, system, params) == chosen
    assert hparams_for_data("neural-ode", {}, system, params) == {}  # no features to choose


@pytest.mark.parametrize(
    ("hparams", "match"),
    [
        ({"features": "polar"}, "unknown features 'polar'; expected one of: affine, pairwise"),
        ({"features": "pairwise"}, "space_dim must be an integer >= 1, got 0"),
        ({"features": "pairwise", "space_dim": 4}, "needs dof = bodies \\* space_dim"),
        ({"features": "pairwise", "space_dim": "2"}, "space_dim must be an integer"),
    ],
)
def test_bad_features_are_one_line_errors(hparams, match):
    with pytest.raises(ConfigError, match=match):
        get_model("gradnet", DOF, **hparams)


def test_training_on_particle_data_records_pairwise_features(tmp_path):
    data = make_dataset(tmp_path / "kepler.h5", "two-body", n_train=4, n_val=2, n_steps=10)
    config = TrainConfig(
        data=str(data),
        model_params={"hidden": 8, "depth": 2},
        epochs=2,
        dtype="float64",
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        name="kepler",
    )
    result = train(config)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["model"]["hparams"]["features"] == "pairwise"
    assert saved["model"]["hparams"]["space_dim"] == 2
    assert saved["train"]["model_params"] == {"hidden": 8, "depth": 2}  # as the user gave it
    assert load_dataset(data).system in ("two-body", "kepler")


def _as_before_features(run_dir) -> None:
    """Edit a run's records into what hamgrad 0.1 wrote: no ``features``/``space_dim`` keys
    (its models were always affine), in config.json and in the checkpoints."""
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    for key in ("features", "space_dim"):
        saved["model"]["hparams"].pop(key)
        saved["train"]["model_params"].pop(key, None)
    path.write_text(json.dumps(saved))
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(run_dir / name, weights_only=True)
        model = json.loads(ckpt["model_config"])
        for key in ("features", "space_dim"):
            model["hparams"].pop(key)
        ckpt["model_config"] = json.dumps(model)
        torch.save(ckpt, run_dir / name)


def test_older_runs_without_features_resume_and_seed_new_runs(tmp_path):
    # Resume and init rebuild the model a run was built with; today's data-driven default
    # (pairwise, for this two-body data) used to replace it and refuse the checkpoint.
    data = make_dataset(tmp_path / "kepler.h5", "two-body", n_train=4, n_val=2, n_steps=10)
    base = {
        "data": str(data),
        "model_params": {"hidden": 8, "depth": 2, "features": "affine"},
        "dtype": "float64",
        "device": "cpu",
        "runs_dir": str(tmp_path / "runs"),
    }
    whole = train(TrainConfig.from_mapping({**base, "name": "whole", "epochs": 2}))

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.from_mapping({**base, "name": "old", "epochs": 2}), on_epoch_end=stop)
    _as_before_features(tmp_path / "runs" / "old")
    resumed = train(resume=tmp_path / "runs" / "old")
    a = load_checkpoint(whole.run_dir / "last.pt")["model_state"]
    b = load_checkpoint(resumed.run_dir / "last.pt")["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _as_before_features(whole.run_dir)
    seeded = {**base, "name": "next", "epochs": 1, "init": str(whole.run_dir)}
    assert train(TrainConfig.from_mapping(seeded)).epochs == 1
