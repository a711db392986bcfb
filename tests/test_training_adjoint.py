"""Training a ``rollout:K`` loss with ``adjoint = true`` (same weights, clear refusals), and
starting a run from another run's weights (``init``), the curriculum for long horizons."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from test_training_helpers import _one_thread, make_dataset, strip_to_trajectories  # noqa: F401

from hamgrad.checkpoint import load_checkpoint
from hamgrad.cli import main
from hamgrad.errors import CheckpointError, ConfigError, IntegratorError
from hamgrad.models import get_model
from hamgrad.training import TrainConfig, build_loss, train

SETTINGS = {
    "model": "separable-gradnet",
    "model_params": {"hidden": 6, "depth": 2},
    "loss": "rollout:3",
    "integrator": "leapfrog",
    "epochs": 3,
    "batch_size": 32,
    "dtype": "float64",
    "device": "cpu",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("adj") / "pend.h5", n_train=6, n_val=2)


def test_the_cli_flag_trains_to_the_weights_of_backprop(data, tmp_path):
    """--adjoint reaches the same weights as plain backprop (to round-off), and is recorded."""
    plain = train(
        TrainConfig.from_mapping(
            {**SETTINGS, "data": str(data), "runs_dir": str(tmp_path), "name": "plain"}
        )
    )
    args = ["train", "--data", data, "--runs-dir", tmp_path, "--name", "adj", "--adjoint"]
    args += ["--model", "separable-gradnet", "--hidden", "6", "--depth", "2", "--quiet"]
    args += ["--loss", "rollout:3", "--integrator", "leapfrog", "--epochs", "3"]
    args += ["--batch-size", "32", "--dtype", "float64", "--device", "cpu"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "adj/config.json").read_text())
    assert saved["train"]["adjoint"] is True
    a = load_checkpoint(plain.run_dir / "last.pt")["model_state"]
    b = load_checkpoint(tmp_path / "adj/last.pt")["model_state"]
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=1e-9, atol=1e-12), key


def test_adjoint_loss_gradient_equals_backprop(data):
    """One batch of `RolloutLoss`: the gradients of the two modes agree to 1e-12."""
    from hamgrad.data import load_dataset

    split = load_dataset(data).splits["train"]
    grads = []
    for adjoint in (False, True):
        model = get_model("gradnet", 1, generator=torch.Generator().manual_seed(0), hidden=6)
        loss = build_loss("rollout:5", model, split, 0.1, "gauss4", 2, adjoint=adjoint)
        batch, _ = next(loss.samples(split, torch.float64, torch.device("cpu")).batches(16))
        value = loss(model, batch)
        grads.append(
            torch.cat([g.flatten() for g in torch.autograd.grad(value, [*model.parameters()])])
        )
    assert float((grads[0] - grads[1]).abs().max() / grads[0].abs().max()) < 1e-12


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ({"adjoint": "yes"}, ConfigError, "adjoint must be true or false"),
        ({"adjoint": True, "loss": "derivative"}, ConfigError, "got loss 'derivative'"),
        (
            {"adjoint": True, "loss": "rollout:4", "integrator": "tao2"},
            IntegratorError,
            "'tao2' has no adjoint rollout",
        ),
    ],
)
def test_bad_adjoint_settings_are_refused(values, error, match):
    with pytest.raises(error, match=match):
        TrainConfig.from_mapping({"data": "d.h5", **values})


def test_auto_loss_resolving_to_derivative_refuses_the_adjoint(data, tmp_path):
    with pytest.raises(ConfigError, match="derivative loss here"):
        train(
            TrainConfig.from_mapping(
                {
                    **SETTINGS,
                    "data": str(data),
                    "loss": "auto",
                    "adjoint": True,
                    "runs_dir": str(tmp_path),
                }
            )
        )
    bare = strip_to_trajectories(data, tmp_path / "bare.h5")  # auto -> rollout:4: accepted
    config = {**SETTINGS, "data": str(bare), "loss": "auto", "adjoint": True, "epochs": 1}
    result = train(TrainConfig.from_mapping({**config, "runs_dir": str(tmp_path), "name": "a"}))
    assert result.loss == "rollout:4"


def test_init_starts_from_another_runs_weights(data, tmp_path):
    """A long-horizon run started from a short-horizon one (lr so small nothing moves)."""
    base = {**SETTINGS, "data": str(data), "runs_dir": str(tmp_path)}
    short = train(TrainConfig.from_mapping({**base, "name": "short", "epochs": 2}))
    long = train(
        TrainConfig.from_mapping(
            {
                **base,
                "name": "long",
                "loss": "rollout:20",
                "adjoint": True,
                "epochs": 1,
                "lr": 1e-12,
                "init": str(short.run_dir),
            }
        )
    )
    a = load_checkpoint(short.run_dir / "best.pt")["model_state"]
    b = load_checkpoint(long.run_dir / "last.pt")["model_state"]
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=0, atol=1e-9), key

    # Interrupted before its first checkpoint, the run starts over, from the init weights
    # again (it used to restart from the seeded random ones).
    def stop(run_dir):
        raise KeyboardInterrupt

    cut = {**base, "name": "cut", "loss": "rollout:20", "adjoint": True, "epochs": 1}
    cut |= {"lr": 1e-12, "init": str(short.run_dir)}
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.from_mapping(cut), on_start=stop)
    resumed = load_checkpoint(train(resume=tmp_path / "cut").run_dir / "last.pt")
    for key, value in b.items():
        assert torch.equal(value, resumed["model_state"][key]), key
    wider = {**base, "name": "wider", "init": str(short.run_dir)}
    wider["model_params"] = {"hidden": 7, "depth": 2}
    with pytest.raises(CheckpointError, match="expected the model of this run"):
        train(TrainConfig.from_mapping(wider))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train(TrainConfig.from_mapping({**base, "name": "x", "init": str(tmp_path / "none")}))
