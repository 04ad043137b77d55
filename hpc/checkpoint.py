"""Stop a long run on request, save its state, and resume it later (Slurm requeue).

The protocol (docs/CHECKPOINT.md): SIGUSR1 reaches the ranks (Slurm's ``--signal=USR1@T``,
or ``kill -USR1`` on a local mpiexec, which forwards it), or SIGTERM (Slurm preempting
the job). A rank only notes it. Every
``checkpoint_every`` steps all ranks agree with one small Allreduce whether any rank was
signalled, so they stop together at the same step boundary whenever the signal reached
each of them. Rank 0 then gathers the state and writes the checkpoint file atomically
(a crash leaves the previous checkpoint intact), and every rank exits with
``EXIT_CHECKPOINTED``. Started again with the same ``--checkpoint FILE``, the run resumes
from it; when the run finishes and its record is written, the file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc.atomic import replace_atomically
from hpc.errors import CHECKPOINTED, UserError
from hpc.lazympi import MPI, lazy_module
from hpc.records import is_hdf5
from hpc.workloads.base import Block

# Imported at first use: the launching process checks --checkpoint here without them.
h5py = lazy_module("h5py")
np = lazy_module("numpy")

FORMAT_NAME = "hpc-suite checkpoint"
FORMAT_VERSION = 1
# EX_TEMPFAIL (sysexits.h): stopped on request with the state saved; start again to go on.
EXIT_CHECKPOINTED = CHECKPOINTED  # the code is defined in hpc.errors
# USR1: Slurm's --signal before the time limit, or kill -USR1. TERM: what Slurm sends the
# steps of a job it preempts (requeues) or cancels, KillWait seconds before SIGKILL.
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


@dataclass(frozen=True)
class Identity:
    """What a checkpoint must match to be resumed: the same run, on as many ranks."""

    workload: str
    backend: str
    parameters: dict[str, Any]
    repeats: int
    warmup: int
    ranks: int

    def as_attrs(self) -> dict[str, Any]:
        return {"workload": self.workload, "backend": self.backend,
                "parameters": json.dumps(self.parameters, sort_keys=True),
                "repeats": self.repeats, "warmup": self.warmup, "ranks": self.ranks}


class StopRequest:
    """A stop asked for by a signal, turned into one decision that every rank shares."""

    def __init__(self) -> None:
        self.requested = False  # this rank was signalled
        self.agreed = False  # every rank decided to stop
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True

    def agree(self, comm: Any) -> bool:
        """Collective: True on every rank when any rank was signalled."""
        flag = np.array([int(self.requested)], dtype=np.intc)
        comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        self.agreed = bool(flag[0])
        return self.agreed


@dataclass
class Progress:
    """Where a run stands, saved with its state and given back on resume."""

    iteration: int  # warm-up and timed repeats counted together, from 0
    start_utc: str  # when the first segment started
    run_id: str
    segments_utc: list[tuple[str, str]] = field(default_factory=list)  # finished segments
    timings: np.ndarray | None = None  # this rank's rows of the finished timed repeats
    partial: np.ndarray | None = None  # this rank's [total, phases...] of the stopped one


def check_checkpoint_path(path: Path, identity: Identity, out: Path | None) -> None:
    """Fail early, before any work, if ``path`` cannot be this run's checkpoint."""
    if out is not None and path.resolve() == out.resolve():
        raise UserError(f"--checkpoint {path} is also the --out file; give it its own name, "
                        "such as run.ckpt.h5")
    if path.is_dir():
        raise UserError(f"--checkpoint {path} is a directory; give a file name such as "
                        f"{path}/run.ckpt.h5")
    if path.exists():
        saved = _read_identity(path)
        differences = [f"{key} {saved.get(key)!r} there, {value!r} here"
                       for key, value in identity.as_attrs().items() if saved.get(key) != value]
        if differences:
            raise UserError(f"--checkpoint {path} holds another run ({'; '.join(differences)}); "
                            "delete it to start afresh, or give another file name")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--checkpoint {path}: cannot create files in {existing}")


def _read_identity(path: Path) -> dict[str, Any]:
    not_ours = (f"--checkpoint {path} exists and is not a checkpoint of this suite; it was "
                "left untouched: choose another file name")
    if not is_hdf5(path):
        raise UserError(not_ours)
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT_NAME:
            raise UserError(not_ours)
        if f.attrs.get("format_version") != FORMAT_VERSION:
            raise UserError(f"--checkpoint {path} has format version "
                            f"{f.attrs.get('format_version')}, this suite reads "
                            f"{FORMAT_VERSION}; delete it to start afresh")
        return {key: _plain(f.attrs[key]) for key in Identity.__dataclass_fields__}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def save(path: Path, comm: Any, identity: Identity, progress: Progress,
         state: dict[str, Any]) -> None:
    """Collective: write the run's state to ``path``, replacing it atomically.

    ``state`` maps names to scalars (attributes), arrays equal on every rank (rank 0
    writes its own) and ``Block`` pieces (each rank sends its piece to rank 0, which
    writes it into place, so rank 0 never holds more than one piece at a time).
    """
    timings = comm.gather(progress.timings, root=0)
    partials = comm.gather(progress.partial, root=0)
    blocks = sorted(name for name, value in state.items() if isinstance(value, Block))
    if comm.rank != 0:
        for tag, name in enumerate(blocks):
            block = state[name]
            comm.send((block.index, block.array.shape, block.array.dtype.str), dest=0, tag=tag)
            comm.Send(np.ascontiguousarray(block.array), dest=0, tag=tag)
        comm.Barrier()
        return
    with replace_atomically(path, keep_contents=False) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                        **identity.as_attrs(), "iteration": progress.iteration,
                        "start_utc": progress.start_utc, "run_id": progress.run_id})
        f["segments_utc"] = np.array(progress.segments_utc, dtype=h5py.string_dtype()
                                     ).reshape(-1, 2)
        f["timings"] = np.stack(timings, axis=1)  # [repeat, rank, phase]
        f["partial"] = np.stack(partials)  # [rank, phase]
        group = f.create_group("state")
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                group[name] = value
            elif not isinstance(value, Block):
                group.attrs[name] = value
        for tag, name in enumerate(blocks):
            mine = state[name]
            dataset = group.create_dataset(name, shape=mine.shape, dtype=mine.array.dtype)
            dataset[mine.index] = mine.array
            for source in range(1, comm.size):
                index, shape, dtype = comm.recv(source=source, tag=tag)
                piece = np.empty(shape, dtype=dtype)
                comm.Recv(piece, source=source, tag=tag)
                dataset[index] = piece
    comm.Barrier()


class SavedState:
    """A checkpoint's state, read piece by piece by the workload that resumes from it."""

    def __init__(self, group: h5py.Group):
        self._group = group

    def scalar(self, name: str) -> Any:
        return _plain(self._group.attrs[name])

    def array(self, name: str) -> np.ndarray:
        return self._group[name][()]

    def block(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        return self._group[name][index]


@contextlib.contextmanager
def load(path: Path, rank: int) -> Iterator[tuple[Progress, SavedState]]:
    """This rank's progress and the saved state, while the file is open (read-only)."""
    with h5py.File(path, "r") as f:
        progress = Progress(
            iteration=int(f.attrs["iteration"]), start_utc=str(f.attrs["start_utc"]),
            run_id=str(f.attrs["run_id"]),
            segments_utc=[(_text(a), _text(b)) for a, b in f["segments_utc"][()]],
            timings=f["timings"][:, rank, :], partial=f["partial"][rank])
        yield progress, SavedState(f["state"])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
