"""Atomic file writes: a temporary file in the target's directory, then ``os.replace``.

A crash mid-write leaves the previous file intact (``os.replace`` is atomic on POSIX and Windows
within one file system), which is what lets ``--resume`` trust ``last.pt`` and what keeps an
evaluation that fails half-way from damaging earlier results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from hamgrad._atomic import atomic_target

__all__ = ["atomic_write", "write_json", "write_jsonl", "write_torch"]


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
