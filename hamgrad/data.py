"""The HDF5 trajectory format, version 1 (API): one writer, one reader, one validator.

Layout (see DESIGN.md, "HDF5 dataset format, version 1"): root attributes ``format`` =
``"hamgrad.trajectories"``, ``format_version`` = 1, ``dof``, ``dt`` and optional ``system``,
``system_params`` (JSON object), provenance (``seed``, ``noise_std``, ``reference``,
``created_by``, ...); groups ``train`` / ``val`` / ``test`` (at least one) holding ``t [n_t]``,
``q``, ``p [n_traj, n_t, dof]`` and optionally ``dq_dt``, ``dp_dt [n_traj, n_t, dof]`` and
``energy [n_traj, n_t]``, all float64. Group attributes are free-form provenance (the
simulators store ``max_rel_energy_error`` there).

The same validator checks data before it is written and after it is read, so the writer cannot
produce a file the reader rejects. Writes are atomic: a temporary file in the target directory,
then ``os.replace``; an interrupted write leaves no file under the target name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hamgrad._atomic import atomic_target
from hamgrad._resources import check_memory, format_bytes
from hamgrad._version import __version__
from hamgrad.errors import DatasetError, HamgradError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SPLIT_NAMES",
    "Dataset",
    "Split",
    "concatenate_datasets",
    "load_dataset",
    "write_dataset",
]

FORMAT = "hamgrad.trajectories"
FORMAT_VERSION = 1
#: The groups a version-1 file may hold, in canonical order.
SPLIT_NAMES = ("train", "val", "test")
_TRAJ_FIELDS = ("q", "p", "dq_dt", "dp_dt")  # shape [n_traj, n_t, dof]
_OPTIONAL = ("dq_dt", "dp_dt", "energy")


@dataclass
class Split:
    """One split of a dataset; all arrays float64.

    Attributes
    ----------
    t : ndarray ``[n_t]``
        Sample times (uniform spacing ``dt``).
    q, p : ndarray ``[n_traj, n_t, dof]``
        Observed positions and momenta (noisy when the dataset's ``noise_std > 0``).
    dq_dt, dp_dt : ndarray ``[n_traj, n_t, dof]`` or None
        Exact, noise-free time derivatives.
    energy : ndarray ``[n_traj, n_t]`` or None
        True energy of the noise-free state.
    attrs : dict
        Free-form group attributes (e.g. ``max_rel_energy_error``).
    """

    t: np.ndarray
    q: np.ndarray
    p: np.ndarray
    dq_dt: np.ndarray | None = None
    dp_dt: np.ndarray | None = None
    energy: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_traj(self) -> int:
        """Number of trajectories."""
        return int(self.q.shape[0])

    @property
    def n_t(self) -> int:
        """Number of samples per trajectory."""
        return int(self.t.shape[0])


@dataclass
class Dataset:
    """A validated, fully loaded dataset file (see `load_dataset`)."""

    path: Path
    attrs: dict[str, Any]
    splits: dict[str, Split]

    @property
    def dof(self) -> int:
        """Number of position coordinates."""
        return int(self.attrs["dof"])

    @property
    def dt(self) -> float:
        """Sampling interval of the stored trajectories."""
        return float(self.attrs["dt"])

    @property
    def system(self) -> str | None:
        """Registry name or ``module:Class`` of the system, if recorded."""
        value = self.attrs.get("system")
        return None if value is None else str(value)

    @property
    def system_params(self) -> dict[str, Any]:
        """The system's parameters (``{}`` when not recorded)."""
        return dict(self.attrs.get("system_params") or {})

    def split(self, name: str) -> Split:
        """The split ``name``; raises `DatasetError` naming the file when absent."""
        if name not in self.splits:
            raise DatasetError(
                f"{self.path}: split {name!r} is absent; the file holds: "
                f"{', '.join(self.splits) or '(none)'}"
            )
        return self.splits[name]

    def __getitem__(self, name: str) -> Split:
        return self.split(name)


# -- validation ------------------------------------------------------------------------------
def _fail(where: str, name: str, problem: str) -> DatasetError:
    return DatasetError(f"{where}: {name}: {problem}")


def _check_array(where: str, name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != np.float64:
        raise _fail(where, name, f"dtype is {arr.dtype}, expected float64")
    if arr.shape != shape:
        raise _fail(where, name, f"shape is {list(arr.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(arr)):
        raise _fail(where, name, f"contains {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    return arr


def _check_root(where: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(attrs)
    if not isinstance(out.get("format"), str) or out["format"] != FORMAT:
        raise _fail(where, "attribute 'format'", f"is {out.get('format')!r}, expected {FORMAT!r}")
    version = out.get("format_version")
    if (
        not isinstance(version, (int, np.integer))
        or isinstance(version, bool)
        or int(version) != FORMAT_VERSION
    ):
        raise _fail(
            where,
            "attribute 'format_version'",
            f"is {version!r}, expected {FORMAT_VERSION} (this reader knows only it)",
        )
    dof = out.get("dof")
    if not isinstance(dof, (int, np.integer)) or isinstance(dof, bool) or dof < 1:
        raise _fail(where, "attribute 'dof'", f"is {dof!r}, expected an integer >= 1")
    dt = out.get("dt")
    if not isinstance(dt, (float, int, np.floating, np.integer)) or not np.isfinite(dt) or dt <= 0:
        raise _fail(where, "attribute 'dt'", f"is {dt!r}, expected a finite number > 0")
    params = out.get("system_params", {})
    if isinstance(params, (str, bytes)):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise _fail(where, "attribute 'system_params'", f"is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise _fail(where, "attribute 'system_params'", "expected a JSON object")
    out.update(format_version=int(version), dof=int(dof), dt=float(dt))
    if "system_params" in out:
        out["system_params"] = params
    return out


def _check_split(where: str, name: str, split: Split, dof: int, dt: float) -> Split:
    here = f"{where}: split {name!r}"
    t = np.asarray(split.t)
    if t.ndim != 1 or len(t) < 1:
        raise _fail(here, "t", f"shape is {list(t.shape)}, expected [n_t] with n_t >= 1")
    t = _check_array(here, "t", t, t.shape)
    if len(t) > 1 and not np.allclose(np.diff(t), dt, rtol=1e-9, atol=0.0):
        raise _fail(
            here,
            "t",
            f"spacing is not the file's dt={dt} (got steps "
            f"{np.diff(t).min():.6g}..{np.diff(t).max():.6g})",
        )
    q = np.asarray(split.q)
    if q.ndim != 3 or q.shape[0] < 1:
        raise _fail(
            here, "q", f"shape is {list(q.shape)}, expected [n_traj >= 1, n_t={len(t)}, dof={dof}]"
        )
    shape = (q.shape[0], len(t), dof)
    arrays = {n: getattr(split, n) for n in (*_TRAJ_FIELDS, "energy")}
    for n, value in arrays.items():
        if value is None:
            if n not in _OPTIONAL:
                raise _fail(here, n, "is missing (required)")
            continue
        arrays[n] = _check_array(here, n, value, shape[:2] if n == "energy" else shape)
    return Split(t=t, attrs=dict(split.attrs), **arrays)


# -- writing ---------------------------------------------------------------------------------
def _attr_value(value: Any) -> Any:
    # HDF5 attributes hold scalars and strings; structured values are stored as JSON text.
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def write_dataset(
    path: str | os.PathLike[str],
    splits: Mapping[str, Split],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Validate and write a version-1 dataset atomically.

    Parameters
    ----------
    path : path-like
        Target file; its directory must exist.
    splits : mapping of split name -> `Split`
        Non-empty, names among ``train``, ``val``, ``test``.
    attrs : mapping
        Root attributes; must include ``dof`` and ``dt``. ``format`` and ``format_version`` are
        set here; ``created_by`` defaults to ``"hamgrad <version>"``; ``system_params`` (dict)
        is stored as JSON.
    overwrite : bool
        Replace an existing file (only once the new one is complete).

    Returns
    -------
    Path of the written file.

    Raises
    ------
    DatasetError
        Invalid content, or the target exists and ``overwrite`` is False.
    """
    path = Path(path)
    where = str(path)
    if path.exists() and not overwrite:
        raise DatasetError(f"{where}: file exists; pass overwrite=True (--overwrite) to replace")
    root = {
        "created_by": f"hamgrad {__version__}",
        **dict(attrs),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
    }
    root = _check_root(where, root)
    if not splits:
        raise DatasetError(
            f"{where}: no splits given, expected at least one of {', '.join(SPLIT_NAMES)}"
        )
    checked = {}
    for name, split in splits.items():
        if name not in SPLIT_NAMES:
            raise DatasetError(
                f"{where}: split name {name!r} is not one of {', '.join(SPLIT_NAMES)}"
            )
        checked[name] = _check_split(where, name, split, root["dof"], root["dt"])

    with atomic_target(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for key, value in root.items():
            if value is not None:
                f.attrs[key] = _attr_value(value)
        for name in SPLIT_NAMES:
            if name not in checked:
                continue
            group = f.create_group(name, track_order=True)
            split = checked[name]
            for key, value in split.attrs.items():
                group.attrs[key] = _attr_value(value)
            for field_name in ("t", *_TRAJ_FIELDS, "energy"):
                value = getattr(split, field_name)
                if value is not None:
                    # No timestamps: the same data gives the same file bytes.
                    group.create_dataset(field_name, data=value, track_times=False)
    return path


# -- reading ---------------------------------------------------------------------------------
def _read_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read and validate a version-1 dataset file completely into memory.

    Checks the root attributes, that at least one of ``train`` / ``val`` / ``test`` exists
    (other groups are ignored), every required field, shapes against ``dof`` and ``t``,
    float64 dtype, finiteness and that ``t`` is spaced by ``dt``.

    Raises
    ------
    DatasetError
        Naming the file, the field and the problem: missing file, not HDF5, unknown format or
        version, missing group or field, wrong shape or dtype, NaN/inf.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DatasetError(f"{where}: no such file")
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{where}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            attrs = _check_root(where, {k: _read_attr(v) for k, v in f.attrs.items()})
            present = [n for n in SPLIT_NAMES if n in f]
            if not present:
                raise DatasetError(
                    f"{where}: no split group; expected at least one of "
                    f"{', '.join(SPLIT_NAMES)}, found {list(f.keys())}"
                )
            splits = {}
            for name in present:
                group = _member(f, name, h5py.Group, where)
                here = f"{where}: split {name!r}"
                missing = [n for n in ("t", "q", "p") if n not in group]
                if missing:
                    raise _fail(here, missing[0], "is missing (required)")
                fields = {
                    n: _read_array(_member(group, n, h5py.Dataset, here), here, n)
                    for n in ("t", *_TRAJ_FIELDS, "energy")
                    if n in group
                }
                raw = Split(attrs={k: _read_attr(v) for k, v in group.attrs.items()}, **fields)
                splits[name] = _check_split(where, name, raw, attrs["dof"], attrs["dt"])
    except HamgradError:
        raise
    except Exception as exc:  # a damaged file can fail anywhere inside h5py: it is bad input
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DatasetError(
            f"{where}: unreadable HDF5 file ({type(exc).__name__}: {first}); "
            "expected a dataset written by hamgrad"
        ) from None
    return Dataset(path=path, attrs=attrs, splits=splits)


def _member(group: h5py.Group, name: str, kind: type, where: str) -> Any:
    """``group[name]`` if it is a plain (hard-linked) member of the expected kind.

    Soft and external links are refused: an external link would read another file than the
    one the user named, and a dangling one fails deep inside h5py.
    """
    link = group.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise _fail(
            where, name, f"is a {type(link).__name__}; expected the data itself, not a link"
        )
    member = group[name]
    if not isinstance(member, kind):
        raise _fail(where, name, f"is a {type(member).__name__}; expected a {kind.__name__}")
    return member


def _read_array(dataset: h5py.Dataset, where: str, name: str) -> np.ndarray:
    """Read a dataset after checking, from its header, that the file really holds it.

    An uncompressed dataset must have all its bytes in the file (an 8 KiB file claiming a
    745 GiB array is refused before any allocation), and any dataset must fit in memory.
    """
    nbytes = int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
    if dataset.compression is None and dataset.id.get_storage_size() < nbytes:
        raise _fail(
            where,
            name,
            f"claims a {list(dataset.shape)} {dataset.dtype} array "
            f"({format_bytes(nbytes)}) but the file stores "
            f"{format_bytes(dataset.id.get_storage_size())} of it; the file is "
            "truncated or malformed",
        )
    check_memory(f"{where}: {name}", nbytes, "expected a dataset that fits in memory")
    return dataset[()]


def concatenate_datasets(
    paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Join shard files (same attributes, same splits' ``t``) along the trajectory axis.

    Shards written by `simulators.generate` with ``shard=(i, n)`` for ``i = 0..n-1``, joined in
    that order, give the file the unsharded call would have written (the ``shard`` attribute
    is dropped).

    Raises
    ------
    DatasetError
        No input, or shards whose attributes (other than ``shard``) or time grids differ.
    """
    datasets = [load_dataset(p) for p in paths]
    if not datasets:
        raise DatasetError(f"{out}: no shard files given to concatenate")
    first = datasets[0]
    base = {k: v for k, v in first.attrs.items() if k != "shard"}
    parts: dict[str, list[Split]] = {}
    for ds in datasets:
        attrs = {k: v for k, v in ds.attrs.items() if k != "shard"}
        if attrs != base:
            diff = sorted(k for k in set(attrs) | set(base) if attrs.get(k) != base.get(k))
            raise DatasetError(f"{ds.path}: attributes {diff} differ from {first.path}")
        for name, split in ds.splits.items():
            parts.setdefault(name, []).append(split)
    joined = {}
    for name in SPLIT_NAMES:
        if name not in parts:
            continue
        pieces = parts[name]
        if any(not np.array_equal(s.t, pieces[0].t) for s in pieces):
            raise DatasetError(f"{out}: split {name!r}: shards have different time grids 't'")
        cat: dict[str, Any] = {
            f: None
            if getattr(pieces[0], f) is None
            else np.concatenate([getattr(s, f) for s in pieces])
            for f in (*_TRAJ_FIELDS, "energy")
        }
        attrs = dict(pieces[0].attrs)
        if "max_rel_energy_error" in attrs:
            attrs["max_rel_energy_error"] = max(s.attrs["max_rel_energy_error"] for s in pieces)
        joined[name] = Split(t=pieces[0].t, attrs=attrs, **cat)
    return write_dataset(out, joined, base, overwrite=overwrite)
