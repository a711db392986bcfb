"""Atomic file replacement: write to a temporary file beside the target, then ``os.replace``.

One mechanism for every writer in hamgrad (HDF5 datasets, checkpoints, JSON). A crash or an
error mid-write leaves no file under the target name and never damages an existing one, since
``os.replace`` is atomic within one file system.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hamgrad.errors import ConfigError

__all__ = ["atomic_target"]


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The parent directory is created if missing (``mkdir -p``), so ``--out data/new/x.h5`` works;
    a location that cannot be written raises `ConfigError` naming the target.
    """
    path = Path(path)
    blocker = next((d for d in (path.parent, *path.parent.parents)
                    if d.exists() and not d.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"cannot write {path}: {blocker} is a file, expected a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        # Name the target the user asked for, not the temporary file.
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}; expected a writable "
                          f"directory {path.parent}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
