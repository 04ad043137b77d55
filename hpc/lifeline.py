"""Ranks that die with their launcher.

``hpc run --np N`` (and each point of a local study) starts mpiexec, which starts the
ranks. If the launching ``hpc`` process is killed (``kill -9``, ``timeout``, a lost login
shell), its ranks must not run on and append a record that nobody waits for: a rerun of
a study would then record the same point twice. Two layers:

* mpiexec gets a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``), so it is told
  to stop, and stops its ranks, the moment the launcher dies;
* every rank knows its launcher (``HPC_LAUNCHER``: pid and start time, so a reused pid
  does not count) and watches it; a rank whose launcher is gone ends itself, and rank 0
  checks again, under the file lock, just before a record replaces the file.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

from hpc.errors import LauncherLost

LAUNCHER_ENV = "HPC_LAUNCHER"
WATCH_INTERVAL_S = 0.2
_PR_SET_PDEATHSIG = 1


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where /proc has none)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def identity(pid: int | None = None) -> str:
    """``pid:start`` of a process (this one by default): what ``HPC_LAUNCHER`` holds."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid)}"


def _alive(ident: str) -> bool:
    pid_text, _, start = ident.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ValueError:
        return True  # not ours to judge: a malformed value never kills a run
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return not start or _start_time(pid) in ("", start)


def launcher_alive() -> bool:
    """False only when this rank was started by an ``hpc`` launcher that has since died."""
    ident = os.environ.get(LAUNCHER_ENV)
    return ident is None or _alive(ident)


def require_launcher() -> None:
    """Raise ``LauncherLost`` when this rank's launcher has died (see ``launcher_alive``)."""
    if not launcher_alive():
        raise LauncherLost(f"the launching hpc process ({os.environ[LAUNCHER_ENV]}) is gone; "
                           "the run is not recorded")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only;
    elsewhere the ranks' watch does the job). Meant as a Popen ``preexec_fn``."""
    if not sys.platform.startswith("linux"):
        return
    # The process's own symbols hold libc's: find_library("c") would run `ldconfig -p`
    # in every rank and before every mpiexec.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def watch_launcher(interval: float = WATCH_INTERVAL_S) -> None:
    """In a rank started by an ``hpc`` launcher: end this process when its process manager
    dies (at once, by the kernel) or when the launcher dies (within ``interval``, once
    Python gets to run: a kernel that holds the GIL delays it). No-op without a launcher."""
    if LAUNCHER_ENV not in os.environ:
        return
    parent = os.getppid()
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # it died before the kernel was told
        os._exit(LauncherLost.exit_code)

    def watch() -> None:
        event = threading.Event()
        while not event.wait(interval):
            if not launcher_alive():
                print(f"hpc: the launching hpc process ({os.environ[LAUNCHER_ENV]}) is gone; "
                      "this rank stops without recording", file=sys.stderr, flush=True)
                _stop_rank()

    threading.Thread(target=watch, name="hpc-launcher-watch", daemon=True).start()


def _stop_rank() -> None:
    """End this rank at once. Before MPI is up, by SIGKILL: a rank that merely exits then
    leaves the others waiting in MPI_Init for ever, one killed by a signal ends the job
    (hpc.mpi_start; seen as a 60 s hang of a test, once in a dozen clean-clone runs)."""
    mpi = sys.modules.get("mpi4py.MPI")
    initialized = getattr(mpi, "Is_initialized", None)  # None while mpi4py is importing
    if initialized is None or not initialized():
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(LauncherLost.exit_code)
