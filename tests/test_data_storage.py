"""hamgrad.data storage: chunked writing, lazy block reading and its checks, joining shards."""

from __future__ import annotations

import itertools
import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from test_data import ATTRS, DOF, _split

from hamgrad.cli import main
from hamgrad.data import (
    CHUNK_BYTES,
    DatasetWriter,
    concatenate_datasets,
    load_dataset,
    open_dataset,
    write_dataset,
)
from hamgrad.errors import ConfigError, DatasetError


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_chunks_of_whole_trajectories_with_checksums_and_recorded_compression(
    tmp_path, rng, compression
):
    n_t = 20_000  # 320 KB per trajectory of q: three trajectories per chunk
    split = _split(rng, n_traj=7, n_t=n_t)
    path = write_dataset(tmp_path / "d.h5", {"train": split}, ATTRS, compression=compression)
    with h5py.File(path, "r") as f:
        for name in ("q", "p", "dq_dt", "dp_dt", "energy"):
            d = f["train"][name]
            rows = CHUNK_BYTES // (8 * n_t * DOF)
            assert d.chunks[:2] == (rows, n_t) and d.fletcher32
            assert d.compression == (compression if compression != "lzf" else "lzf")
    with open_dataset(path) as ds:
        assert ds["train"].compression() == compression
        np.testing.assert_array_equal(ds["train"].read(2, 5)["q"], split.q[2:5])


def test_old_contiguous_files_still_load_whole_and_lazily(tmp_path, rng):
    split = _split(rng)
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # the layout of hamgrad 0.2
        f.attrs.update({**ATTRS, "system_params": "{}", "format": "hamgrad.trajectories"})
        f.attrs["format_version"] = 1
        for name in ("t", "q", "p", "dq_dt", "dp_dt", "energy"):
            f[f"train/{name}"] = getattr(split, name)
    np.testing.assert_array_equal(load_dataset(path)["train"].p, split.p)
    with open_dataset(path) as ds:
        assert ds["train"].layout("q") == "contiguous"
        np.testing.assert_array_equal(
            ds["train"].read(1, 2, ["energy"])["energy"], split.energy[1:2]
        )


def test_values_are_checked_block_by_block_as_read(tmp_path, rng):
    split = _split(rng, n_traj=6)
    split.dp_dt[4, 2, 1] = np.nan
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:  # a file another program wrote, NaN included
        f.attrs.update({**ATTRS, "system_params": "{}", "format": "hamgrad.trajectories"})
        f.attrs["format_version"] = 1
        for name in ("t", "q", "p", "dq_dt", "dp_dt"):
            f[f"train/{name}"] = getattr(split, name)
    with open_dataset(path) as ds:  # headers only: opens
        reader = ds["train"]
        reader.read(0, 4)
        with pytest.raises(
            DatasetError, match=r"dp_dt: contains 1 NaN/inf values in trajectories 3..5"
        ):
            reader.read(3, 6)
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2 and "dp_dt: contains 1 NaN/inf values" in result.stderr


def test_a_damaged_chunk_fails_its_checksum(tmp_path, rng):
    path = write_dataset(tmp_path / "d.h5", {"train": _split(rng, n_traj=4)}, ATTRS)
    with h5py.File(path, "r") as f:
        offset = f["train/q"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 8] ^= 0x01  # one bit of one number: still finite, but not what was written
    path.write_bytes(bytes(raw))
    with open_dataset(path) as ds, pytest.raises(DatasetError, match=r"d\.h5: split 'train'"):
        ds["train"].read(0, 4, ["q"])


def test_a_chunked_array_with_unwritten_chunks_is_refused_on_opening(tmp_path, rng):
    path = write_dataset(tmp_path / "d.h5", {"train": _split(rng)}, ATTRS)
    with h5py.File(path, "r+") as f:
        del f["train/p"]
        d = f["train"].create_dataset("p", shape=(3, 5, DOF), dtype="f8", chunks=(1, 5, DOF))
        d[0] = 1.0  # one chunk of three
    with pytest.raises(DatasetError, match=r"p: claims a \[3, 5, 2\] float64 array"):
        open_dataset(path)


def test_the_writer_takes_any_blocks_and_writes_the_same_bytes(tmp_path, rng):
    split = _split(rng, n_traj=9, n_t=20_000)  # three trajectories per chunk
    whole = write_dataset(tmp_path / "a.h5", {"val": split}, ATTRS, compression="gzip")
    cuts = [0, 1, 5, 6, 9]
    with DatasetWriter(tmp_path / "b.h5", ATTRS, compression="gzip") as w:
        blocks = (split.read(a, b) for a, b in itertools.pairwise(cuts))
        w.write_split("val", split.t, 9, split.fields, blocks)
    assert (tmp_path / "b.h5").read_bytes() == whole.read_bytes()


def test_the_writer_refuses_a_wrong_count_and_leaves_no_file(tmp_path, rng):
    split = _split(rng, n_traj=4)
    with pytest.raises(DatasetError, match=r"got 3 trajectories, expected n_traj=4"):
        with DatasetWriter(tmp_path / "x.h5", ATTRS) as w:
            w.write_split("train", split.t, 4, split.fields, [split.read(0, 3)])
    with pytest.raises(DatasetError, match=r"more than the declared n_traj=2"):
        with DatasetWriter(tmp_path / "x.h5", ATTRS) as w:
            w.write_split("train", split.t, 2, split.fields, [split.read(0, 4)])
    with pytest.raises(ConfigError, match=r"compression must be one of gzip, lzf"):
        DatasetWriter(tmp_path / "x.h5", ATTRS, compression="zstd")
    assert list(tmp_path.iterdir()) == []


def _shards(tmp_path, rng, n=3, **attrs):
    """Shard files of one fake simulation: shard i holds i + 1 training trajectories."""
    counts = list(range(1, n + 1))
    full = _split(rng, n_traj=sum(counts))
    bounds = np.cumsum([0, *counts])
    paths = []
    for i in range(n):
        part = full.read(bounds[i], bounds[i + 1])
        shard = type(full)(t=full.t, attrs={"max_rel_energy_error": float(i)}, **part)
        meta = {**ATTRS, "n_train": sum(counts), "shard": f"{i}/{n}", **attrs}
        paths.append(write_dataset(tmp_path / f"s{i}.h5", {"train": shard}, meta))
    return full, paths


def test_join_orders_shards_and_gives_the_unsharded_bytes(tmp_path, rng):
    full, paths = _shards(tmp_path, rng)
    full.attrs = {"max_rel_energy_error": 2.0}
    want = write_dataset(tmp_path / "full.h5", {"train": full}, {**ATTRS, "n_train": 6})
    result = CliRunner().invoke(main, ["join", str(tmp_path / "j.h5"), *map(str, paths[::-1])])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "j.h5").read_bytes() == want.read_bytes()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("gap", r"gap: shard 1/3 is missing"),
        ("overlap", r"overlap: .*s1\.h5 and .*s1\.h5 are both shard 1/3"),
        ("system", r"attributes \['system'\] differ .*system is 'pendulum' here"),
        ("seed", r"attributes \['seed'\] differ"),
        ("params", r"attributes \['system_params'\] differ"),
        ("splits", r"attributes \['n_train'\] differ"),
        ("count", r"shards of different counts \[3, 4\]"),
    ],
)
def test_join_refuses_shards_that_do_not_make_one_file(tmp_path, rng, case, message):
    _, paths = _shards(tmp_path, rng)
    odd = {
        "system": {"system": "pendulum"},
        "seed": {"seed": 4},
        "params": {"system_params": {"n": 3, "m": 1.0}},
        "splits": {"n_train": 7},
        "count": {"shard": "1/4"},
    }
    if case == "gap":
        paths = [paths[0], paths[2]]
    elif case == "overlap":
        paths = [paths[0], paths[1], paths[1], paths[2]]
    else:
        split = load_dataset(paths[1])["train"]
        meta = {**ATTRS, "n_train": 6, "shard": "1/3", **odd[case]}
        paths[1] = write_dataset(tmp_path / "odd.h5", {"train": split}, meta)
    result = CliRunner().invoke(main, ["join", str(tmp_path / "j.h5"), *map(str, paths)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hamgrad: error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "j.h5").exists()
    with pytest.raises(DatasetError, match=message):
        concatenate_datasets(paths, tmp_path / "j.h5")
