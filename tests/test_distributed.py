"""Training under torch.distributed: 2 gloo processes on localhost train what 1 process trains.

Each test starts its own processes (`_ddp.spawn`, or ``torchrun --standalone``, which picks a
free port itself) and kills any left over, so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _ddp import ROOT, spawn
from test_training_helpers import _one_thread, make_dataset  # noqa: F401

from hamgrad.checkpoint import load_checkpoint
from hamgrad.models import MODELS
from hamgrad.training import TrainConfig, train

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

# 5 trajectories of 21 states: 105 samples; a global batch of 26 leaves a last batch of one
# sample, so rank 1 gets an empty share of it.
BATCH = 26
# Adam is blind to a constant factor on the gradient; weight decay (added to the gradient)
# and clipping are not, so a rank loss weighted wrong by any factor changes the weights.
TINY = {
    "model_params": {"hidden": 8, "depth": 1},
    "epochs": 3,
    "batch_size": BATCH,
    "lr": 1e-2,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "dtype": "float64",
    "device": "cpu",
    "threads": 1,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("ddp") / "p.h5", n_train=5, n_val=3, n_test=1, n_steps=20
    )


@pytest.fixture(autouse=True)
def _default_float32():
    """Train the 1-process references under torch's stock default dtype, as the spawned
    processes do: a model's initial weights are drawn in the default dtype, then cast."""
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(torch.float64)


def _config(data: Path, runs: Path, name: str, **kw) -> dict:
    return {"data": str(data), "runs_dir": str(runs), "name": name, **TINY, **kw}


def _assert_same_weights(a: Path, b: Path, rtol: float = 1e-10) -> None:
    want = load_checkpoint(a / "last.pt")
    got = load_checkpoint(b / "last.pt")
    assert got["epoch"] == want["epoch"]
    for key, value in want["model_state"].items():
        err = (got["model_state"][key] - value).abs().max() / value.abs().max().clamp_min(1e-300)
        assert err <= rtol, (key, float(err))


def _train_args(config: dict) -> list[str]:
    """The ``hamgrad train`` arguments of a `_config` mapping."""
    flags = {k: v for k, v in config.items() if k != "model_params"} | config["model_params"]
    return ["train", *(x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", str(v)))]


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_processes_reach_the_single_process_weights(data, tmp_path):
    """The documented command: 2 processes, global batch 26, equal 1 process, batch 26."""
    one = train(TrainConfig.from_mapping(_config(data, tmp_path / "runs", "one")))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    args = [*torchrun, "--nproc-per-node", "2", "-m", "hamgrad"]
    args += _train_args(_config(data, tmp_path / "runs", "two"))
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("run: ") == 1  # rank 0 alone reports
    two = tmp_path / "runs" / "two"
    _assert_same_weights(one.run_dir, two)
    for a, b in zip(_rows(one.run_dir), _rows(two), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-10)
    resolved = json.loads((two / "config.json").read_text())["resolved"]
    assert resolved["processes"] == 2 and resolved["backend"] == "gloo"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.run_dir.iterdir())


@pytest.mark.slow
def test_every_model_and_loss_and_resume_across_process_counts(data, tmp_path):
    """One 2-process job trains every model with both losses (HNN: double backprop under
    DDP), a streamed split, and resumes runs in both directions; each result matches its
    1-process twin."""
    runs1, runs2 = tmp_path / "one", tmp_path / "two"
    cases = [(m, loss) for m in sorted(MODELS) for loss in ("derivative", "rollout:2")]
    calls = []
    for model, loss in cases:
        name = f"{model}-{loss.replace(':', '')}"
        config = _config(data, runs1, name, model=model, loss=loss, epochs=1)
        train(TrainConfig.from_mapping(config))
        calls.append({"config": {**config, "runs_dir": str(runs2)}})
    # A training split streamed from the file in blocks of one trajectory.
    streamed = _config(data, runs1, "streamed", buffer_mib=0.001)
    train(TrainConfig.from_mapping(streamed))
    calls.append({"config": {**streamed, "runs_dir": str(runs2)}})
    # The adjoint's parameter gradients come out of one autograd Function: DDP must see them.
    adjoint = _config(
        data,
        runs1,
        "adjoint",
        model="separable-gradnet",
        loss="rollout:3",
        integrator="leapfrog",
        adjoint=True,
        epochs=1,
    )
    train(TrainConfig.from_mapping(adjoint))
    calls.append({"config": {**adjoint, "runs_dir": str(runs2)}})
    # Resume: a 1-process run cut after epoch 1 is finished by 2 processes, and vice versa.
    reference = train(TrainConfig.from_mapping(_config(data, runs1, "full")))

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.from_mapping(_config(data, runs1, "cut1")), on_epoch_end=stop)
    calls.append({"resume": str(runs1 / "cut1")})
    calls.append({"config": _config(data, runs2, "cut2"), "stop_after": 1})
    ranks = spawn(2, {"calls": calls})
    assert [r.returncode for r in ranks] == [0, 0], ranks[0].stderr + ranks[1].stderr
    for name in [f"{m}-{loss.replace(':', '')}" for m, loss in cases] + ["streamed", "adjoint"]:
        _assert_same_weights(runs1 / name, runs2 / name)
    assert load_checkpoint(runs2 / "cut2" / "last.pt")["epoch"] == 1
    train(resume=runs2 / "cut2")
    for resumed in (runs1 / "cut1", runs2 / "cut2"):
        _assert_same_weights(reference.run_dir, resumed)
        assert [r["epoch"] for r in _rows(resumed)] == [1, 2, 3]


def _lines(ranks) -> list[str]:
    return [line for r in ranks for line in r.stderr.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "reporter", "message"),
    [
        ("data", 1, "injected: rank 1 cannot read its batch 2"),
        ("nan", 0, "training loss became non-finite"),
        ("die", 0, "rank 0 of 2: lost contact with another rank"),
    ],
)
def test_a_failing_rank_stops_every_rank_with_one_line(data, tmp_path, kind, reporter, message):
    """Bad data on one rank, NaN on one rank, or a rank that dies: no hang, one clear line."""
    args = _train_args(_config(data, tmp_path / "runs", "r"))
    ranks = spawn(2, {"cli": [*args, "--quiet"], "fault": {"rank": 1, "step": 2, "kind": kind}})
    codes = [r.returncode for r in ranks]
    assert codes == ([2, 3] if kind == "die" else [2, 2]), _lines(ranks)
    lines = _lines(ranks)
    assert len(lines) == 1, lines
    assert lines[0].startswith("hamgrad: error: ") and message in lines[0]
    assert ranks[reporter].stderr.strip() == lines[0]
    assert "Traceback" not in "".join(r.stderr for r in ranks)
    # Nothing was written after the failure: the run stopped in its first epoch.
    assert not (tmp_path / "runs" / "r" / "last.pt").exists()


@pytest.mark.slow
def test_bad_input_under_torchrun_is_one_line_from_rank_0(tmp_path):
    """Every rank finds the missing file; rank 0 says so, the others stop quietly."""
    missing = tmp_path / "nowhere.h5"
    args = ["train", "--data", str(missing), "--runs-dir", str(tmp_path), "--quiet"]
    ranks = spawn(2, {"cli": args})
    assert [r.returncode for r in ranks] == [2, 2]
    assert _lines(ranks) == [f"hamgrad: error: {missing}: no such file"]
    assert ranks[1].stderr == ""
