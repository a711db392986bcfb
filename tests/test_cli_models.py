"""``hamgrad train / evaluate / plot / rollout`` through click's CliRunner on tiny data."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner
from test_training_helpers import _one_thread, make_dataset, strip_to_trajectories  # noqa: F401

from hamgrad.cli import main
from hamgrad.data import load_dataset

TINY = ["--epochs", "2", "--hidden", "8", "--depth", "2", "--batch-size", "64", "--threads", "1"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_ok(result):
    assert result.exit_code == 0, (result.output, result.exception)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_dataset(
        root / "pend.h5", "pendulum", n_train=6, n_val=2, n_test=2, n_steps=20, n_steps_test=30
    )
    runs = root / "runs"
    for name, model in (("g", "gradnet"), ("node", "neural-ode")):
        assert_ok(
            run(
                "train", "--data", data, "--model", model, "--runs-dir", runs, "--name", name, *TINY
            )
        )
    assert_ok(run("evaluate", runs / "g"))
    return root, data, runs


def test_pipeline_train_evaluate_plot_rollout(setup):
    root, _, runs = setup
    g = runs / "g"
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "metrics.json"):
        assert (g / name).is_file(), name
    result = run("evaluate", g, "--horizon", "60")  # beyond the stored 30: generated truth
    assert_ok(result)
    assert "state error @ 10 steps (dB)" in result.output and "generated" in result.output
    assert json.loads((g / "metrics.json").read_text())["horizon_steps"] == 60
    result = run("plot", g)
    assert_ok(result)
    for name in ("phase_portrait.png", "energy.png", "error_vs_horizon.png"):
        assert (g / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    result = run("rollout", g, "--steps", "7", "--out", root / "pred.h5")
    assert_ok(result)
    assert load_dataset(root / "pred.h5").splits["test"].q.shape == (2, 8, 1)


def test_train_progress_and_summary(setup):
    _, data, runs = setup
    result = run("train", "--data", data, "--runs-dir", runs, "--name", "p", *TINY)
    assert_ok(result)
    assert "epoch 2/2" in result.output and f"run: {runs / 'p'}" in result.output


def test_train_from_toml_with_flag_override(setup, tmp_path):
    _, data, runs = setup
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data = "{data}"\nmodel = "hnn"\nepochs = 5\nthreads = 1\n'
        f'runs_dir = "{runs}"\nname = "toml"\n[model_params]\nhidden = 4\n'
    )
    assert_ok(run("train", "--config", cfg, "--epochs", "1", "--quiet"))
    saved = json.loads((runs / "toml/config.json").read_text())
    assert saved["train"]["epochs"] == 1 and saved["model"]["name"] == "hnn"
    assert saved["model"]["hparams"]["hidden"] == 4


def test_resume_from_the_cli(setup):
    _, data, runs = setup
    assert_ok(run("train", "--data", data, "--runs-dir", runs, "--name", "r", *TINY))
    assert_ok(run("train", "--resume", runs / "r"))  # already complete: continues to the end
    assert len((runs / "r/metrics.jsonl").read_text().splitlines()) == 2


def test_default_train_generates_the_pendulum_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("train", "--epochs", "1", "--hidden", "4", "--depth", "1", "--threads", "1")
    assert_ok(result)
    ds = load_dataset(tmp_path / "data/pendulum.h5")
    assert ds.system == "pendulum" and ds.splits["train"].n_traj == 200
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"run: runs/{run_dir.name}" in result.output


def _unknown_model_run(runs: Path) -> Path:
    bad = runs.parent / "unknown-run"
    if not bad.exists():
        shutil.copytree(runs / "g", bad)
        raw = torch.load(bad / "best.pt", weights_only=True)
        raw["model_config"] = json.dumps({"name": "mystery", "dof": 1, "hparams": {}})
        torch.save(raw, bad / "best.pt")
    return bad


BAD_INPUTS = {
    "wrong dof": (lambda r, d, x: ["evaluate", r / "g", "--data", x["dof2"]], "expects dof 1"),
    "missing split": (
        lambda r, d, x: ["evaluate", r / "g", "--data", x["no_val"], "--split", "val"],
        "split 'val' is absent",
    ),
    "unknown model": (
        lambda r, d, x: ["evaluate", _unknown_model_run(r), "--data", d],
        "unknown model 'mystery'",
    ),
    "splitting on non-separable": (
        lambda r, d, x: ["evaluate", r / "g", "--integrator", "yoshida4"],
        "yoshida4",
    ),
    "symplectic on neural-ode": (
        lambda r, d, x: ["evaluate", r / "node", "--integrator", "implicit-midpoint"],
        "implicit-midpoint",
    ),
    "rollout splitting": (
        lambda r, d, x: ["rollout", r / "g", "--integrator", "leapfrog"],
        "leapfrog",
    ),
    "unwritable rollout out": (
        lambda r, d, x: ["rollout", r / "g", "--out", x["file"] / "pred.h5"],
        "pred.h5",
    ),
    "unwritable plot dir": (
        lambda r, d, x: ["plot", r / "g", "--out", x["file"] / "plots"],
        "plots",
    ),
    "unwritable runs dir": (
        lambda r, d, x: ["train", "--data", d, "--runs-dir", x["file"] / "runs", *TINY],
        "runs",
    ),
    "existing run": (
        lambda r, d, x: ["train", "--data", d, "--runs-dir", r, "--name", "g", *TINY],
        "already exists",
    ),
    "resume with flags": (
        lambda r, d, x: ["train", "--resume", r / "g", "--epochs", "5"],
        "resume alone",
    ),
    "unknown toml key": (lambda r, d, x: ["train", "--config", x["toml"]], "unknown key"),
    "unknown model name": (
        lambda r, d, x: ["train", "--data", d, "--model", "nope"],
        "'nope' is not one of 'gradnet', 'hnn'",
    ),
    "missing run": (lambda r, d, x: ["evaluate", r / "nope"], "no checkpoint"),
    "resume of a directory that is no run": (
        lambda r, d, x: ["train", "--resume", x["file"].parent],
        "config.json not found",
    ),
    "missing data": (lambda r, d, x: ["train", "--data", r / "none.h5"], "none.h5"),
    "bad param": (
        lambda r, d, x: ["train", "--data", d, "--param", "widht=3"],
        "unknown hyperparameter 'widht'",
    ),
    "garbage checkpoint": (lambda r, d, x: ["evaluate", x["garbage_run"]], "could not be read"),
    "toml value of the wrong type": (
        lambda r, d, x: ["train", "--config", x["typed_toml"]],
        "unknown model",
    ),
    "toml model_params not a table": (
        lambda r, d, x: ["train", "--config", x["params_toml"], "--hidden", "4"],
        "must be a table",
    ),
    "corrupt evaluation curves": (
        lambda r, d, x: ["plot", x["bad_curves_run"]],
        "evaluation curves could not be read",
    ),
}


if not torch.cuda.is_available():
    BAD_INPUTS["cuda without cuda"] = (
        lambda r, d, x: ["train", "--data", d, "--device", "cuda"],
        "CUDA is not available",
    )
    BAD_INPUTS["evaluate on cuda without cuda"] = (
        lambda r, d, x: ["evaluate", r / "g", "--device", "cuda"],
        "CUDA is not available",
    )


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_exit_2_and_damages_nothing(case, setup, tmp_path):
    root, data, runs = setup
    extra = {
        "file": tmp_path / "a-file",
        "toml": tmp_path / "bad.toml",
        "no_val": strip_to_trajectories(data, tmp_path / "noval.h5", ("val",)),
        "dof2": make_dataset(
            tmp_path / "chain.h5",
            "spring-chain",
            n_train=1,
            n_val=0,
            n_test=1,
            n_steps=3,
            n_steps_test=3,
        ),
    }
    extra["file"].write_text("I am a file, not a directory")
    extra["empty_run"] = tmp_path / "empty-run"  # config.json written, crashed before epoch 1
    extra["empty_run"].mkdir()
    shutil.copy(runs / "g/config.json", extra["empty_run"] / "config.json")
    extra["toml"].write_text("epochz = 3\n")
    extra["typed_toml"] = tmp_path / "typed.toml"
    extra["typed_toml"].write_text('model = ["gradnet"]\n')
    extra["params_toml"] = tmp_path / "params.toml"
    extra["params_toml"].write_text("model_params = 3\n")
    extra["garbage_run"] = tmp_path / "garbage-run"
    shutil.copytree(runs / "g", extra["garbage_run"])
    for name in ("best.pt", "last.pt"):
        (extra["garbage_run"] / name).write_text("hello")  # not a checkpoint, not even a zip
    extra["bad_curves_run"] = tmp_path / "bad-curves-run"
    shutil.copytree(runs / "g", extra["bad_curves_run"])
    (extra["bad_curves_run"] / "evaluation.npz").write_bytes(b"PK\x03\x04 truncated")
    build, needle = BAD_INPUTS[case]
    args = build(runs, data, extra)
    before = snapshot(root)
    result = run(*args)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("hamgrad: error:") and "\n" not in err, err
    assert needle in err, err
    assert "Traceback" not in result.output
    after = snapshot(root)
    assert after == before  # nothing changed, nothing added (no stray or temporary files)


def test_evaluate_a_diverging_model_writes_metrics_and_plots(setup, tmp_path):
    _, _, runs = setup
    run_dir = tmp_path / "wild"
    shutil.copytree(runs / "g", run_dir)
    raw = torch.load(run_dir / "best.pt", weights_only=True)
    raw["model_state"] = {
        k: v * 100 if k.startswith("net.") else v for k, v in raw["model_state"].items()
    }  # Gauss-4 cannot converge
    torch.save(raw, run_dir / "best.pt")
    result = run("evaluate", run_dir)
    assert_ok(result)
    assert "model diverged at step" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model_metrics"]["diverged"]["step"] >= 1
    assert_ok(run("plot", run_dir))
    assert (run_dir / "plots" / "error_vs_horizon.png").read_bytes()[:4] == b"\x89PNG"


def test_long_rollouts_show_progress_on_stderr(setup, monkeypatch):
    from hamgrad.cli import model_cmds

    _, _, runs = setup
    monkeypatch.setattr(model_cmds._StepProgress, "MIN_STEPS", 100)  # "long" for this test
    result = run("evaluate", runs / "g", "--horizon", "300")
    assert_ok(result)
    assert "evaluate: model rollout: step 256/300" in result.stderr
    assert "evaluate: model rollout: step 300/300 (100%)" in result.stderr
    assert "model rollout" not in result.stdout  # the table on stdout stays clean


def test_a_dataset_never_makes_evaluate_import_code(tmp_path, monkeypatch):
    """0.1 imported whatever module a file's `system` attribute named (`this:X` printed the
    Zen of Python). Now only a system the user names with --system is imported."""
    (tmp_path / "marker_sys.py").write_text(
        textwrap.dedent("""
        import pathlib
        from dataclasses import dataclass

        from simulators import Spring

        pathlib.Path("IMPORTED").write_text("module code ran")

        @dataclass(frozen=True)
        class Sys(Spring):
            pass
    """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = make_dataset(
        tmp_path / "s.h5", "spring", n_train=4, n_val=1, n_test=2, n_steps=10, n_steps_test=10
    )
    assert_ok(run("train", "--data", data, "--name", "r", *TINY))
    with h5py.File(data, "r+") as f:
        f.attrs["system"] = "marker_sys:Sys"
    result = run("evaluate", "runs/r", "--data", data)
    assert_ok(result)
    assert not (tmp_path / "IMPORTED").exists()
    assert "pass --system marker_sys:Sys on the command line to trust it" in result.stderr
    assert json.loads(Path("runs/r/metrics.json").read_text())["floor_metrics"] is None
    result = run("evaluate", "runs/r", "--data", data, "--system", "marker_sys:Sys")
    assert_ok(result)
    assert (tmp_path / "IMPORTED").exists()
    assert json.loads(Path("runs/r/metrics.json").read_text())["floor_metrics"] is not None
