"""The one atomic-write mechanism every writer uses (datasets, checkpoints, JSON)."""

import pytest

from hamgrad._atomic import atomic_target
from hamgrad.errors import ConfigError


def test_creates_missing_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    with atomic_target(target) as tmp:
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing under the target name until the write is done
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_error_mid_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_target(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_parent_that_is_a_file_is_named(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="afile is a file, expected a directory"), \
            atomic_target(blocker / "sub" / "out.bin"):
        pass
