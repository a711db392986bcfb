"""simulators.generate: format v1 output, determinism, shards, noise, self-audit."""

from __future__ import annotations

import re
import sys
import textwrap

import numpy as np
import pytest
import rebound
import torch

from hamgrad.data import concatenate_datasets, load_dataset
from hamgrad.errors import ConfigError, DatasetError
from simulators import (
    SYSTEMS,
    CloseEncounterWarning,
    generate,
    get_system,
    shard_range,
    system_from_dataset,
)

CANONICAL = sorted(SYSTEMS)
FIELDS = ("t", "q", "p", "dq_dt", "dp_dt", "energy")


@pytest.mark.parametrize("name", CANONICAL)
def test_every_system_generates_a_valid_self_consistent_file(tmp_path, name):
    path = generate(
        name,
        tmp_path / f"{name}.h5",
        n_train=3,
        n_val=1,
        n_test=2,
        n_steps=20,
        n_steps_test=40,
        dt=0.05,
    )
    ds = load_dataset(path)
    assert ds.system == name and ds.dt == 0.05
    assert ds["train"].q.shape == (3, 21, ds.dof) and ds["test"].q.shape == (2, 41, ds.dof)
    system = system_from_dataset(ds)
    assert system.params == get_system(name).params
    for split in ds.splits.values():
        q, p = torch.from_numpy(split.q), torch.from_numpy(split.p)
        np.testing.assert_allclose(split.dq_dt, system.dH_dp(q, p).numpy(), rtol=1e-12)
        np.testing.assert_allclose(split.energy, system.hamiltonian(q, p).numpy(), rtol=1e-12)
        assert split.attrs["max_rel_energy_error"] < 1e-10
        # Stored derivatives agree with the trajectory itself (central differences, O(dt²)).
        fd = (split.q[:, 2:] - split.q[:, :-2]) / (2 * ds.dt)
        scale = np.abs(split.dq_dt).max()
        assert np.abs(fd - split.dq_dt[:, 1:-1]).max() < 0.05 * scale


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(n_train=4, n_val=2, n_test=2, n_steps=10, dt=0.1, noise_std=0.1)
    a = generate("double-pendulum", tmp_path / "a.h5", seed=1, **kw)
    b = generate("double-pendulum", tmp_path / "b.h5", seed=1, **kw)
    c = generate("double-pendulum", tmp_path / "c.h5", seed=2, **kw)
    assert a.read_bytes() == b.read_bytes()
    da, dc = load_dataset(a), load_dataset(c)
    assert not np.array_equal(da["train"].q, dc["train"].q)


@pytest.mark.parametrize(
    ("name", "batch_size"), [("double-pendulum", 2), ("pendulum", 3), ("three-body", 2)]
)
def test_shards_concatenate_to_the_unsharded_file(tmp_path, name, batch_size):
    kw = dict(
        n_train=7,
        n_val=3,
        n_test=5,
        n_steps=15,
        dt=0.1,
        noise_std=0.05,
        seed=9,
        batch_size=batch_size,
    )
    full = load_dataset(generate(name, tmp_path / "full.h5", **kw))
    shards = [generate(name, tmp_path / f"s{i}.h5", shard=(i, 3), **kw) for i in range(3)]
    joined = load_dataset(concatenate_datasets(shards, tmp_path / "joined.h5"))
    assert joined.attrs == full.attrs
    for split in full.splits:
        for field in FIELDS:
            np.testing.assert_array_equal(
                getattr(joined[split], field), getattr(full[split], field)
            )
        assert joined[split].attrs == full[split].attrs


def test_nbody_file_is_ias15_and_its_bytes_ignore_the_worker_count(tmp_path):
    kw = dict(
        n_train=6, n_val=0, n_test=2, n_steps=50, n_steps_test=100, dt=0.1, seed=3, params={"n": 5}
    )
    with pytest.warns(CloseEncounterWarning) as caught:
        one = generate("nbody", tmp_path / "one.h5", workers=1, **kw)
    with pytest.warns(CloseEncounterWarning):
        two = generate("nbody", tmp_path / "two.h5", workers=2, **kw)
    assert one.read_bytes() == two.read_bytes()
    ds = load_dataset(one)
    assert ds.attrs["reference"] == f"rebound IAS15 {rebound.__version__}"
    # The warning names the split and the trajectories, and their energy audit.
    message = str(caught[0].message)
    assert re.match(
        r"nbody: \d+ of \d+ (train|test) trajectories had a close encounter \(a "
        r"pair closer than 0.05 x its initial minimum separation\), first at "
        r"t=[\d.]+: trajectories [\d, ]+; max relative energy error \S+ for them, "
        r"\S+ for the others$",
        message,
    ), message
    assert max(s.attrs["max_rel_energy_error"] for s in ds.splits.values()) < 1e-10


def test_dop853_reference_on_request(tmp_path):
    kw = dict(n_train=2, n_val=0, n_test=0, n_steps=10, dt=0.1)
    ds = load_dataset(generate("three-body", tmp_path / "d.h5", reference="dop853", **kw))
    assert ds.attrs["reference"] == "scipy DOP853 rtol=1e-12 atol=1e-12 per component"
    with pytest.raises(
        ConfigError,
        match=r"unknown reference method 'rk45'; expected one of: "
        r"dop853, ias15",
    ):
        generate("three-body", tmp_path / "e.h5", reference="rk45", **kw)
    with pytest.raises(
        ConfigError,
        match=r"reference 'ias15' needs a gravitational n-body "
        r"system.*'pendulum'",
    ):
        generate("pendulum", tmp_path / "f.h5", reference="ias15", use_exact=False, **kw)


def test_shard_range_partitions_in_order():
    for n in (0, 1, 7, 64, 100):
        for count in (1, 2, 3, 8):
            parts = [shard_range(n, 4, (i, count)) for i in range(count)]
            assert [i for r in parts for i in r] == list(range(n))
            assert all(r.start % 4 == 0 for r in parts if len(r))


def test_trajectory_depends_on_seed_and_index_only(tmp_path):
    kw = dict(n_val=0, n_test=0, n_steps=10, dt=0.1, seed=5, noise_std=0.1)
    few = load_dataset(generate("spring", tmp_path / "few.h5", n_train=3, **kw))
    many = load_dataset(generate("spring", tmp_path / "many.h5", n_train=8, **kw))
    np.testing.assert_array_equal(few["train"].q, many["train"].q[:3])
    assert list(many.splits) == ["train"]


def test_noise_touches_observations_only(tmp_path):
    kw = dict(n_train=20, n_val=0, n_test=0, n_steps=50, dt=0.1, seed=0)
    clean = load_dataset(generate("spring", tmp_path / "c.h5", **kw))
    noisy = load_dataset(generate("spring", tmp_path / "n.h5", noise_std=0.1, **kw))
    diff = noisy["train"].q - clean["train"].q
    assert 0.09 < diff.std() < 0.11 and abs(diff.mean()) < 0.01
    np.testing.assert_array_equal(noisy["train"].dq_dt, clean["train"].dq_dt)
    np.testing.assert_array_equal(noisy["train"].energy, clean["train"].energy)
    assert noisy.attrs["noise_std"] == 0.1


def test_bad_arguments_are_named(tmp_path):
    base = dict(n_train=1, n_val=0, n_test=0, n_steps=5, dt=0.1)
    with pytest.raises(ConfigError, match=r"dt must be a finite positive number, got -0.1"):
        generate("spring", tmp_path / "x.h5", **{**base, "dt": -0.1})
    with pytest.raises(ConfigError, match=r"n_train must be an integer >= 0, got -1"):
        generate("spring", tmp_path / "x.h5", **{**base, "n_train": -1})
    with pytest.raises(ConfigError, match=r"must be >= 1, got 0 trajectories"):
        generate("spring", tmp_path / "x.h5", **{**base, "n_train": 0})
    with pytest.raises(ConfigError, match=r"shard must be \(index, count\)"):
        generate("spring", tmp_path / "x.h5", shard=(3, 3), **base)
    (tmp_path / "exists.h5").write_bytes(b"keep me")
    with pytest.raises(DatasetError, match=r"exists\.h5: file exists"):
        generate("spring", tmp_path / "exists.h5", **base)
    assert (tmp_path / "exists.h5").read_bytes() == b"keep me"


def test_system_from_dataset_needs_a_system(tmp_path):
    from hamgrad.data import Split, write_dataset

    t = np.arange(3.0)
    split = Split(t=t, q=np.zeros((1, 3, 1)), p=np.zeros((1, 3, 1)))
    ds = load_dataset(write_dataset(tmp_path / "x.h5", {"train": split}, {"dof": 1, "dt": 1.0}))
    with pytest.raises(DatasetError, match=r"x\.h5: attribute 'system' is absent"):
        system_from_dataset(ds)


def _dataset_naming(tmp_path, system: str, dof: int = 1, params: dict | None = None):
    from hamgrad.data import Split, write_dataset

    t = np.arange(3.0)
    split = Split(t=t, q=np.zeros((1, 3, dof)), p=np.zeros((1, 3, dof)))
    attrs = {"dof": dof, "dt": 1.0, "system": system, "system_params": params or {}}
    return load_dataset(write_dataset(tmp_path / "named.h5", {"train": split}, attrs))


def test_a_dataset_is_never_a_reason_to_import_code(tmp_path, monkeypatch, capsys):
    """issue 10: `this:X` printed the Zen of Python; a file must not choose code to run."""
    already = "this" in sys.modules
    ds = _dataset_naming(tmp_path, "this:X")
    with pytest.raises(
        DatasetError,
        match=r"named\.h5: attribute 'system' is 'this:X', a "
        r"module to import.*pass --system this:X on the "
        r"command line to trust it",
    ):
        system_from_dataset(ds)
    assert already or "this" not in sys.modules
    assert "Zen of Python" not in capsys.readouterr().out


def test_trusted_module_spec_is_imported_and_nothing_else(tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    (tmp_path / "marker_mod.py").write_text(
        textwrap.dedent(f"""
        import pathlib
        from dataclasses import dataclass

        from simulators import System

        pathlib.Path({str(marker)!r}).write_text("imported")

        @dataclass(frozen=True)
        class Thing(System):
            k: float = 1.0
            separable = True
            dof = 1

            def hamiltonian(self, q, p):
                return (p**2 / 2 + self.k * q**2 / 2).sum(-1)

            def sample_state(self, rng):
                return rng.uniform(-1, 1, 1), rng.uniform(-1, 1, 1)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "marker_mod", raising=False)
    ds = _dataset_naming(tmp_path, "marker_mod:Thing", params={"k": 3.0})
    with pytest.raises(DatasetError, match=r"pass --system marker_mod:Thing on the command"):
        system_from_dataset(ds)
    with pytest.raises(
        DatasetError,
        match=r"'system' is 'marker_mod:Thing' but the trusted "
        r"system is 'other_mod:Thing'",
    ):
        system_from_dataset(ds, trusted_system="other_mod:Thing")
    assert not marker.exists() and "marker_mod" not in sys.modules
    system = system_from_dataset(ds, trusted_system="marker_mod:Thing")
    assert marker.read_text() == "imported"
    assert system.name == "marker_mod:Thing" and system.params == {"k": 3.0}


def test_registry_names_need_no_trust_and_a_trusted_name_fills_a_missing_one(tmp_path):
    ds = _dataset_naming(tmp_path, "two-body", dof=4, params={"m1": 2.0})
    assert system_from_dataset(ds) == get_system("kepler", m1=2.0)
    assert system_from_dataset(ds, trusted_system="kepler") == get_system("kepler", m1=2.0)
    with pytest.raises(
        DatasetError,
        match=r"attribute 'system' is 'two-body' but the trusted "
        r"system is 'pendulum'",
    ):
        system_from_dataset(ds, trusted_system="pendulum")
    unnamed = load_dataset(tmp_path / "named.h5")
    unnamed.attrs.pop("system")
    assert system_from_dataset(unnamed, trusted_system="kepler") == get_system("kepler", m1=2.0)
    unnamed.attrs.pop("system_params")
    with pytest.raises(
        DatasetError,
        match=r"attribute 'dof' is 4 but system 'pendulum' has "
        r"dof 1",
    ):
        system_from_dataset(unnamed, trusted_system="pendulum")
