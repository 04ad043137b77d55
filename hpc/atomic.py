"""Writing a file so that a crash or a kill never leaves half of it: the one helper.

The new contents go to a temporary file beside the target, which is flushed to disk and
renamed over it. Writers in one folder take turns (a lock on the folder), and copies left
by writers on this host that were killed mid-write are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
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


@contextlib.contextmanager
def replace_atomically(path: Path, keep_contents: bool) -> Iterator[Path]:
    """Yield a temporary file beside ``path`` that replaces it atomically on success.

    With ``keep_contents`` the temporary starts as a copy of ``path`` (when it exists).
    The copy is flushed to disk and renamed over ``path``; an exception or a kill at any
    moment leaves ``path`` as it was. Writers in one folder take turns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        _remove_stale_temporaries(path)
        tmp = _temporary_name(path)
        try:
            if keep_contents and path.exists():
                shutil.copyfile(path, tmp)
                shutil.copymode(path, tmp)
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
            _fsync(path.parent)
        finally:
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) atomically."""
    payload = data.encode() if isinstance(data, str) else data
    with replace_atomically(Path(path), keep_contents=False) as tmp:
        tmp.write_bytes(payload)
