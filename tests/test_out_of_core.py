"""Training on splits larger than the buffer: streamed from the file, resumable, checked as read."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_training_helpers import _one_thread, make_dataset  # noqa: F401

from hamgrad.checkpoint import load_checkpoint
from hamgrad.cli import main
from hamgrad.data import open_dataset
from hamgrad.errors import DatasetError
from hamgrad.training import TrainConfig, train
from hamgrad.training.samples import SampleSet

# 0.0015 MiB: less than 3 trajectories (21 states x 4 fields x 8 bytes each) fit, so both
# splits stream, in blocks of one trajectory.
STREAMED = 0.0015


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("ooc") / "p.h5", n_train=9, n_val=3, n_test=1, n_steps=20
    )


def _config(data: Path, runs: Path, name: str, **kw) -> TrainConfig:
    base = {
        "data": str(data),
        "runs_dir": str(runs),
        "name": name,
        "model_params": {"hidden": 8, "depth": 1},
        "epochs": 4,
        "batch_size": 32,
        "dtype": "float64",
        "device": "cpu",
        "buffer_mib": STREAMED,
    }
    return TrainConfig.from_mapping({**base, **kw})


def test_the_buffer_setting_streams_these_splits(data):
    with open_dataset(data) as ds:
        for name in ("train", "val"):
            samples = SampleSet(
                ds[name],
                ("q", "p", "dq_dt", "dp_dt"),
                None,
                torch.float64,
                torch.device("cpu"),
                int(STREAMED * 2**20),
            )
            assert not samples.resident and samples.block_traj == 1


@pytest.mark.parametrize("loss", ["derivative", "rollout:3"])
def test_streamed_training_learns_and_resumes_to_the_same_weights(data, tmp_path, loss):
    full = train(_config(data, tmp_path, "full", loss=loss))

    def cut(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(data, tmp_path, "cut", loss=loss), on_epoch_end=cut)
    resumed = train(resume=tmp_path / "cut")
    a, b = (load_checkpoint(r.run_dir / "last.pt") for r in (full, resumed))
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    rows = (full.run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 4 and full.best_loss < 0.9 * json.loads(rows[0])["val_loss"]


def test_a_bad_trajectory_stops_training_when_its_block_is_read(data, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data.read_bytes())
    with h5py.File(bad, "r+") as f:  # rewrite q without checksums, one value NaN
        q = f["train/q"][()]
        q[6, 3, 0] = np.nan
        del f["train/q"]
        f["train/q"] = q
    config = _config(bad, tmp_path, "bad", model_params={"hidden": 8, "normalize": False})
    # Nothing reads the training split before the first epoch (no normalisation pass): the
    # NaN is found in the epoch, when the block holding trajectory 6 is read.
    with pytest.raises(DatasetError, match=r"split 'train': q: contains 1 NaN/inf values in "):
        train(config)
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_the_cli_takes_the_buffer_and_backend_settings(data, tmp_path):
    args = ["train", "--data", str(data), "--runs-dir", str(tmp_path), "--name", "c"]
    args += ["--epochs", "1", "--hidden", "8", "--depth", "1", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--buffer-mib", "0.003", "--backend", "gloo"])
    assert result.exit_code == 0, result.output
    train_config = json.loads((tmp_path / "c" / "config.json").read_text())["train"]
    assert train_config["buffer_mib"] == 0.003 and train_config["backend"] == "gloo"
    result = CliRunner().invoke(main, [*args, "--overwrite", "--dist-timeout", "0"])
    assert result.exit_code == 2 and "dist-timeout" in result.stderr
