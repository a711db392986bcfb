"""The HDF5 trajectory format, version 1 (API): one writer, one reader, one validator.

Layout (see DESIGN.md, "HDF5 dataset format, version 1"): root attributes ``format`` =
``"hamgrad.trajectories"``, ``format_version`` = 1, ``dof``, ``dt`` and optional ``system``,
``system_params`` (JSON object), provenance (``seed``, ``noise_std``, ``reference``,
``created_by``, ...); groups ``train`` / ``val`` / ``test`` (at least one) holding ``t [n_t]``,
``q``, ``p [n_traj, n_t, dof]`` and optionally ``dq_dt``, ``dp_dt [n_traj, n_t, dof]`` and
``energy [n_traj, n_t]``, all float64. Group attributes are free-form provenance (the
simulators store ``max_rel_energy_error`` there).

Storage. The writer (`DatasetWriter`, `write_dataset`) stores every trajectory array in HDF5
chunks of whole trajectories (about `CHUNK_BYTES` each), with a Fletcher-32 checksum per chunk
and optional compression (`COMPRESSIONS`); HDF5 records the chunking and filters in each
array's header, so readers need no option. It writes chunk by chunk in one fixed order, so the
same content gives the same bytes however it was handed over (whole arrays, blocks, shards).
Files of any layout load (older ones are contiguous). Writes are atomic: a temporary file in
the target directory, then ``os.replace``; an interrupted write leaves no file under the target
name.

Reading. `open_dataset` opens a file lazily: a `DatasetReader` whose splits (`SplitReader`)
read blocks of trajectories on demand, so a file larger than memory can be trained on;
`load_dataset` reads splits whole (a `Dataset` of `Split` arrays). What is checked when:

- on opening: the root attributes; the groups and members (plain datasets, no links);
  every array's dtype and shape from its header, against ``dof`` and ``t``; that the file
  stores every byte an array claims (all its chunks, or the whole contiguous extent); ``t``
  itself (finite, spaced by ``dt``).
- on reading a block: its values are finite, and its chunks' checksums match (a damaged file
  fails here, naming the trajectories); a block that would not fit in memory is refused.

The writer runs the same checks before data reach the file, so it cannot produce a file the
reader rejects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import h5py
import numpy as np

from hamgrad._atomic import atomic_target
from hamgrad._resources import check_memory, format_bytes
from hamgrad._version import __version__
from hamgrad.errors import ConfigError, DatasetError, HamgradError

__all__ = [
    "CHUNK_BYTES",
    "COMPRESSIONS",
    "FORMAT",
    "FORMAT_VERSION",
    "SPLIT_NAMES",
    "Dataset",
    "DatasetReader",
    "DatasetWriter",
    "Split",
    "SplitReader",
    "TrajectorySource",
    "check_compression",
    "concatenate_datasets",
    "load_dataset",
    "open_dataset",
    "read_blocks",
    "write_dataset",
]

FORMAT = "hamgrad.trajectories"
FORMAT_VERSION = 1
#: The groups a version-1 file may hold, in canonical order.
SPLIT_NAMES = ("train", "val", "test")
#: Target size of one HDF5 chunk the writer makes: whole trajectories, at most about this many
#: bytes (a single trajectory larger than this is one chunk). Chunks fit h5py's default 1 MiB
#: chunk cache, and a block of trajectories is read with few partial chunks.
CHUNK_BYTES = 1 << 20
#: Compression the writer offers: name -> (HDF5 filter, its level). Both ship with every h5py
#: build, so any reader can open the file; the byte-shuffle filter goes before either.
COMPRESSIONS: dict[str, tuple[str, int | None]] = {"gzip": ("gzip", 4), "lzf": ("lzf", None)}
_TRAJ_FIELDS = ("q", "p", "dq_dt", "dp_dt")  # shape [n_traj, n_t, dof]
_FIELDS = (*_TRAJ_FIELDS, "energy")  # every per-trajectory array, in canonical order
_OPTIONAL = ("dq_dt", "dp_dt", "energy")
# Bytes per block when a whole split is streamed (validation, joining).
_BLOCK_BYTES = 64 << 20


class TrajectorySource(Protocol):
    """Trajectories that can be read in blocks: an in-memory `Split` or a lazy `SplitReader`.

    Attributes
    ----------
    t : ndarray ``[n_t]``
        Sample times.
    n_traj, n_t : int
        Number of trajectories and of samples per trajectory.
    fields : tuple of str
        The arrays present, among ``q, p, dq_dt, dp_dt, energy`` (``q`` and ``p`` always).
    """

    t: np.ndarray

    @property
    def n_traj(self) -> int: ...
    @property
    def n_t(self) -> int: ...
    @property
    def fields(self) -> tuple[str, ...]: ...

    def read(
        self, start: int, stop: int, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Trajectories ``start..stop-1`` of each array in ``names`` (default: all present)."""
        ...


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

    @property
    def fields(self) -> tuple[str, ...]:
        """The arrays present, in canonical order (``q`` and ``p`` always)."""
        return tuple(n for n in _FIELDS if getattr(self, n) is not None)

    def read(
        self, start: int, stop: int, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Trajectories ``start..stop-1`` of each array in ``names`` (views, no copy)."""
        return {n: getattr(self, n)[start:stop] for n in (names or self.fields)}


S = TypeVar("S")


class _Splits(Generic[S]):
    """What a loaded `Dataset` and a lazy `DatasetReader` share: attributes and named splits."""

    path: Path
    attrs: dict[str, Any]
    splits: dict[str, S]

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

    def split(self, name: str) -> S:
        """The split ``name``; raises `DatasetError` naming the file when absent."""
        if name not in self.splits:
            raise DatasetError(
                f"{self.path}: split {name!r} is absent; the file holds: "
                f"{', '.join(self.splits) or '(none)'}"
            )
        return self.splits[name]

    def __getitem__(self, name: str) -> S:
        return self.split(name)


@dataclass
class Dataset(_Splits[Split]):
    """A validated dataset file, its splits read into memory (see `load_dataset`)."""

    path: Path
    attrs: dict[str, Any]
    splits: dict[str, Split]


# -- validation ------------------------------------------------------------------------------
def _fail(where: str, name: str, problem: str) -> DatasetError:
    return DatasetError(f"{where}: {name}: {problem}")


def _check_header(
    where: str, name: str, dtype: np.dtype, shape: tuple[int, ...], want: tuple[int, ...]
) -> None:
    """An array's dtype and shape, from its header (before any value is read)."""
    if dtype != np.float64:
        raise _fail(where, name, f"dtype is {dtype}, expected float64")
    if shape != want:
        raise _fail(where, name, f"shape is {list(shape)}, expected {list(want)}")


def _check_values(where: str, name: str, arr: np.ndarray, rows: range | None = None) -> None:
    """Every value finite; ``rows`` names the trajectories of a block."""
    if not np.all(np.isfinite(arr)):
        part = "" if rows is None else f" in trajectories {rows.start}..{rows.stop - 1}"
        bad = int(np.sum(~np.isfinite(arr)))
        raise _fail(where, name, f"contains {bad} NaN/inf values{part}")


def _check_array(where: str, name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    _check_header(where, name, arr.dtype, arr.shape, shape)
    _check_values(where, name, arr)
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


def _check_t(where: str, value: Any, dt: float) -> np.ndarray:
    t = np.asarray(value)
    if t.ndim != 1 or len(t) < 1:
        raise _fail(where, "t", f"shape is {list(t.shape)}, expected [n_t] with n_t >= 1")
    t = _check_array(where, "t", t, t.shape)
    if len(t) > 1 and not np.allclose(np.diff(t), dt, rtol=1e-9, atol=0.0):
        raise _fail(
            where,
            "t",
            f"spacing is not the file's dt={dt} (got steps "
            f"{np.diff(t).min():.6g}..{np.diff(t).max():.6g})",
        )
    return t


def _check_q_shape(where: str, shape: tuple[int, ...], n_t: int, dof: int) -> int:
    """``n_traj`` from the shape of ``q``, which must be ``[n_traj >= 1, n_t, dof]``."""
    if len(shape) != 3 or shape[0] < 1:
        raise _fail(
            where, "q", f"shape is {list(shape)}, expected [n_traj >= 1, n_t={n_t}, dof={dof}]"
        )
    return int(shape[0])


def _shape(name: str, n_traj: int, n_t: int, dof: int) -> tuple[int, ...]:
    return (n_traj, n_t) if name == "energy" else (n_traj, n_t, dof)


@contextmanager
def _readable(where: str) -> Iterator[None]:
    """Turn any failure inside h5py into a `DatasetError` naming the file: it is bad input."""
    try:
        yield
    except HamgradError:
        raise
    except Exception as exc:  # a damaged file can fail anywhere inside h5py
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DatasetError(
            f"{where}: unreadable HDF5 file ({type(exc).__name__}: {first}); "
            "expected a dataset written by hamgrad"
        ) from None


# -- writing ---------------------------------------------------------------------------------
def _attr_value(value: Any) -> Any:
    # HDF5 attributes hold scalars and strings; structured values are stored as JSON text.
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def check_compression(compression: str | None) -> str | None:
    """``compression`` if it is a key of `COMPRESSIONS` or None; else raise `ConfigError`."""
    if compression is not None and compression not in COMPRESSIONS:
        raise ConfigError(
            f"compression must be one of {', '.join(COMPRESSIONS)} or none, got {compression!r}"
        )
    return compression


def _chunk_rows(n_traj: int, n_t: int, dof: int) -> int:
    """Trajectories per chunk: as many as fit in `CHUNK_BYTES` (at least one)."""
    return max(1, min(n_traj, CHUNK_BYTES // (8 * n_t * dof)))


def _take(pending: list[dict[str, np.ndarray]], rows: int) -> dict[str, np.ndarray]:
    """Remove the first ``rows`` trajectories from the queued blocks ``pending`` (in place)."""
    parts: list[dict[str, np.ndarray]] = []
    need = rows
    while need:
        block = pending[0]
        k = len(next(iter(block.values())))
        if k <= need:
            parts.append(pending.pop(0))
            need -= k
        else:
            parts.append({n: a[:need] for n, a in block.items()})
            pending[0] = {n: a[need:] for n, a in block.items()}
            need = 0
    if len(parts) == 1:
        return parts[0]
    return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}


class DatasetWriter:
    """Write a version-1 file split by split, from blocks of trajectories, atomically.

    Use as a context manager; the file appears under ``path`` only when the ``with`` block
    ends without error (an exception leaves no file and no temporary). Each block is validated
    (dtype, shape, finite values) before it is written, and written in chunk-sized pieces in
    one fixed order, so memory stays bounded by a block and the bytes do not depend on how the
    data were cut into blocks.

    Parameters
    ----------
    path : path-like
        Target file; its directory is created if missing.
    attrs : mapping
        Root attributes; must include ``dof`` and ``dt``. ``format`` and ``format_version``
        are set here; ``created_by`` defaults to ``"hamgrad <version>"``; ``system_params``
        (dict) is stored as JSON.
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    compression : str, optional
        A key of `COMPRESSIONS` (``gzip``, ``lzf``), or None for uncompressed chunks.

    Raises
    ------
    DatasetError
        Invalid attributes or data, a split written twice or incompletely, no split at all, or
        the target exists and ``overwrite`` is False.
    ConfigError
        Unknown compression, or a target that cannot be written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        attrs: Mapping[str, Any],
        *,
        overwrite: bool = False,
        compression: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._where = str(self.path)
        if self.path.exists() and not overwrite:
            raise DatasetError(
                f"{self._where}: file exists; pass overwrite=True (--overwrite) to replace"
            )
        self.compression = check_compression(compression)
        root = {"created_by": f"hamgrad {__version__}", **dict(attrs)}
        root.update(format=FORMAT, format_version=FORMAT_VERSION)
        self.attrs = _check_root(self._where, root)
        self._stack: ExitStack | None = None
        self._file: h5py.File | None = None
        self._written: list[str] = []

    def __enter__(self) -> DatasetWriter:
        with ExitStack() as stack:
            tmp = stack.enter_context(atomic_target(self.path))
            self._file = stack.enter_context(h5py.File(tmp, "w", track_order=True))
            for key, value in self.attrs.items():
                if value is not None:
                    self._file.attrs[key] = _attr_value(value)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._file = self._stack, None, None
        assert stack is not None, "DatasetWriter.__exit__ without __enter__"
        if kind is None and not self._written:
            error = DatasetError(
                f"{self._where}: no splits given, expected at least one of {', '.join(SPLIT_NAMES)}"
            )
            stack.__exit__(DatasetError, error, None)  # removes the temporary file
            raise error
        stack.__exit__(kind, value, tb)  # an exception propagates from the with statement

    def write_split(
        self,
        name: str,
        t: np.ndarray,
        n_traj: int,
        fields: Sequence[str],
        blocks: Iterable[Mapping[str, np.ndarray]],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write split ``name`` from ``blocks`` of consecutive trajectories.

        Parameters
        ----------
        name : str
            One of `SPLIT_NAMES`, each at most once.
        t : ndarray ``[n_t]``
            Sample times, spaced by ``dt``.
        n_traj : int
            Number of trajectories the blocks add up to (checked).
        fields : sequence of str
            The arrays every block holds: ``q``, ``p`` and any of ``dq_dt``, ``dp_dt``,
            ``energy``.
        blocks : iterable of mappings
            Each maps every name in ``fields`` to an array of the next ``k`` trajectories
            (``[k, n_t, dof]``, ``energy`` ``[k, n_t]``), float64 and finite.
        attrs : mapping, optional
            Group attributes (provenance).
        """
        if self._file is None:
            raise RuntimeError("DatasetWriter.write_split called outside its with block")
        here = f"{self._where}: split {name!r}"
        if name not in SPLIT_NAMES:
            raise DatasetError(
                f"{self._where}: split name {name!r} is not one of {', '.join(SPLIT_NAMES)}"
            )
        if name in self._written:
            raise DatasetError(f"{here}: written twice")
        missing = [n for n in ("q", "p") if n not in fields]
        if missing:
            raise _fail(here, missing[0], "is missing (required)")
        if isinstance(n_traj, bool) or not isinstance(n_traj, (int, np.integer)) or n_traj < 1:
            raise _fail(here, "q", f"n_traj is {n_traj!r}, expected an integer >= 1")
        fields = [n for n in _FIELDS if n in fields]  # canonical order
        dof = self.attrs["dof"]
        t = _check_t(here, t, self.attrs["dt"])
        n_t = len(t)
        group = self._file.create_group(name, track_order=True)
        for key, value in (attrs or {}).items():
            group.attrs[key] = _attr_value(value)
        group.create_dataset("t", data=t, track_times=False)
        rows = _chunk_rows(n_traj, n_t, dof)
        filters: dict[str, Any] = {"fletcher32": True}
        if self.compression is not None:
            method, level = COMPRESSIONS[self.compression]
            filters.update(compression=method, compression_opts=level, shuffle=True)
        datasets = {
            n: group.create_dataset(
                n,
                shape=_shape(n, n_traj, n_t, dof),
                dtype=np.float64,
                chunks=_shape(n, rows, n_t, dof),
                track_times=False,  # no timestamps: the same data gives the same file bytes
                **filters,
            )
            for n in fields
        }
        pending: list[dict[str, np.ndarray]] = []
        queued = done = 0
        for block in blocks:
            if set(block) != set(fields):
                raise _fail(
                    here,
                    "block",
                    f"holds {sorted(block)}, expected the fields {fields} of this split",
                )
            k = int(np.shape(block["q"])[0]) if np.ndim(block["q"]) else 0
            if done + queued + k > n_traj:
                raise _fail(here, "q", f"more than the declared n_traj={n_traj} trajectories")
            rows_done = range(done + queued, done + queued + k)
            checked = {}
            for n in fields:
                arr = np.asarray(block[n])
                _check_header(here, n, arr.dtype, arr.shape, _shape(n, k, n_t, dof))
                _check_values(here, n, arr, rows_done if k != n_traj else None)
                checked[n] = arr
            pending.append(checked)
            queued += k
            while queued >= rows or (queued and done + queued == n_traj):
                step = min(rows, queued)
                piece = _take(pending, step)
                for n in fields:
                    datasets[n][done : done + step] = piece[n]
                done, queued = done + step, queued - step
        if done + queued != n_traj:
            raise _fail(here, "q", f"got {done + queued} trajectories, expected n_traj={n_traj}")
        self._written.append(name)


def write_dataset(
    path: str | os.PathLike[str],
    splits: Mapping[str, Split],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
    compression: str | None = None,
) -> Path:
    """Validate and write a version-1 dataset atomically (see `DatasetWriter`).

    Parameters
    ----------
    path : path-like
        Target file; its directory is created if missing.
    splits : mapping of split name -> `Split`
        Non-empty, names among ``train``, ``val``, ``test``.
    attrs : mapping
        Root attributes; must include ``dof`` and ``dt``.
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    compression : str, optional
        ``gzip`` or ``lzf`` (`COMPRESSIONS`); None stores uncompressed chunks.

    Returns
    -------
    Path of the written file.

    Raises
    ------
    DatasetError
        Invalid content, or the target exists and ``overwrite`` is False.
    """
    writer = DatasetWriter(path, attrs, overwrite=overwrite, compression=compression)
    unknown = [name for name in splits if name not in SPLIT_NAMES]
    if unknown:
        raise DatasetError(
            f"{path}: split name {unknown[0]!r} is not one of {', '.join(SPLIT_NAMES)}"
        )
    if not splits:
        raise DatasetError(
            f"{path}: no splits given, expected at least one of {', '.join(SPLIT_NAMES)}"
        )
    with writer:
        for name in SPLIT_NAMES:
            if name not in splits:
                continue
            split = splits[name]
            here = f"{path}: split {name!r}"
            n_traj = _check_q_shape(
                here, np.shape(split.q), len(np.atleast_1d(split.t)), writer.attrs["dof"]
            )
            blocks = [split.read(0, n_traj)]
            writer.write_split(name, split.t, n_traj, split.fields, blocks, split.attrs)
    return writer.path


# -- reading ---------------------------------------------------------------------------------
def _read_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


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


def _check_stored(dataset: h5py.Dataset, where: str, name: str) -> None:
    """Refuse an array whose header claims more than the file stores.

    A contiguous array must have all its bytes in the file (an 8 KiB file claiming a 745 GiB
    array is refused before any allocation); a chunked one must have every chunk written.
    """
    nbytes = int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    if dataset.chunks is None:
        complete = stored >= nbytes
    else:
        grid = [-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True)]
        complete = dataset.id.get_num_chunks() == int(np.prod(grid, dtype=np.int64))
    if not complete:
        raise _fail(
            where,
            name,
            f"claims a {list(dataset.shape)} {dataset.dtype} array "
            f"({format_bytes(nbytes)}) but the file stores "
            f"{format_bytes(stored)} of it; the file is truncated or malformed",
        )


class SplitReader:
    """One split of an open dataset file, read on demand in blocks of trajectories.

    Built by `open_dataset`, which has already checked every header (see the module
    docstring); `read` checks the values of what it returns. Valid while its
    `DatasetReader` is open.

    Attributes
    ----------
    name : str
        ``train``, ``val`` or ``test``.
    t : ndarray ``[n_t]``
        Sample times (read and checked on opening).
    attrs : dict
        Group attributes.
    """

    def __init__(self, group: h5py.Group, where: str, name: str, dof: int, dt: float) -> None:
        self.name = name
        self._where = f"{where}: split {name!r}"
        missing = [n for n in ("t", "q", "p") if n not in group]
        if missing:
            raise _fail(self._where, missing[0], "is missing (required)")
        self.attrs = {k: _read_attr(v) for k, v in group.attrs.items()}
        members = {
            n: _member(group, n, h5py.Dataset, self._where) for n in ("t", *_FIELDS) if n in group
        }
        for n, dataset in members.items():
            _check_stored(dataset, self._where, n)
        self.t = _check_t(self._where, members.pop("t")[()], dt)
        self._n_traj = _check_q_shape(self._where, members["q"].shape, self.n_t, dof)
        for n, dataset in members.items():
            want = _shape(n, self._n_traj, self.n_t, dof)
            _check_header(self._where, n, dataset.dtype, dataset.shape, want)
        self._arrays: dict[str, h5py.Dataset] = members

    @property
    def n_traj(self) -> int:
        """Number of trajectories."""
        return self._n_traj

    @property
    def n_t(self) -> int:
        """Number of samples per trajectory."""
        return len(self.t)

    @property
    def fields(self) -> tuple[str, ...]:
        """The arrays present, in canonical order (``q`` and ``p`` always)."""
        return tuple(self._arrays)

    def nbytes(self, names: Sequence[str] | None = None) -> int:
        """Bytes of one trajectory of the arrays ``names`` (default: all present)."""
        return sum(
            self._arrays[n].dtype.itemsize * int(np.prod(self._arrays[n].shape[1:]))
            for n in (names or self.fields)
        )

    def read(
        self, start: int, stop: int, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Trajectories ``start..stop-1`` of the arrays ``names``, checked finite.

        Raises
        ------
        DatasetError
            An absent array, non-finite values (naming the trajectories), a damaged chunk,
            or a block that does not fit in memory.
        """
        names = list(names or self.fields)
        absent = [n for n in names if n not in self._arrays]
        if absent:
            raise _fail(self._where, absent[0], "is absent from this split")
        start, stop = max(0, start), min(stop, self.n_traj)
        whole = start == 0 and stop == self.n_traj
        rows = None if whole else range(start, stop)
        check_memory(
            f"{self._where}: {', '.join(names)} of trajectories {start}..{stop - 1}",
            (stop - start) * self.nbytes(names),
            "expected a dataset that fits in memory" if whole else "expected smaller blocks",
        )
        out = {}
        with _readable(self._where):
            for n in names:
                arr = self._arrays[n][start:stop]
                _check_values(self._where, n, arr, rows)
                out[n] = arr
        return out

    def load(self) -> Split:
        """The whole split in memory, checked."""
        return Split(t=self.t, attrs=dict(self.attrs), **self.read(0, self.n_traj))

    def layout(self, name: str) -> str:
        """How array ``name`` is stored: ``contiguous`` or ``chunks [..], <filters>``."""
        dataset = self._arrays[name]
        if dataset.chunks is None:
            return "contiguous"
        filters = [
            f for f in (dataset.compression, "fletcher32" if dataset.fletcher32 else None) if f
        ]
        return f"chunks {list(dataset.chunks)}" + "".join(f", {f}" for f in filters)

    def compression(self) -> str | None:
        """The `COMPRESSIONS` key of this split's ``q`` (None when uncompressed)."""
        method = self._arrays["q"].compression
        return next((k for k, (m, _) in COMPRESSIONS.items() if m == method), method)


class DatasetReader(_Splits[SplitReader]):
    """A dataset file opened for lazy reading (see `open_dataset`); a context manager.

    Attributes
    ----------
    path : Path
        The file.
    attrs : dict
        Checked root attributes (``system_params`` parsed from JSON).
    splits : dict of str to SplitReader
        The splits present, in canonical order.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        where = str(self.path)
        if not self.path.is_file():
            raise DatasetError(f"{where}: no such file")
        if not h5py.is_hdf5(self.path):
            raise DatasetError(f"{where}: not an HDF5 file")
        with _readable(where):
            self._file = h5py.File(self.path, "r")
        try:
            with _readable(where):
                f = self._file
                self.attrs = _check_root(where, {k: _read_attr(v) for k, v in f.attrs.items()})
                present = [n for n in SPLIT_NAMES if n in f]
                if not present:
                    raise DatasetError(
                        f"{where}: no split group; expected at least one of "
                        f"{', '.join(SPLIT_NAMES)}, found {list(f.keys())}"
                    )
                self.splits = {
                    n: SplitReader(_member(f, n, h5py.Group, where), where, n, self.dof, self.dt)
                    for n in present
                }
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the file (the split readers stop working)."""
        self._file.close()

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, names: Sequence[str] | None = None) -> Dataset:
        """Read the splits ``names`` (default: all) whole into a `Dataset`."""
        wanted = self.splits if names is None else {n: self.split(n) for n in names}
        return Dataset(
            path=self.path, attrs=dict(self.attrs), splits={n: s.load() for n, s in wanted.items()}
        )

    def validate(self) -> None:
        """Read every split through once, block by block, checking every value."""
        for split in self.splits.values():
            for _ in read_blocks(split, _block_rows(split)):
                pass


def _block_rows(split: SplitReader, names: Sequence[str] | None = None) -> int:
    return max(1, _BLOCK_BYTES // max(split.nbytes(names), 1))


def read_blocks(
    source: TrajectorySource, rows: int, names: Sequence[str] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``source`` in consecutive blocks of ``rows`` trajectories (the last may be short).

    Parameters
    ----------
    source : TrajectorySource
        A `Split` or `SplitReader`.
    rows : int
        Trajectories per block.
    names : sequence of str, optional
        Arrays to read (default: all present).
    """
    for start in range(0, source.n_traj, rows):
        yield source.read(start, start + rows, names)


def open_dataset(path: str | os.PathLike[str]) -> DatasetReader:
    """Open a version-1 dataset for lazy reading; check every header now, values as read.

    Use as a context manager (``with open_dataset(path) as ds:``), or call ``close()``.

    Raises
    ------
    DatasetError
        Naming the file, the field and the problem: missing file, not HDF5, unknown format or
        version, missing group or field, a link, wrong shape or dtype, an array the file does
        not fully store, a bad time grid.
    """
    return DatasetReader(path)


def load_dataset(path: str | os.PathLike[str], splits: Sequence[str] | None = None) -> Dataset:
    """Read and validate a version-1 dataset file into memory.

    Checks the root attributes, that at least one of ``train`` / ``val`` / ``test`` exists
    (other groups are ignored), every required field, shapes against ``dof`` and ``t``,
    float64 dtype, finiteness and that ``t`` is spaced by ``dt``.

    Parameters
    ----------
    path : path-like
        The file.
    splits : sequence of str, optional
        Read only these splits (the others' headers are still checked); default all.

    Raises
    ------
    DatasetError
        Naming the file, the field and the problem: missing file, not HDF5, unknown format or
        version, missing group or field, wrong shape or dtype, NaN/inf.
    """
    with open_dataset(path) as reader:
        return reader.load(splits)


# -- joining ---------------------------------------------------------------------------------
def _shard_order(readers: list[DatasetReader], out: str) -> list[DatasetReader]:
    """The readers in shard order, refusing gaps, overlaps and mixed counts.

    Files without a ``shard`` attribute are joined in the order given; files written with
    ``--shard I/N`` must all carry one, be N in number, one for each I.
    """
    tags = [r.attrs.get("shard") for r in readers]
    if all(t is None for t in tags):
        return readers
    parsed = []
    for reader, tag in zip(readers, tags, strict=True):
        index, sep, count = str(tag).partition("/")
        if tag is None or not sep or not index.isdigit() or not count.isdigit():
            raise DatasetError(
                f"{reader.path}: shard attribute is {tag!r}; expected I/N like the other "
                f"shards ({readers[0].path} has {tags[0]!r})"
            )
        parsed.append((int(index), int(count), reader))
    counts = {c for _, c, _ in parsed}
    if len(counts) > 1:
        raise DatasetError(
            f"{out}: shards of different counts {sorted(counts)} (attribute shard); expected "
            "the shards of one simulation"
        )
    total = counts.pop()
    seen: dict[int, DatasetReader] = {}
    for number, _, reader in parsed:
        if number in seen:
            raise DatasetError(
                f"{out}: overlap: {seen[number].path} and {reader.path} are both shard "
                f"{number}/{total}"
            )
        seen[number] = reader
    missing = [i for i in range(total) if i not in seen]
    if missing:
        raise DatasetError(
            f"{out}: gap: shard {missing[0]}/{total} is missing ({len(seen)} of {total} "
            "shards given)"
        )
    return [seen[i] for i in range(total)]


def _check_shard_attrs(readers: list[DatasetReader]) -> dict[str, Any]:
    """The common root attributes (without ``shard``); any difference is refused."""
    first = readers[0]
    base = {k: v for k, v in first.attrs.items() if k != "shard"}
    for reader in readers[1:]:
        attrs = {k: v for k, v in reader.attrs.items() if k != "shard"}
        diff = sorted(k for k in set(attrs) | set(base) if attrs.get(k) != base.get(k))
        if diff:
            k = diff[0]
            raise DatasetError(
                f"{reader.path}: attributes {diff} differ from {first.path} ({k} is "
                f"{attrs.get(k)!r} here, {base.get(k)!r} there); expected shards of one "
                "simulation"
            )
    return base


def concatenate_datasets(
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    overwrite: bool = False,
    compression: str | None = "keep",
) -> Path:
    """Join shard files along the trajectory axis, streaming (memory bounded by a block).

    Shards written by `simulators.generate` with ``shard=(i, n)`` for ``i = 0..n-1`` are
    joined in shard order whatever order they are given in, and give the file the unsharded
    call would have written, byte for byte (the ``shard`` attribute is dropped). Files without
    a ``shard`` attribute are joined in the order given.

    Parameters
    ----------
    paths : iterable of path-like
        The shards.
    out : path-like
        The joined file (written atomically); must not be one of ``paths``.
    overwrite : bool
        Replace an existing ``out``.
    compression : str or None
        ``"keep"`` (default) uses the shards' compression (they must agree); else a key of
        `COMPRESSIONS` or None.

    Raises
    ------
    DatasetError
        No input; shards of different systems, parameters, seeds or split sizes (any root
        attribute but ``shard`` differs); a gap or overlap in the shard numbers; different
        time grids or fields; a trajectory count that disagrees with ``n_train`` / ``n_val``
        / ``n_test``; or any shard that fails validation.
    """
    shards = [Path(p) for p in paths]
    out = Path(out)
    if not shards:
        raise DatasetError(f"{out}: no shard files given to concatenate")
    if out.exists() and any(p.exists() and p.samefile(out) for p in shards):
        raise DatasetError(f"{out}: is also one of the shards; expected a new output file")
    if out.exists() and not overwrite:  # found before reading any shard
        raise DatasetError(f"{out}: file exists; pass overwrite=True (--overwrite) to replace")
    with ExitStack() as stack:
        readers = [stack.enter_context(open_dataset(p)) for p in shards]
        base = _check_shard_attrs(readers)
        readers = _shard_order(readers, str(out))
        if compression == "keep":
            kinds = {s.compression() for r in readers for s in r.splits.values()}
            if len(kinds) > 1:
                raise DatasetError(
                    f"{out}: the shards use different compression {sorted(map(str, kinds))}; "
                    "expected one, or an explicit compression for the joined file"
                )
            compression = kinds.pop()
        plan = {}
        for name in SPLIT_NAMES:
            parts = [r.splits[name] for r in readers if name in r.splits]
            if not parts:
                continue
            first = parts[0]
            for part in parts[1:]:
                if not np.array_equal(part.t, first.t) or part.fields != first.fields:
                    what = "time grids 't'" if part.fields == first.fields else "fields"
                    raise DatasetError(f"{out}: split {name!r}: shards have different {what}")
            n_traj = sum(s.n_traj for s in parts)
            declared = base.get(f"n_{name}")
            if declared is not None and declared != n_traj:
                raise DatasetError(
                    f"{out}: split {name!r}: the shards hold {n_traj} trajectories but "
                    f"n_{name} is {declared}; expected every shard of the simulation"
                )
            attrs = dict(first.attrs)
            if "max_rel_energy_error" in attrs:
                attrs["max_rel_energy_error"] = max(s.attrs["max_rel_energy_error"] for s in parts)
            plan[name] = (parts, n_traj, attrs)
        with DatasetWriter(out, base, overwrite=overwrite, compression=compression) as writer:
            for name, (parts, n_traj, attrs) in plan.items():
                blocks = (block for part in parts for block in read_blocks(part, _block_rows(part)))
                writer.write_split(name, parts[0].t, n_traj, parts[0].fields, blocks, attrs)
    return out
