"""Training: learning works, trained structure, checkpoints, resume, failures, configuration."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_models import hamiltonian_form_defect
from test_training_helpers import _one_thread, make_dataset, strip_to_trajectories  # noqa: F401

from hamgrad.checkpoint import load_checkpoint, load_model, save_checkpoint
from hamgrad.data import load_dataset
from hamgrad.errors import CheckpointError, ConfigError, DatasetError, IntegratorError
from hamgrad.integrators import rollout
from hamgrad.models import MODELS, get_model
from hamgrad.training import TrainConfig, TrainingError, train

SMALL = {"hidden": 16, "depth": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset(root / "pendulum.h5", "pendulum")
    make_dataset(root / "spring.h5", "spring")
    return root


def _config(data, tmp_path, **kw) -> TrainConfig:
    base = {
        "data": str(data),
        "model_params": dict(SMALL),
        "epochs": 40,
        "batch_size": 64,
        "lr": 1e-2,
        "dtype": "float64",
        "device": "cpu",
        "runs_dir": str(tmp_path / "runs"),
    }
    return TrainConfig.from_mapping({**base, **kw})


def _derivative_db(model, split) -> float:
    q, p = torch.as_tensor(split.q).flatten(0, 1), torch.as_tensor(split.p).flatten(0, 1)
    with torch.no_grad():
        dq, dp = model.time_derivative(q, p)
    err = (dq - torch.as_tensor(split.dq_dt).flatten(0, 1)).square().sum(-1) + (
        dp - torch.as_tensor(split.dp_dt).flatten(0, 1)
    ).square().sum(-1)
    return 10 * math.log10(float(err.mean()))


def _untrained(config: TrainConfig, dataset):
    """The model exactly as `train` initialises it (same seed, same normalisation)."""
    model = get_model(
        config.model,
        dataset.dof,
        generator=torch.Generator().manual_seed(config.seed),
        **config.model_params,
    )
    model.fit_normalization(dataset.splits["train"], dataset.dt)
    return model


@pytest.fixture(scope="module")
def trained_pendulum(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pend")
    config = _config(data_dir / "pendulum.h5", tmp, name="g")
    return config, train(config)


@pytest.mark.parametrize("system", ["spring", "pendulum"])
def test_training_beats_untrained_by_20_db(system, data_dir, tmp_path):
    """A few seconds of training must gain >= 20 dB in test derivative error (fails if broken)."""
    config = _config(data_dir / f"{system}.h5", tmp_path, name=system)
    result = train(config)
    dataset = load_dataset(config.data)
    test = dataset.splits["test"]
    before = _derivative_db(_untrained(config, dataset), test)
    after = _derivative_db(load_model(result.run_dir)[0], test)
    assert result.loss == "derivative"
    assert after <= before - 20, (before, after)


def test_trained_gradnet_has_exact_hamiltonian_form(trained_pendulum):
    model, _ = load_model(trained_pendulum[1].run_dir)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        q, p = torch.randn(1, generator=g), torch.randn(1, generator=g)
        assert hamiltonian_form_defect(model, q, p) < 1e-10


def test_separable_leapfrog_conserves_learned_energy_to_order_two(data_dir, tmp_path):
    """Leapfrog on the learned separable H: max energy error over [0, T] scales as dt²."""
    result = train(
        _config(
            data_dir / "pendulum.h5", tmp_path, model="separable-gradnet", epochs=10, name="sep"
        )
    )
    model, _ = load_model(result.run_dir)
    ds = load_dataset(data_dir / "pendulum.h5")
    q0 = torch.as_tensor(ds.splits["test"].q[:, 0])
    p0 = torch.as_tensor(ds.splits["test"].p[:, 0])
    errors = []
    for dt in (0.04, 0.02, 0.01):
        with torch.no_grad():
            traj = rollout(model, q0, p0, dt, round(4.0 / dt), method="leapfrog")
            energy = model.hamiltonian(traj.q, traj.p)
        errors.append(float((energy - energy[..., :1]).abs().max()))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(o - 2) < 0.2 for o in orders), (errors, orders)


def test_checkpoint_round_trip(trained_pendulum, tmp_path):
    _, result = trained_pendulum
    model, _ = load_model(result.run_dir)
    for name in ("best.pt", "last.pt"):  # plain tensors + JSON: loadable with weights_only
        raw = torch.load(result.run_dir / name, weights_only=True)
        assert json.loads(raw["model_config"])["name"] == "gradnet"
    path = save_checkpoint(tmp_path / "copy.pt", model, note="x")
    again, raw = load_model(path)
    assert raw["note"] == "x" and again.config() == model.config()
    q, p = torch.randn(5, 1), torch.randn(5, 1)
    for a, b in zip(model.time_derivative(q, p), again.time_derivative(q, p), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(model.normalizer.scale, again.normalizer.scale)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("loss", ["derivative", "rollout:2"])
def test_resume_reaches_the_same_weights(data_dir, tmp_path, loss):
    kw = {
        "epochs": 6,
        "loss": loss,
        "schedule": "cosine",
        "optimizer": "adamw",
        "weight_decay": 1e-3,
        "grad_clip": 0.5,
    }
    full = train(_config(data_dir / "pendulum.h5", tmp_path, name="full", **kw))

    def crash(epoch):
        if epoch == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(_config(data_dir / "pendulum.h5", tmp_path, name="cut", **kw), on_epoch_end=crash)
    assert load_checkpoint(tmp_path / "runs/cut/last.pt")["epoch"] == 3
    resumed = train(resume=tmp_path / "runs/cut")
    assert resumed.epochs == full.epochs == 6
    a = load_checkpoint(full.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    rows = [
        [
            {k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in (full.run_dir, resumed.run_dir)
    ]
    assert rows[0] == rows[1]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    import hamgrad.training.loop as loop

    config = _config(data_dir / "spring.h5", tmp_path, name="nan", epochs=5)
    models = []

    def capture(*args, **kwargs):  # keep a handle on the model being trained
        models.append(get_model(*args, **kwargs))
        return models[-1]

    def poison(epoch):
        # Simulates a diverged update: the next epoch's loss is NaN.
        if epoch == 2:
            with torch.no_grad():
                for prm in models[-1].parameters():
                    prm.fill_(float("nan"))

    monkeypatch.setattr(loop, "get_model", capture)
    with pytest.raises(TrainingError, match=r"non-finite .* epoch 3.*last good checkpoint"):
        train(config, on_epoch_end=poison)
    last = load_checkpoint(tmp_path / "runs/nan/last.pt")
    assert last["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in last["model_state"].values())
    assert len((tmp_path / "runs/nan/metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_with_the_rollout_loss_on_trajectory_only_data(name, data_dir, tmp_path):
    bare = strip_to_trajectories(data_dir / "pendulum.h5", tmp_path / "bare.h5")
    result = train(_config(bare, tmp_path, model=name, epochs=3, name=name))
    assert result.loss == "rollout:4"
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert (
        json.loads((result.run_dir / "config.json").read_text())["resolved"]["integrator"]
        == MODELS[name].train_integrator
    )


def test_derivative_loss_on_trajectory_only_data_is_refused(data_dir, tmp_path):
    bare = strip_to_trajectories(data_dir / "spring.h5", tmp_path / "bare.h5")
    with pytest.raises(ConfigError, match="needs dq_dt and dp_dt"):
        train(_config(bare, tmp_path, loss="derivative", name="x"))
    assert not (tmp_path / "runs/x").exists()


def test_inapplicable_integrator_fails_before_anything_is_written(data_dir, tmp_path):
    with pytest.raises(IntegratorError, match="leapfrog"):
        train(
            _config(
                data_dir / "spring.h5", tmp_path, loss="rollout:2", integrator="leapfrog", name="x"
            )
        )
    with pytest.raises(IntegratorError):
        train(
            _config(
                data_dir / "spring.h5",
                tmp_path,
                model="neural-ode",
                loss="rollout:2",
                integrator="implicit-midpoint",
                name="y",
            )
        )
    assert not (tmp_path / "runs").exists()


def test_missing_train_split(data_dir, tmp_path):
    only_test = strip_to_trajectories(
        data_dir / "spring.h5", tmp_path / "t.h5", drop_splits=("train",)
    )
    with pytest.raises(DatasetError, match="split 'train' is absent"):
        train(_config(only_test, tmp_path, name="x"))


def test_existing_run_is_not_overwritten(trained_pendulum):
    config, result = trained_pendulum
    before = (result.run_dir / "best.pt").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        train(config)
    assert (result.run_dir / "best.pt").read_bytes() == before


def test_early_stopping(data_dir, tmp_path):
    # lr so small nothing improves measurably after the first epochs -> stops early.
    result = train(
        _config(
            data_dir / "spring.h5",
            tmp_path,
            name="es",
            epochs=50,
            patience=1,
            lr=1e-12,
            schedule="constant",
        )
    )
    assert result.stop_reason == "early stopping" and result.epochs < 50


def test_config_from_toml_flags_override_and_unknown_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'data = "d.h5"\nmodel = "hnn"\nepochs = 7\n[model_params]\nhidden = 9\ndepth = 1\n'
    )
    config = TrainConfig.from_toml(path, {"epochs": 3, "model_params": {"hidden": 5}})
    assert (config.model, config.epochs, config.model_params) == (
        "hnn",
        3,
        {"hidden": 5, "depth": 1},
    )
    path.write_text("epoch = 7\n")
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        TrainConfig.from_toml(path)
    path.write_text("epochs = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TrainConfig.from_toml(path)


def test_the_learning_rate_defaults_to_the_models_own_and_is_recorded(tmp_path):
    from hamgrad.models import MODELS

    rates = {name: cls.default_lr for name, cls in MODELS.items()}
    assert len(set(rates.values())) > 1  # models differ: one global rate would not do
    for name, rate in rates.items():
        assert TrainConfig(data="d.h5", model=name).lr == rate
        assert TrainConfig(data="d.h5", model=name, lr=1e-4).lr == 1e-4  # given: kept
    path = tmp_path / "c.toml"
    path.write_text('data = "d.h5"\nmodel = "hnn"\n')
    config = TrainConfig.from_toml(path)
    assert config.lr == rates["hnn"] and config.to_dict()["lr"] == rates["hnn"]
    assert "lr" not in config.changed_fields()  # the model's own rate is not a change
    assert TrainConfig.from_toml(path, {"lr": 0.5}).changed_fields() == ["data", "lr", "model"]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("loss", "rollout:0", "loss must be"),
        ("loss", "l2", "loss must be"),
        ("model", "mlp", "unknown model"),
        ("optimizer", "sgd", "unknown optimizer"),
        ("lr", -1.0, "lr must be"),
        ("epochs", 0, "epochs must be"),
        ("dtype", "float16", "unknown dtype"),
        ("name", "../x", "run name must be one path component"),
        ("integrator", "nonsense", "unknown integrator 'nonsense'; expected one of: .*gauss4"),
        ("integrator_options", {"omega": 3.0}, "without an integrator"),
    ],
)
def test_bad_config_values(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_mapping({"data": "d.h5", field: value})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"omega": -1.0}, "omega must be a finite positive number"),
        ({"tol": 1e-12}, "unknown option"),
    ],
)
def test_bad_integrator_options_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_mapping(
            {"data": "d.h5", "integrator": "tao2", "integrator_options": options}
        )


def test_integrator_options_reach_the_rollout_loss_and_the_run(data_dir, tmp_path):
    bare = strip_to_trajectories(data_dir / "pendulum.h5", tmp_path / "bare.h5")
    result = train(
        _config(
            bare,
            tmp_path,
            epochs=1,
            loss="rollout:2",
            integrator="tao2",
            integrator_options={"omega": 21.0},
            name="tao",
        )
    )
    resolved = json.loads((result.run_dir / "config.json").read_text())["resolved"]
    assert resolved["integrator"] == "tao2" and resolved["integrator_options"]["omega"] == 21.0


def test_resume_with_new_settings_is_refused(trained_pendulum):
    config, result = trained_pendulum
    with pytest.raises(ConfigError, match=r"new settings too \(.*epochs"):
        train(TrainConfig.from_mapping({"data": config.data, "epochs": 3}), resume=result.run_dir)


def test_default_dataset_settings_match_simulate_defaults():
    """`hamgrad train` and `hamgrad simulate pendulum` must make the same default file."""
    from hamgrad.cli.data_cmds import simulate
    from hamgrad.cli.model_cmds import DEFAULT_DATA_SETTINGS

    cli = {p.name: p.default for p in simulate.params}
    mapping = {
        "n_train": "n_train",
        "n_val": "n_val",
        "n_test": "n_test",
        "n_steps": "steps",
        "dt": "dt",
        "noise_std": "noise",
        "seed": "seed",
    }
    assert {k: cli[v] for k, v in mapping.items()} == DEFAULT_DATA_SETTINGS
    assert cli["steps_test"] is None  # the test split is as long as the others


def test_bad_checkpoint_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path)
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a hamgrad checkpoint"):
        load_model(tmp_path / "other.pt")
    model = get_model("gradnet", 1, **SMALL)
    path = save_checkpoint(tmp_path / "m.pt", model)
    raw = torch.load(path, weights_only=True)
    raw["model_config"] = json.dumps({"name": "mystery", "dof": 1, "hparams": {}})
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="unknown model 'mystery'"):
        load_model(path)
    raw["model_config"] = json.dumps(model.config())
    raw["model_state"] = {k: v[..., :1] if v.dim() else v for k, v in raw["model_state"].items()}
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(path)


def test_float64_runs_keep_float64_normalisation(data_dir, tmp_path):
    """0.1 fitted the statistics into float32 buffers, then cast: float64 runs carried float32
    rounding in their normalisation."""
    torch.set_default_dtype(torch.float32)  # as in a plain `hamgrad train` process
    try:
        result = train(_config(data_dir / "pendulum.h5", tmp_path, name="f64", epochs=1))
    finally:
        torch.set_default_dtype(torch.float64)
    model, _ = load_model(result.run_dir)
    fresh = get_model("gradnet", 1, **SMALL).double()
    fresh.fit_normalization(load_dataset(data_dir / "pendulum.h5").splits["train"], 0.1)
    assert model.normalizer.scale.dtype == torch.float64
    assert torch.equal(model.normalizer.scale, fresh.normalizer.scale)
    assert torch.equal(model.normalizer.energy_scale, fresh.normalizer.energy_scale)


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("lr = true", "lr must be a real number, got True"),
        ('lr = "0.1"', "lr must be a real number, got '0.1'"),
        ("epochs = 3.0", "epochs must be an integer"),
        ("grad_clip = false", "grad_clip must be a real number"),
        ("[integrator_options]\nomega = true", "omega must be a finite positive number|omega must"),
    ],
)
def test_toml_values_are_typed_strictly(toml, match, tmp_path):
    path = tmp_path / "c.toml"
    extra = 'integrator = "tao2"\n' if "integrator_options" in toml else ""
    path.write_text(f'data = "d.h5"\n{extra}{toml}\n')
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_toml(path)


def test_a_toml_file_that_is_not_utf8_is_one_clear_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b'data = "d\xff.h5"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        TrainConfig.from_toml(path)


def test_a_run_does_not_depend_on_the_callers_default_dtype(data_dir, tmp_path):
    """`hamgrad train --dtype float64` (a float32 process) and `train()` in a float64 session
    used to start from different weights: drawn in the default dtype, then cast."""
    states = []
    for default in (torch.float32, torch.float64):
        torch.set_default_dtype(default)
        try:
            result = train(
                _config(
                    data_dir / "spring.h5",
                    tmp_path,
                    epochs=2,
                    name=f"d{default}".replace("torch.", ""),
                )
            )
        finally:
            torch.set_default_dtype(torch.float64)
        states.append(load_checkpoint(result.run_dir / "last.pt")["model_state"])
    for key, value in states[1].items():
        assert torch.equal(states[0][key], value), key
