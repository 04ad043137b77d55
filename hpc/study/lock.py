"""One ``hpc study run`` per study file at a time.

Two runs of the same study would record every point twice and compete for the cores
they are timing. The run holds an exclusive ``flock`` on ``.NAME.h5.lock`` beside the
study file for as long as it runs; the kernel releases it when the process ends, however
it ends, so a killed study never blocks its rerun. The lock file says who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from hpc.errors import StudyBusy


def lock_path(study_file: Path) -> Path:
    return study_file.with_name(f".{study_file.name}.lock")


def _holder() -> str:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (f"pid {os.getpid()} on host {socket.gethostname()} since {since} "
            f"({shlex.join(['hpc', *sys.argv[1:]])})")


def _acquire(path: Path, study_file: Path) -> int:
    """An open descriptor of ``path`` holding its lock; StudyBusy if someone else has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            raise StudyBusy(f"{study_file} is in use by "
                            f"another `hpc study run`: {holder or 'a process just starting'}. "
                            "Wait for it to end (or stop it), then run again: finished points "
                            "are kept") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file as we opened it: take the new one


@contextlib.contextmanager
def study_lock(study_file: Path) -> Iterator[None]:
    """Hold the study file's lock while the block runs; ``StudyBusy`` when it is held."""
    path = lock_path(study_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, study_file)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (_holder() + "\n").encode())
        yield
    finally:
        # Removed while still locked: a process waiting on the old file sees it gone
        # (the inode check in _acquire) and takes the new one.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
