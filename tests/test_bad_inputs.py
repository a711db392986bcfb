"""Bad input to the command line: one line on stderr, exit code 2, no traceback, nothing lost.

Every case here gave a traceback in version 0.1 (issue 10, item 5). Each builds its bad input
in a fresh directory, runs the command through click, and checks the answer and that no file
that existed before was changed. A sample also runs through the installed console script.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_training_helpers import _one_thread, make_dataset  # noqa: F401

from hamgrad.cli import main

TINY = [
    "--epochs",
    "1",
    "--hidden",
    "6",
    "--depth",
    "1",
    "--batch-size",
    "64",
    "--threads",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A dataset and a trained run, copied into each case's directory."""
    root = tmp_path_factory.mktemp("base")
    data = make_dataset(root / "d.h5", "pendulum", n_train=6, n_val=2, n_test=2, n_steps=20)
    result = CliRunner().invoke(
        main, ["train", "--data", str(data), "--runs-dir", str(root / "runs"), "--name", "r", *TINY]
    )
    assert result.exit_code == 0, result.output
    return root


# -- how each bad input is made (in a copy of `base`); each returns the arguments to run --------
def _damaged_hdf5(d: Path) -> list[str]:
    raw = bytearray((d / "d.h5").read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 4096] = b"\xa5" * 4096
    (d / "d.h5").write_bytes(bytes(raw))
    return ["info", str(d / "d.h5")]


def _edit(d: Path, action: Callable[[h5py.File], None]) -> None:
    with h5py.File(d / "d.h5", "r+") as f:
        action(f)


def _soft_link(d: Path) -> list[str]:
    def act(f):
        f["train/q_data"] = f["train/q"][()]
        del f["train/q"]
        f["train/q"] = h5py.SoftLink("/train/q_data")

    _edit(d, act)
    return ["train", "--data", str(d / "d.h5"), "--runs-dir", str(d / "runs"), *TINY]


def _external_link(d: Path) -> list[str]:
    with h5py.File(d / "other.h5", "w") as f:
        f["q"] = np.zeros((6, 21, 1))

    def act(f):
        del f["train/q"]
        f["train/q"] = h5py.ExternalLink(str(d / "other.h5"), "/q")

    _edit(d, act)
    return ["info", str(d / "d.h5")]


def _array_format(d: Path) -> list[str]:
    _edit(d, lambda f: f.attrs.__setitem__("format", np.array([b"hamgrad.trajectories"] * 2)))
    return ["info", str(d / "d.h5")]


def _group_for_q(d: Path) -> list[str]:
    def act(f):
        del f["train/q"]
        f.create_group("train/q")

    _edit(d, act)
    return ["info", str(d / "d.h5")]


def _huge_claim(d: Path) -> list[str]:
    path = d / "huge.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(format="hamgrad.trajectories", format_version=1, dof=1, dt=0.1)
        f.create_dataset("train/t", data=0.1 * np.arange(2.0))
        # 745 GiB declared, nothing written: HDF5 allocates late, so the file stays tiny.
        f.create_dataset("train/q", shape=(50_000_000, 2, 1000), dtype="f8")
        f.create_dataset("train/p", shape=(50_000_000, 2, 1000), dtype="f8")
    assert path.stat().st_size < 16_384
    return ["info", str(path)]


def _last_pt(d: Path, damage: Callable[[dict], None]) -> list[str]:
    last = d / "runs/r/last.pt"
    ckpt = torch.load(last, weights_only=True)
    damage(ckpt)
    torch.save(ckpt, last)
    return ["train", "--resume", str(d / "runs/r")]


def _legacy_bad_log(d: Path) -> list[str]:
    def damage(ckpt):
        del ckpt["history"]  # a version-0.1 checkpoint: resume reads the log

    (d / "runs/r/metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    return _last_pt(d, damage)


def _config_not_object(d: Path, command: str) -> list[str]:
    (d / "runs/r/config.json").write_text("[1, 2, 3]\n")
    return (
        [command, str(d / "runs/r")]
        if command != "train"
        else ["train", "--resume", str(d / "runs/r")]
    )


def _truncated_checkpoint(d: Path) -> list[str]:
    best = d / "runs/r/best.pt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    return ["evaluate", str(d / "runs/r")]


def _toml(d: Path, content: bytes) -> list[str]:
    (d / "c.toml").write_bytes(content)
    return ["train", "--config", str(d / "c.toml")]


# name -> (make the input and return argv, fragment of the one-line message)
CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "hdf5 with 4 KiB overwritten": (_damaged_hdf5, "d.h5"),
    "soft link for a dataset": (_soft_link, "is a SoftLink; expected the data itself"),
    "external link for a dataset": (_external_link, "is a ExternalLink; expected the data"),
    "array-valued format attribute": (_array_format, "attribute 'format'"),
    "group where q should be": (_group_for_q, "q: is a Group; expected a Dataset"),
    "8 KiB file claiming 745 GiB": (_huge_claim, "claims a [50000000, 2, 1000] float64 array"),
    "absurd --steps": (
        lambda d: [
            "rollout",
            str(d / "runs/r"),
            "--steps",
            "10000000000000",
            "--out",
            str(d / "p.h5"),
        ],
        "would need about",
    ),
    "absurd --horizon": (
        lambda d: ["evaluate", str(d / "runs/r"), "--horizon", "10000000000000"],
        "would need about",
    ),
    "absurd --hidden": (
        lambda d: [
            "train",
            "--data",
            str(d / "d.h5"),
            "--runs-dir",
            str(d / "runs"),
            "--hidden",
            "10000000000",
            "--epochs",
            "1",
        ],
        "would need about",
    ),
    "toml that is not utf-8": (lambda d: _toml(d, b'data = "\xff"\n'), "expected UTF-8 TOML"),
    "toml lr = true": (
        lambda d: _toml(d, b'data = "d.h5"\nlr = true\n'),
        "lr must be a real number, got True",
    ),
    "--param normalize=maybe": (
        lambda d: ["train", "--data", str(d / "d.h5"), "--param", "normalize=maybe", *TINY],
        "must be true or false",
    ),
    "resume: weights of the wrong shape": (
        lambda d: _last_pt(
            d,
            lambda c: c["model_state"].update(
                {k: v[..., :1] for k, v in c["model_state"].items() if v.dim()}
            ),
        ),
        "last.pt",
    ),
    "resume: a missing key": (lambda d: _last_pt(d, lambda c: c.pop("scheduler_state")), "last.pt"),
    "resume: a bad RNG state": (
        lambda d: _last_pt(d, lambda c: c.update(rng_state=torch.zeros(7, dtype=torch.uint8))),
        "last.pt",
    ),
    "resume: a bad epoch": (
        lambda d: _last_pt(d, lambda c: c.update(epoch="three")),
        "epoch is 'three'",
    ),
    "resume: a bad line in a 0.1 metrics.jsonl": (_legacy_bad_log, "line 2: not a metrics row"),
    "config.json not an object (evaluate)": (
        lambda d: _config_not_object(d, "evaluate"),
        "holds a JSON list",
    ),
    "config.json not an object (resume)": (
        lambda d: _config_not_object(d, "train"),
        "holds a JSON list",
    ),
    "config.json not an object (rollout)": (
        lambda d: _config_not_object(d, "rollout"),
        "holds a JSON list",
    ),
    "truncated checkpoint": (_truncated_checkpoint, "best.pt could not be read"),
    "--dt abc": (
        lambda d: ["simulate", "pendulum", "--out", str(d / "x.h5"), "--dt", "abc"],
        "'abc' is not a valid float",
    ),
    "output path that is a directory": (
        lambda d: ["simulate", "pendulum", "--out", str(d / "runs")],
        "is a directory",
    ),
    "unwritable --out found before simulating": (
        lambda d: ["simulate", "pendulum", "--out", str(d / "d.h5" / "x.h5")],
        "d.h5 is a file, expected a directory",
    ),
}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_loses_nothing(case, base, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(base, work)
    make, fragment = CASES[case]
    args = make(work)
    before = _tree(work)
    result = CliRunner().invoke(main, args)
    err = result.stderr.strip()
    assert result.exit_code == 2, (result.output, result.exception)
    assert err.startswith("hamgrad: error:") and "\n" not in err, err
    assert fragment in err, err
    assert "Traceback" not in result.output
    assert _tree(work) == before


SAMPLE = [
    "8 KiB file claiming 745 GiB",
    "--dt abc",
    "config.json not an object (evaluate)",
    "truncated checkpoint",
]


@pytest.mark.parametrize("case", SAMPLE)
def test_a_sample_through_the_console_script(case, base, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(base, work)
    make, fragment = CASES[case]
    script = Path(sys.executable).with_name("hamgrad")
    proc = subprocess.run([str(script), *make(work)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("hamgrad: error:")
    assert fragment in proc.stderr and proc.stdout == ""


def test_metrics_of_an_evaluated_run_are_strict_json(base, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(base, work)
    assert CliRunner().invoke(main, ["evaluate", str(work / "runs/r")]).exit_code == 0
    json.loads(
        (work / "runs/r/metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"),
    )


def test_absurd_n_train_is_refused_before_any_work(tmp_path, monkeypatch):
    """0.1 grew memory until the machine killed it."""
    gen = importlib.import_module("simulators.generate")  # the module, not the function

    monkeypatch.setattr(gen, "reference_trajectories", lambda *a, **k: pytest.fail("simulated"))
    result = CliRunner().invoke(
        main,
        ["simulate", "pendulum", "--out", str(tmp_path / "x.h5"), "--n-train", "1000000000000"],
    )
    assert result.exit_code == 2
    assert "would need about" in result.stderr and "--shard" in result.stderr
    assert not (tmp_path / "x.h5").exists()
