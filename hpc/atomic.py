"""The one way the suite replaces a file: write beside it, flush, rename over it.

Every file the suite writes for keeps (run records, study files, checkpoints, reports,
job folders' ``job.json``, submitit results) goes through ``replace_atomically`` or
``write_bytes``: a process killed at any moment leaves either the old file or the new
one, never half of one, and a disk that fills up mid-write ends in ``NoSpace`` with the
old file untouched. Writers in one folder take turns (a lock on the folder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from hpc.errors import NoSpace

# Failures for want of room: a full file system or an exhausted quota.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


_held: dict[Path, int] = {}  # folders whose lock this process holds, and how many times


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock: writers through this module (and readers that must not see
    a file between two writers' decisions) take turns. Re-entrant within a process, so a
    read-modify-write can hold it around ``write_bytes``."""
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)  # closing releases the lock


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def _remove_stale_temporaries(path: Path) -> None:
    """Delete copies left by writers on this host that were killed mid-write."""
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.{host}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_no_space(exc: BaseException) -> bool:
    """True for an error that means the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


@contextlib.contextmanager
def replace_atomically(path: Path, keep_contents: bool = False,
                       before_commit: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a temporary file beside ``path`` that replaces it atomically on success.

    With ``keep_contents`` the temporary starts as a copy of ``path`` (when it exists).
    The copy is flushed to disk and renamed over ``path``; an exception or a kill at any
    moment leaves ``path`` as it was. ``before_commit`` runs under the folder lock just
    before the rename and may raise to cancel it. A full disk raises ``NoSpace``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(path.parent):
        _remove_stale_temporaries(path)
        tmp = _temporary_name(path)
        try:
            if keep_contents and path.exists():
                shutil.copyfile(path, tmp)
                shutil.copymode(path, tmp)
            yield tmp
            _fsync(tmp)
            if before_commit is not None:
                before_commit()
            os.replace(tmp, path)
            _fsync(path.parent)
        except OSError as exc:
            if is_no_space(exc):
                raise NoSpace(f"no space left on the device of {path} ({exc.strerror}); "
                              "it was left as it was") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes | memoryview,
                before_commit: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see ``replace_atomically``). A replaced file
    keeps its mode; a new one gets the usual 0666 less the umask."""
    with replace_atomically(path, before_commit=before_commit) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
        if path.exists():
            shutil.copymode(path, tmp)
