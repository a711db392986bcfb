"""The one atomic-write mechanism every writer uses (datasets, checkpoints, JSON)."""

import os
import stat
import subprocess
import sys

import pytest

from hamgrad._atomic import atomic_target, check_writable
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
    with (
        pytest.raises(ConfigError, match="afile is a file, expected a directory"),
        atomic_target(blocker / "sub" / "out.bin"),
    ):
        pass


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out.bin"
    orphan = tmp_path / f".out.bin.{_dead_pid()}.abc123.tmp"  # as kill -9 mid-write leaves it
    orphan.write_bytes(b"half")
    live = tmp_path / f".out.bin.{os.getppid()}.def456.tmp"  # a live process's write
    live.write_bytes(b"in progress")
    other = tmp_path / f".other.bin.{_dead_pid()}.x.tmp"  # another target's: not ours to judge
    other.write_bytes(b"x")
    with atomic_target(target) as tmp:
        tmp.write_bytes(b"new")
    assert not orphan.exists() and live.exists() and other.exists()


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_target(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"x")
        os.umask(0o077)
        with atomic_target(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600


def test_check_writable_fails_fast_and_leaves_nothing(tmp_path):
    assert check_writable(tmp_path / "new" / "x.h5") == tmp_path / "new" / "x.h5"
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError, match="it is a directory"):
        check_writable(tmp_path / "adir")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, expected a directory"):
        check_writable(tmp_path / "f" / "x.h5")
