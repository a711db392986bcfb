"""CLI: hamgrad simulate / info / list-systems."""

from __future__ import annotations

import importlib
import textwrap
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from hamgrad.cli import main
from hamgrad.data import load_dataset


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_simulate_then_info(tmp_path):
    out = tmp_path / "pend.h5"
    res = _run(
        "simulate",
        "pendulum",
        "--out",
        str(out),
        "--n-train",
        "4",
        "--n-val",
        "1",
        "--n-test",
        "2",
        "--steps",
        "10",
        "--steps-test",
        "30",
        "--dt",
        "0.05",
        "--noise",
        "0.01",
        "--seed",
        "3",
        "--param",
        "g=6",
        "--param",
        "m=0.5",
    )
    assert res.exit_code == 0, res.output
    ds = load_dataset(out)
    assert ds.system_params["g"] == 6.0 and ds.system_params["m"] == 0.5
    assert ds.attrs["seed"] == 3 and ds.attrs["noise_std"] == 0.01
    assert ds["test"].q.shape == (2, 31, 1)
    res = _run("info", str(out))
    assert res.exit_code == 0
    assert "[test] n_traj=2 n_t=31" in res.output and "q: [4, 11, 1] float64" in res.output
    assert "system: pendulum" in res.output


def test_simulate_shard_and_list_param(tmp_path):
    out = tmp_path / "nb.h5"
    res = _run(
        "simulate",
        "nbody",
        "--out",
        str(out),
        "--n-train",
        "3",
        "--n-val",
        "0",
        "--n-test",
        "0",
        "--steps",
        "5",
        "--param",
        "n=3",
        "--param",
        "masses=[1.0, 0.01, 0.02]",
        "--shard",
        "0/1",
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    ds = load_dataset(out)
    assert ds.dof == 6 and ds.system_params["masses"] == [1.0, 0.01, 0.02]
    assert ds.attrs["shard"] == "0/1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "pendulumm"], "unknown system 'pendulumm'; expected one of:"),
        (["simulate", "pendulum", "--param", "mass=2"], "unknown parameter 'mass'"),
        (["simulate", "pendulum", "--param", "g"], "--param must look like NAME=VALUE"),
        (["simulate", "pendulum", "--param", "g=-9"], "g must be a finite positive number"),
        (["simulate", "pendulum", "--dt", "0"], "dt must be a finite positive number, got 0"),
        (["simulate", "pendulum", "--shard", "2"], "--shard must look like INDEX/COUNT"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    res = _run(*args, "--out", str(tmp_path / "x.h5"))
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [res.output.strip()]
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.h5").exists()


def test_overwrite_flag(tmp_path):
    out = tmp_path / "s.h5"
    args = [
        "simulate",
        "spring",
        "--out",
        str(out),
        "--n-train",
        "2",
        "--n-val",
        "0",
        "--n-test",
        "0",
        "--steps",
        "3",
        "--quiet",
    ]
    assert _run(*args).exit_code == 0
    first = out.read_bytes()
    res = _run(*args, "--seed", "1")
    assert res.exit_code == 2 and "file exists" in res.output
    assert out.read_bytes() == first
    assert _run(*args, "--seed", "1", "--overwrite").exit_code == 0
    assert out.read_bytes() != first


def test_user_system_module_colon_class(tmp_path, monkeypatch):
    (tmp_path / "my_module.py").write_text(
        textwrap.dedent("""
        from dataclasses import dataclass

        from simulators import System

        @dataclass(frozen=True)
        class MySystem(System):
            c: float = 1.0
            dof = 2

            def hamiltonian(self, q, p):  # non-separable: coupling c q1 p2
                return 0.5 * (q**2 + p**2).sum(-1) + self.c * q[..., 0] * p[..., 1]

            def sample_state(self, rng):
                return rng.normal(size=2), rng.normal(size=2)
    """)
    )
    monkeypatch.chdir(tmp_path)
    res = _run(
        "simulate",
        "my_module:MySystem",
        "--out",
        "mine.h5",
        "--param",
        "c=0.3",
        "--n-train",
        "2",
        "--n-val",
        "0",
        "--n-test",
        "1",
        "--steps",
        "20",
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    ds = load_dataset(tmp_path / "mine.h5")
    assert ds.system == "my_module:MySystem" and ds.system_params == {"c": 0.3}
    assert ds.attrs["reference"].startswith("scipy DOP853")
    assert ds["train"].attrs["max_rel_energy_error"] < 1e-10
    assert np.all(np.isfinite(ds["test"].dp_dt))


def test_list_systems():
    res = _run("list-systems")
    assert res.exit_code == 0
    assert "kepler (alias two-body): dof=4" in res.output
    assert "double-pendulum: dof=2, non-separable" in res.output


def test_unwritable_out_is_found_before_simulating(tmp_path, monkeypatch):
    import simulators

    def must_not_run(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(simulators, "generate", must_not_run)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "x.h5", tmp_path / "afile"):
        result = _run("simulate", "pendulum", "--out", str(out))
        assert result.exit_code == 2 and result.stderr.startswith("hamgrad: error:"), result.output


def test_warnings_are_one_line_on_stderr(tmp_path, monkeypatch):
    gen = importlib.import_module("simulators.generate")

    def warn(*args, **kwargs):
        warnings.warn(
            "split 'train': trajectories [3]\nmet in a close encounter",
            gen.CloseEncounterWarning,
            stacklevel=2,
        )
        return real(*args, **kwargs)

    real = gen.reference_trajectories
    monkeypatch.setattr(gen, "reference_trajectories", warn)
    result = _run(
        "simulate",
        "spring",
        "--out",
        str(tmp_path / "s.h5"),
        "--n-train",
        "2",
        "--n-val",
        "0",
        "--n-test",
        "0",
        "--quiet",
    )
    assert result.exit_code == 0
    assert result.stderr == (
        "hamgrad: warning: split 'train': trajectories [3] met in a close encounter\n"
    )
