"""Atomic file replacement: write to a temporary file beside the target, then ``os.replace``.

One mechanism for every writer in hamgrad (HDF5 datasets, checkpoints, JSON, plots). A crash
or an error mid-write leaves no file under the target name and never damages an existing one,
since ``os.replace`` is atomic within one file system; the data is flushed and ``fsync``-ed
before the rename, so ``--resume`` can trust ``last.pt`` after a power cut too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

from hamgrad.errors import ConfigError

__all__ = ["atomic_target", "atomic_write", "write_json", "write_jsonl", "write_torch"]


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The parent directory is created if missing (``mkdir -p``), so ``--out data/new/x.h5`` works;
    a location that cannot be written raises `ConfigError` naming the target.
    """
    path = Path(path)
    blocker = next(
        (d for d in (path.parent, *path.parent.parents) if d.exists() and not d.is_dir()), None
    )
    if blocker is not None:
        raise ConfigError(f"cannot write {path}: {blocker} is a file, expected a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        # Name the target the user asked for, not the temporary file.
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}; expected a writable "
            f"directory {path.parent}"
        ) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
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
