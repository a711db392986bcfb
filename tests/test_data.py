"""hamgrad.data: the HDF5 format v1 round trip, validation errors and atomic writes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hamgrad.cli import main
from hamgrad.data import Split, concatenate_datasets, load_dataset, write_dataset
from hamgrad.errors import DatasetError

DOF, NT, DT = 2, 5, 0.25


def _split(rng: np.random.Generator, n_traj: int = 3, n_t: int = NT, full: bool = True) -> Split:
    shape = (n_traj, n_t, DOF)
    extra = {}
    if full:
        extra = {
            "dq_dt": rng.standard_normal(shape),
            "dp_dt": rng.standard_normal(shape),
            "energy": rng.standard_normal(shape[:2]),
        }
    return Split(
        t=DT * np.arange(n_t, dtype=np.float64),
        q=rng.standard_normal(shape),
        p=rng.standard_normal(shape),
        **extra,
    )


ATTRS = {
    "dof": DOF,
    "dt": DT,
    "system": "spring-chain",
    "system_params": {"n": 2, "m": 1.0},
    "seed": 3,
    "noise_std": 0.0,
    "reference": "test",
}


def test_round_trip_values_dtypes_attrs(tmp_path, rng):
    splits = {"train": _split(rng), "test": _split(rng, n_traj=2, n_t=9)}
    splits["train"].attrs["max_rel_energy_error"] = 1.5e-15
    path = write_dataset(tmp_path / "d.h5", splits, ATTRS)
    ds = load_dataset(path)
    assert ds.path == path and ds.dof == DOF and ds.dt == DT
    assert ds.system == "spring-chain" and ds.system_params == {"n": 2, "m": 1.0}
    assert ds.attrs["format"] == "hamgrad.trajectories" and ds.attrs["format_version"] == 1
    assert ds.attrs["seed"] == 3 and ds.attrs["created_by"].startswith("hamgrad ")
    assert list(ds.splits) == ["train", "test"]
    for name, split in splits.items():
        got = ds[name]
        for field in ("t", "q", "p", "dq_dt", "dp_dt", "energy"):
            arr = getattr(got, field)
            assert arr.dtype == np.float64
            np.testing.assert_array_equal(arr, getattr(split, field))
    assert ds["train"].attrs == {"max_rel_energy_error": 1.5e-15}
    assert ds["test"].n_t == 9 and ds["test"].n_traj == 2


def test_file_with_only_required_fields_loads(tmp_path, rng):
    path = tmp_path / "min.h5"
    split = _split(rng, full=False)
    with h5py.File(path, "w") as f:
        f.attrs.update(
            {"format": "hamgrad.trajectories", "format_version": 1, "dof": DOF, "dt": DT}
        )
        g = f.create_group("val")
        for name in ("t", "q", "p"):
            g[name] = getattr(split, name)
    ds = load_dataset(path)
    assert ds.system is None and ds.system_params == {}
    assert ds.split("val").dq_dt is None and ds["val"].energy is None
    with pytest.raises(DatasetError, match=r"min\.h5: split 'train' is absent; the file holds"):
        ds.split("train")


def _corrupt(path: Path, action) -> None:
    with h5py.File(path, "a") as f:
        action(f)


def _replace(group: str, name: str, value):
    def act(f):
        del f[group][name]
        f[group][name] = value

    return act


MALFORMED = {
    "not_hdf5": (None, r"not an HDF5 file"),
    "missing_file": (None, r"no such file"),
    "unknown_version": (
        lambda f: f.attrs.__setitem__("format_version", 2),
        r"attribute 'format_version': is 2, expected 1",
    ),
    "wrong_format": (
        lambda f: f.attrs.__setitem__("format", "other"),
        r"attribute 'format': is 'other'",
    ),
    "missing_dof": (lambda f: f.attrs.__delitem__("dof"), r"attribute 'dof': is None"),
    "no_groups": (lambda f: [f.__delitem__(n) for n in list(f)], r"no split group"),
    "missing_q": (lambda f: f["train"].__delitem__("q"), r"split 'train': q: is missing"),
    "wrong_shape": (
        _replace("train", "p", np.zeros((3, NT, DOF + 1))),
        r"split 'train': p: shape is \[3, 5, 3\], expected \[3, 5, 2\]",
    ),
    "nan": (
        _replace("train", "dq_dt", np.full((3, NT, DOF), np.nan)),
        r"split 'train': dq_dt: contains 30 NaN/inf values",
    ),
    "inf_energy": (
        _replace("train", "energy", np.full((3, NT), np.inf)),
        r"split 'train': energy: contains 15 NaN/inf",
    ),
    "wrong_dtype": (
        _replace("train", "q", np.zeros((3, NT, DOF), dtype=np.float32)),
        r"split 'train': q: dtype is float32, expected float64",
    ),
    "bad_t_spacing": (
        _replace("train", "t", np.linspace(0, 1, NT) ** 2),
        r"split 'train': t: spacing is not the file's dt=0.25",
    ),
    "bad_params_json": (
        lambda f: f.attrs.__setitem__("system_params", "{oops"),
        r"attribute 'system_params': is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_give_clear_errors_and_cli_exit_2(tmp_path, rng, case):
    path = tmp_path / f"{case}.h5"
    action, pattern = MALFORMED[case]
    if case == "not_hdf5":
        path.write_text("this is not a dataset\n")
    elif case != "missing_file":
        write_dataset(path, {"train": _split(rng)}, ATTRS)
        _corrupt(path, action)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset(path)
    assert str(path) in str(info.value)
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hamgrad: error: ") and str(path) in lines[0]


def test_writer_rejects_what_the_reader_would(tmp_path, rng):
    bad = _split(rng)
    bad.q = bad.q[:, :, :1]
    with pytest.raises(DatasetError, match=r"split 'train': q: shape is"):
        write_dataset(tmp_path / "x.h5", {"train": bad}, ATTRS)
    with pytest.raises(DatasetError, match=r"split name 'training'"):
        write_dataset(tmp_path / "x.h5", {"training": _split(rng)}, ATTRS)
    assert not (tmp_path / "x.h5").exists()


def test_existing_file_needs_overwrite(tmp_path, rng):
    path = write_dataset(tmp_path / "d.h5", {"train": _split(rng)}, ATTRS)
    with pytest.raises(DatasetError, match=r"d\.h5: file exists; pass overwrite=True"):
        write_dataset(path, {"train": _split(rng)}, ATTRS)
    write_dataset(path, {"val": _split(rng)}, ATTRS, overwrite=True)
    assert list(load_dataset(path).splits) == ["val"]


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_write_leaves_no_target_and_no_temp(tmp_path, rng, monkeypatch, existing):
    target = tmp_path / "d.h5"
    if existing:
        write_dataset(target, {"train": _split(rng)}, ATTRS)
        before = target.read_bytes()
    calls = {"n": 0}
    original = h5py.Group.create_dataset

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # die half way through the file
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(target, {"train": _split(rng)}, ATTRS, overwrite=True)
    assert calls["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == (["d.h5"] if existing else [])
    if existing:
        assert target.read_bytes() == before


def test_concatenate_checks_compatibility(tmp_path, rng):
    a = write_dataset(tmp_path / "a.h5", {"train": _split(rng)}, {**ATTRS, "shard": "0/2"})
    b = write_dataset(
        tmp_path / "b.h5", {"train": _split(rng, n_traj=1)}, {**ATTRS, "shard": "1/2"}
    )
    out = concatenate_datasets([a, b], tmp_path / "ab.h5")
    joined = load_dataset(out)
    assert joined["train"].n_traj == 4 and "shard" not in joined.attrs
    c = write_dataset(tmp_path / "c.h5", {"train": _split(rng)}, {**ATTRS, "seed": 4})
    with pytest.raises(DatasetError, match=r"attributes \['seed'\] differ"):
        concatenate_datasets([a, c], tmp_path / "ac.h5")
