"""Atomic file replacement: write to a temporary file beside the target, then ``os.replace``.

One mechanism for every writer in hamgrad (HDF5 datasets, checkpoints, JSON, plots). A crash
or an error mid-write leaves no file under the target name and never damages an existing one,
since ``os.replace`` is atomic within one file system; the data is flushed and ``fsync``-ed
before the rename, so ``--resume`` can trust ``last.pt`` after a power cut too.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

from hamgrad.errors import ConfigError

__all__ = [
    "atomic_target",
    "atomic_write",
    "check_writable",
    "write_json",
    "write_jsonl",
    "write_torch",
]


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; restore at once
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Delete temporary files for ``path`` left by processes that died mid-write (kill -9).

    Temporary names carry their writer's PID (``.<name>.<pid>.<random>.tmp``); a file whose
    writer is still alive is another process's write in progress and is left alone.
    """
    prefix = f".{path.name}."
    for entry in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            entry.unlink(missing_ok=True)


def _parent_dir(path: Path) -> None:
    """Create the parent directory of ``path`` (``mkdir -p``), or raise `ConfigError`."""
    blocker = next(
        (d for d in (path.parent, *path.parent.parents) if d.exists() and not d.is_dir()), None
    )
    if blocker is not None:
        raise ConfigError(f"cannot write {path}: {blocker} is a file, expected a directory")
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory, expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}; expected a writable "
            f"directory {path.parent}"
        ) from None


def _temporary(path: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:
        # Name the target the user asked for, not the temporary file.
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}; expected a writable "
            f"directory {path.parent}"
        ) from None
    os.close(fd)
    return Path(tmp)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail fast: raise `ConfigError` now if ``path`` could not be written later.

    Creates the parent directory and a probe file beside the target, then removes the probe;
    commands call it before long work (a simulation, a long rollout) so a bad ``--out`` costs
    nothing.
    """
    path = Path(path)
    _parent_dir(path)
    _temporary(path).unlink()
    return path


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The parent directory is created if missing (``mkdir -p``), so ``--out data/new/x.h5`` works;
    a location that cannot be written raises `ConfigError` naming the target. Temporary files
    that a killed writer left for the same target are removed first. The new file gets the
    permissions of a newly created file under the process umask (not the 0600 of a temporary
    file).
    """
    path = Path(path)
    _parent_dir(path)
    _remove_orphans(path)
    tmp = _temporary(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then move it into place."""
    path = Path(path)
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (UTF-8, trailing newline) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Write one JSON object per line atomically (the whole file is rewritten)."""
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` atomically; ``obj`` must hold only tensors and plain Python values."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))
