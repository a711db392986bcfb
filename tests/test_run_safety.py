"""Run directories lose nothing: names, --overwrite, the run lock, the epoch log after a kill.

Each test here failed before its fix (issue 10 items 1-3 and the kill -9 fault test).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest
import torch
from test_training_helpers import _one_thread, make_dataset  # noqa: F401

from hamgrad.checkpoint import load_checkpoint
from hamgrad.errors import CheckpointError, ConfigError
from hamgrad.run import RunLock, RunPaths
from hamgrad.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "model_params": {"hidden": 6, "depth": 1},
    "epochs": 3,
    "batch_size": 64,
    "dtype": "float64",
    "device": "cpu",
    "threads": 1,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(
        tmp_path_factory.mktemp("data") / "pendulum.h5",
        "pendulum",
        n_train=6,
        n_val=2,
        n_test=2,
        n_steps=20,
    )


def _config(data, runs, **kw):
    return TrainConfig.from_mapping({"data": str(data), "runs_dir": str(runs), **TINY, **kw})


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "", "x y", "~x"])
def test_a_run_name_is_one_safe_path_component(name, data, tmp_path):
    runs = tmp_path / "work" / "runs"
    runs.mkdir(parents=True)
    (tmp_path / "work" / "precious.txt").write_text("keep me")
    before = _tree(tmp_path)
    with pytest.raises(ConfigError, match="run name must be one path component"):
        train(TrainConfig(data=str(data), runs_dir=str(runs), name=name, **TINY), overwrite=True)
    assert _tree(tmp_path) == before


def test_overwrite_only_empties_a_hamgrad_run(data, tmp_path):
    runs = tmp_path / "runs"
    (runs / "mine").mkdir(parents=True)
    (runs / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not a hamgrad run directory"):
        train(_config(data, runs, name="mine"), overwrite=True)
    assert (runs / "mine" / "thesis.tex").read_text() == "years of work"
    # A real run is replaced, and its config marks it as one.
    train(_config(data, runs, name="r"))
    assert json.loads((runs / "r/config.json").read_text())["format"] == "hamgrad.run"
    (runs / "r" / "stale.txt").write_text("from the old run")
    train(_config(data, runs, name="r", epochs=1), overwrite=True)
    assert not (runs / "r" / "stale.txt").exists()
    assert load_checkpoint(runs / "r/last.pt")["epoch"] == 1


def test_a_second_train_on_a_locked_run_is_refused_and_damages_nothing(data, tmp_path):
    runs = tmp_path / "runs"
    train(_config(data, runs, name="r"))
    before = _tree(runs / "r")
    with RunLock(runs / "r"):  # another process training there, as far as flock can tell
        for resume in (False, True):
            with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
                if resume:
                    train(resume=runs / "r")
                else:
                    train(_config(data, runs, name="r"), overwrite=True)
    after = _tree(runs / "r")
    assert {k: v for k, v in after.items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_a_lock_left_by_a_killed_process_is_taken_over(data, tmp_path):
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from hamgrad.run import RunLock; "
            "RunLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(600)",
            str(runs / "r"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"in use by process {holder.pid}"):
        train(_config(data, runs, name="r"))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    result = train(_config(data, runs, name="r"))
    assert result.epochs == 3
    assert RunPaths(runs / "r").lock.read_text().strip() == str(os.getpid())


def test_resume_repairs_a_damaged_epoch_log_from_the_checkpoint(data, tmp_path):
    runs = tmp_path / "runs"
    full = train(_config(data, runs, name="r", epochs=2))
    log = RunPaths(full.run_dir).metrics_log
    rows = log.read_text().splitlines()
    log.write_text(rows[0] + "\n{not json\n")  # cut and corrupted, as a kill or a user might
    train(_config(data, runs, name="r2", epochs=2))  # unrelated run, same data
    (full.run_dir / "config.json").write_text(
        (full.run_dir / "config.json").read_text().replace('"epochs": 2', '"epochs": 4')
    )
    train(resume=full.run_dir)
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_bad_last_checkpoint_contents_are_one_clear_error(data, tmp_path):
    runs = tmp_path / "runs"
    result = train(_config(data, runs, name="r", epochs=1))
    last = RunPaths(result.run_dir).last
    good = torch.load(last, weights_only=True)
    cases = {
        "shapes": lambda c: c["model_state"].update(
            {k: v[..., :1] for k, v in c["model_state"].items() if v.dim()}
        ),
        "key": lambda c: c.pop("optimizer_state"),
        "rng": lambda c: c.update(rng_state=torch.zeros(3, dtype=torch.uint8)),
        "epoch": lambda c: c.update(epoch=-4),
    }
    for name, damage in cases.items():
        ckpt = {**good, "model_state": dict(good["model_state"])}
        damage(ckpt)
        torch.save(ckpt, last)
        with pytest.raises(CheckpointError, match=r"last\.pt"):
            train(resume=result.run_dir)
        assert (result.run_dir / "best.pt").exists(), name


_KILLER = textwrap.dedent("""
    # Runs `hamgrad train` and SIGKILLs itself at the N-th atomic-write step: N odd kills
    # after a temporary file is complete but before it replaces the target, N even right
    # after a replace (between two files of one epoch).
    import os, signal, sys
    import hamgrad._atomic as atomic
    target, calls = int(sys.argv[1]), [0]
    real_fsync, real_replace = atomic.os.fsync, atomic.os.replace

    def tick():
        calls[0] += 1
        if calls[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)

    def fsync(fd):
        real_fsync(fd)
        tick()

    def replace(a, b):
        real_replace(a, b)
        tick()

    atomic.os.fsync, atomic.os.replace = fsync, replace
    from hamgrad.cli import main
    sys.argv = ["hamgrad", *sys.argv[2:]]
    main()
""")


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_is_bit_identical(data, tmp_path):
    """Issue 10's fault test: 5 SIGKILLs at seeded random points, each followed by --resume."""
    run = tmp_path / "runs" / "killed"
    first = [
        "train",
        "--data",
        str(data),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "killed",
        "--epochs",
        "5",
        "--hidden",
        "6",
        "--depth",
        "1",
        "--batch-size",
        "64",
        "--dtype",
        "float64",
        "--threads",
        "1",
        "--quiet",
    ]
    again = ["train", "--resume", str(run), "--quiet"]
    # The reference runs through the same command line, uninterrupted.
    ref = [
        *first[: first.index("--runs-dir") + 1],
        str(tmp_path / "ref"),
        "--name",
        "ref",
        *first[first.index("--epochs") :],
    ]
    subprocess.run([sys.executable, "-m", "hamgrad", *ref], cwd=ROOT, check=True)
    reference_dir = tmp_path / "ref" / "ref"
    # About six write steps per epoch (best.pt, last.pt, metrics.jsonl; two steps each): a
    # kill point among the first eight of an attempt falls inside its first epoch or two.
    points = random.Random(10).choices(range(1, 9), k=5)
    for attempt, point in enumerate(points):
        args = first if attempt == 0 else again
        proc = subprocess.run(
            [sys.executable, "-c", _KILLER, str(point), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
    final = subprocess.run(
        [sys.executable, "-m", "hamgrad", *again], cwd=ROOT, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr
    assert final.stdout == final.stderr == ""  # --quiet prints nothing but errors
    got = load_checkpoint(run / "last.pt")
    want = load_checkpoint(reference_dir / "last.pt")
    assert got["epoch"] == want["epoch"] == 5
    for key, value in want["model_state"].items():
        assert torch.equal(value, got["model_state"][key]), key

    def rows(root):
        return [
            {k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (root / "metrics.jsonl").read_text().splitlines()
        ]

    assert rows(run) == rows(reference_dir)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # cleaned up


@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes(data, tmp_path, signals):
    run = tmp_path / "runs" / "c"
    args = [
        sys.executable,
        "-m",
        "hamgrad",
        "train",
        "--data",
        str(data),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "c",
        "--epochs",
        "100",
        "--hidden",
        "6",
        "--depth",
        "1",
        "--batch-size",
        "64",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:  # progress goes to stderr; wait for the first epoch
        if line.startswith("epoch"):
            break
    for _ in range(signals):  # a second Ctrl-C while the first is handled must change nothing
        proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait()
    assert proc.returncode == 130
    lines = [x for x in rest.splitlines() if x.strip() and not x.startswith("epoch")]
    assert len(lines) == 1 and "Traceback" not in rest, rest
    assert lines[0].startswith(f"hamgrad: interrupted; run saved at {run}")
    assert lines[0].endswith(f"resume with: hamgrad train --resume {run}")
    assert proc.stdout.read() == ""
    done = subprocess.run(
        [sys.executable, "-m", "hamgrad", "train", "--resume", str(run), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 101))


def test_a_run_finds_its_dataset_from_another_directory_and_notices_changes(
    data, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from hamgrad.cli import main

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "d.h5").write_bytes(Path(data).read_bytes())
    monkeypatch.chdir(work)
    train(TrainConfig.from_mapping({"data": "d.h5", "runs_dir": "runs", "name": "r", **TINY}))
    monkeypatch.chdir(elsewhere)  # 0.1 looked for "d.h5" here
    run_dir = str(work / "runs/r")
    assert CliRunner().invoke(main, ["evaluate", run_dir]).exit_code == 0
    assert train(resume=run_dir).epochs == 3
    with h5py.File(work / "d.h5", "r+") as f:  # the data changes under the run
        f.attrs["noise_std"] = 0.5
    result = CliRunner().invoke(main, ["evaluate", run_dir])
    assert result.exit_code == 2 and "changed since the run was trained" in result.stderr
