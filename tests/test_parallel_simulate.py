"""Simulation in parallel: ``--workers N`` and shards joined by ``hamgrad join`` give the bytes
of the single-process file."""

from __future__ import annotations

import random
import warnings

import pytest
from click.testing import CliRunner

from hamgrad.cli import main
from simulators import generate
from simulators.generate import CloseEncounterWarning

# Small but cut many ways: 11 training trajectories in blocks of 2 (6 blocks), noise on.
ARGS = ["--n-train", "11", "--n-val", "3", "--n-test", "5", "--steps", "12", "--steps-test"]
ARGS += ["20", "--dt", "0.1", "--noise", "0.01", "--seed", "4", "--batch-size", "2", "--quiet"]


def _simulate(system: str, out, *extra: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloseEncounterWarning)
        result = CliRunner().invoke(main, ["simulate", system, "--out", str(out), *ARGS, *extra])
    assert result.exit_code == 0, result.output
    return out.read_bytes()


@pytest.mark.parametrize(
    ("system", "smaller"),
    [
        ("three-body", []),  # REBOUND IAS15, one simulation per trajectory
        ("kepler", []),  # closed form
        # scipy DOP853 in blocks of --batch-size (slow at rtol 1e-12: fewer, shorter)
        (
            "double-pendulum",
            ["--n-train", "5", "--n-test", "1", "--steps", "4", "--steps-test", "6"],
        ),
    ],
)
def test_workers_write_the_single_process_bytes(tmp_path, system, smaller):
    one = _simulate(system, tmp_path / "one.h5", "--workers", "1", *smaller)
    assert _simulate(system, tmp_path / "three.h5", "--workers", "3", *smaller) == one
    assert _simulate(system, tmp_path / "default.h5", *smaller) == one


def test_shards_from_separate_jobs_join_to_the_single_process_bytes(tmp_path):
    whole = _simulate("three-body", tmp_path / "whole.h5")
    shards = [tmp_path / f"part{i}.h5" for i in range(4)]
    for i, shard in enumerate(shards):  # as a cluster's array job 0..3 would
        _simulate("three-body", shard, "--shard", f"{i}/4", *(["--workers", "2"] if i else []))
    random.Random(1).shuffle(shards)  # a shell glob's order: join sorts by shard number
    result = CliRunner().invoke(main, ["join", str(tmp_path / "joined.h5"), *map(str, shards)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "joined.h5").read_bytes() == whole


def test_join_refuses_shards_of_another_seed_with_one_line(tmp_path):
    kw = dict(n_train=8, n_val=0, n_test=0, n_steps=5, dt=0.1, batch_size=2)
    a = generate("pendulum", tmp_path / "a.h5", seed=1, shard=(0, 2), **kw)
    b = generate("pendulum", tmp_path / "b.h5", seed=2, shard=(1, 2), **kw)
    result = CliRunner().invoke(main, ["join", str(tmp_path / "j.h5"), str(a), str(b)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "attributes ['seed'] differ" in result.stderr


def test_bad_workers_and_compression_are_refused_before_work(tmp_path):
    out = tmp_path / "x.h5"
    for extra, message in [
        (["--workers", "0"], "--workers"),
        (["--compression", "zstd"], "--compression"),
    ]:
        result = CliRunner().invoke(main, ["simulate", "pendulum", "--out", str(out), *extra])
        assert result.exit_code == 2 and message in result.stderr
    assert not out.exists()
