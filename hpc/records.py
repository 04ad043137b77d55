"""HDF5 run records: one self-describing group per run, appended without risk to earlier runs.

The layout is documented in docs/SCHEMA.md and versioned by ``SCHEMA_VERSION``.

Appending never writes into the existing file: the file is read into memory, the run is
added there, and the result is written beside the original, flushed and atomically
renamed over it (hpc.atomic). A process killed at any moment leaves either the old file
or the new one, never a half-written one; a full disk leaves the old one and saves the
new run elsewhere. Writers in the same folder are serialised by a lock on the folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc import atomic, lifeline
from hpc.errors import NoSpace, UserError
from hpc.lazympi import lazy_module

# Imported at first use: the launching process checks --out here without them.
h5py = lazy_module("h5py")
np = lazy_module("numpy")

SCHEMA_VERSION = "1.2"
FORMAT_NAME = "hpc-suite run records"


@dataclass
class RunRecord:
    """Everything written about one run."""

    workload: str
    backend: str
    ranks: int
    nodes: int
    size: int
    size_parameter: str
    parameters: dict[str, Any]
    repeats: int
    warmup: int
    start_utc: str
    end_utc: str
    status: str  # "ok" | "verification_failed"
    verified: bool
    verification_method: str
    verification_detail: str
    phases: list[str]
    timings: np.ndarray  # [repeat, rank, phase], seconds
    result: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    # (start, end) UTC of each stretch the run ran in: one, or more when it was stopped
    # with a checkpoint and resumed (hpc.checkpoint).
    segments_utc: list[tuple[str, str]] = field(default_factory=list)
    # Cores, oversubscription, contention and CPU time per rank (hpc.machine.summarise).
    machine: dict[str, Any] = field(default_factory=dict)


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    """What ``h5py.is_hdf5`` answers, without importing h5py: HDF5's signature at byte 0
    or, after a user block, at 512, 1024, 2048, ... (HDF5's H5FD_locate_signature)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset + len(_SIGNATURE) <= size:
                f.seek(offset)
                if f.read(len(_SIGNATURE)) == _SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, if ``path`` cannot take a run record."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name such as {path}/runs.h5")
    if path.exists():
        if not is_hdf5(path):
            raise UserError(f"--out {path} exists and is not an HDF5 file; it was left "
                            "untouched: choose another file name")
        if not os.access(path, os.W_OK):
            raise UserError(f"--out {path} is not writable")
    # The nearest folder that exists must let us create what is missing below it.
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: cannot create files in {existing}")
    return path


@contextlib.contextmanager
def edit_file(path: str | os.PathLike[str],
              before_commit: Callable[[], None] | None = None) -> Iterator[h5py.File]:
    """Open ``path`` (created if needed) for writing; on success it is replaced atomically
    (hpc.atomic). Any failure, or a kill at any moment, leaves ``path`` as it was.

    The new file is built in memory and written with plain file I/O: HDF5 itself never
    meets a full disk, which (HDF5 1.14, h5py 3) can leave the library broken and end the
    process in a segmentation fault. A full disk raises ``NoSpace`` instead.
    """
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.folder_lock(path.parent):  # held from the read to the rename
        image = io.BytesIO(path.read_bytes() if path.exists() else b"")
        with h5py.File(image, "a") as f:
            _init_file(f)
            yield f
        atomic.write_bytes(path, image.getbuffer(), before_commit=before_commit)


def append_run(path: str | os.PathLike[str], record: RunRecord) -> str:
    """Append ``record`` to the HDF5 file at ``path`` (created if needed); returns its group.

    A rank whose launcher died appends nothing (hpc.lifeline; checked under the folder
    lock, so a study rerun reading the file sees either the record or none). With no
    space left, the record is saved alone elsewhere (``save_aside``) and ``NoSpace``
    says where.
    """
    name = ""
    try:
        with edit_file(path, before_commit=lifeline.require_launcher) as f:
            runs = f.require_group("runs")
            name = f"runs/{len(runs) + 1:06d}"
            _write_run(f.create_group(name), record)
    except NoSpace as exc:
        raise NoSpace(f"{exc}. {save_aside(Path(path), record, name)}") from None
    return name


def _record_image(record: RunRecord) -> bytes:
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        _init_file(f)
        _write_run(f.create_group("runs/000001"), record)
    return image.getvalue()


def save_aside(path: Path, record: RunRecord, group: str = "") -> str:
    """Save a record that could not be appended to ``path`` (as ``group``) as a file of
    its own: beside ``path`` if that still fits, else in the temporary folder, else the
    home folder. Returns a sentence for the user saying where (or that it was lost)."""
    name = f"{path.stem}.unsaved-{record.run_id[:12] or os.getpid()}{path.suffix or '.h5'}"
    image = _record_image(record)
    for folder in (path.parent, Path(tempfile.gettempdir()), Path.home()):
        target = folder / name
        try:
            atomic.write_bytes(target, image)
        except (OSError, NoSpace):
            continue
        return (f"This run was saved to {target}; once there is room, copy its group "
                f"/runs/000001 into {path} as /{group or 'runs/<next number>'} (h5copy, or "
                "h5py's Group.copy: docs/SCHEMA.md)")
    return "This run could not be saved anywhere else either: it is lost"


def _init_file(f: h5py.File) -> None:
    if "schema_version" not in f.attrs:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["format"] = FORMAT_NAME


def _write_attrs(group: h5py.Group, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _write_attrs(group.require_group(key), value)
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            group.create_dataset(key, data=np.array(value, dtype=h5py.string_dtype()))
        elif isinstance(value, (np.ndarray, list, tuple)):
            group.create_dataset(key, data=np.asarray(value))
        elif isinstance(value, (bool, np.bool_)):
            group.attrs[key] = bool(value)
        elif isinstance(value, str):
            group.attrs[key] = value.replace("\x00", "")  # HDF5 strings end at NUL
        else:
            group.attrs[key] = value


def _write_run(group: h5py.Group, r: RunRecord) -> None:
    group.attrs.update({
        "schema_version": SCHEMA_VERSION,
        "run_id": r.run_id,
        "workload": r.workload,
        "backend": r.backend,
        "ranks": r.ranks,
        "nodes": r.nodes,
        "size": r.size,
        "size_parameter": r.size_parameter,
        "parameters": json.dumps(r.parameters, sort_keys=True),
        "repeats": r.repeats,
        "warmup": r.warmup,
        "start_utc": r.start_utc,
        "end_utc": r.end_utc,
        "status": r.status,
        "verified": bool(r.verified),
        "verification_method": r.verification_method,
        "verification_detail": r.verification_detail,
        "segments": max(1, len(r.segments_utc)),
        "resumed": len(r.segments_utc) > 1,
    })
    segments = r.segments_utc or [(r.start_utc, r.end_utc)]
    group.create_dataset("segments_utc", data=np.array(segments, dtype=h5py.string_dtype()))
    timings = group.create_dataset("timings", data=np.asarray(r.timings, dtype=np.float64))
    timings.attrs["phases"] = np.array(r.phases, dtype=h5py.string_dtype())
    timings.attrs["dimensions"] = np.array(["repeat", "rank", "phase"],
                                           dtype=h5py.string_dtype())
    timings.attrs["units"] = "s"
    _write_attrs(group.create_group("result"), r.result)
    _write_attrs(group.create_group("provenance"), r.provenance)
    if r.machine:
        _write_attrs(group.create_group("machine"), r.machine)


# Failures of h5py and of decoding a damaged or foreign file: each becomes a UserError
# that names the file and the group (a soft-link loop, for one, is a RuntimeError).
_DAMAGE = (KeyError, OSError, ValueError, TypeError, RuntimeError, RecursionError,
           AttributeError, IndexError)


@contextlib.contextmanager
def open_for_reading(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """``path`` opened read-only, or a UserError saying why it cannot be (never a write)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    try:
        if not h5py.is_hdf5(path):
            raise UserError(f"{path} is not an HDF5 file")
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path} cannot be read as HDF5 (truncated or damaged?): {exc}") \
            from None
    with f:
        yield f


def _read_group(group: h5py.Group, depth: int = 0) -> dict[str, Any]:
    if depth > 16:  # a hard link back to an ancestor would recurse for ever
        raise UserError(f"{group.name}: groups nested more than 16 deep (a link cycle?)")
    out: dict[str, Any] = {}
    for key, value in group.attrs.items():
        out[key] = value.decode() if isinstance(value, bytes) else _plain(value)
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item, depth + 1)
        elif item.dtype.kind == "O":
            out[key] = item.asstr()[()].tolist()  # strings, nested as the dataset is
        else:
            out[key] = item[()]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


# What every run group must hold for show, report and compare: attribute -> its type.
_RUN_ATTRS: dict[str, type | tuple[type, ...]] = {
    "workload": str, "backend": str, "ranks": int, "size": int, "size_parameter": str,
    "parameters": str, "status": str, "verified": (bool, int), "start_utc": str,
    "end_utc": str,
}


def _checked_run(group: h5py.Group) -> dict[str, Any]:
    """One run group as a plain dict, or a UserError naming what is missing or wrong."""
    run = _read_group(group)
    for key, kind in _RUN_ATTRS.items():
        if key not in run:
            raise UserError(f"has no attribute {key!r}")
        if not isinstance(run[key], kind):
            raise UserError(f"attribute {key!r} is {run[key]!r}, not a "
                            f"{getattr(kind, '__name__', 'boolean')}")
    if run["ranks"] < 1:
        raise UserError(f"attribute 'ranks' is {run['ranks']}")
    parameters = json.loads(run["parameters"])
    if not isinstance(parameters, dict):
        raise UserError("attribute 'parameters' is not a JSON object")
    run["parameters"] = parameters
    timings = group.get("timings")
    if not isinstance(timings, h5py.Dataset):
        raise UserError("has no 'timings' dataset")
    values = np.asarray(run["timings"])
    phases = _plain(timings.attrs.get("phases"))
    if not isinstance(phases, list) or not all(isinstance(p, str) for p in phases):
        raise UserError("'timings' has no list of phase names in its 'phases' attribute")
    if (values.ndim != 3 or values.dtype.kind not in "fiu" or 0 in values.shape
            or values.shape[2] != len(phases) or phases[0] != "total"):
        raise UserError(f"'timings' is {values.dtype} {values.shape} with phases {phases}; "
                        "expected [repeat, rank, phase] seconds with 'total' first")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise UserError("'timings' holds negative, infinite or NaN seconds")
    run["phases"] = phases
    return run


def read_runs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every run in the file, oldest first, as plain dicts (``parameters`` decoded).

    A file that is missing, damaged or foreign fails with a UserError naming the file,
    the run group and what is missing; the file is only ever opened read-only.
    """
    path = Path(path)
    with open_for_reading(path) as f:
        where = path
        try:
            if "runs" not in f:
                if f.attrs.get("format") != FORMAT_NAME:  # someone else's HDF5 file
                    raise UserError("has no 'runs' group and no format attribute")
                return []  # a record file (or study) with nothing recorded yet
            group = f["runs"]
            if not isinstance(group, h5py.Group):
                raise UserError("'runs' is not a group")
            runs = []
            for name in sorted(group):
                where = f"{path}: runs/{name}"
                item = group[name]
                if not isinstance(item, h5py.Group):
                    raise UserError("is not a group")
                run = _checked_run(item)
                run["group"] = item.name
                runs.append(run)
            return runs
        except UserError as exc:
            raise UserError(f"{where}: {exc}; not a run record of this suite "
                            "(docs/SCHEMA.md)") from None
        except _DAMAGE as exc:
            raise UserError(f"{where}: cannot be read ({type(exc).__name__}: {exc}); the file "
                            "is damaged or not a run record of this suite") from None
