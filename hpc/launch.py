"""Start ``hpc run`` on N local ranks with the environment's mpiexec."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

from hpc import lifeline
from hpc.mpi_env import mpiexec_command

KILL_GRACE_SECONDS = 5
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(Exception):
    """SIGTERM reached the launcher (``timeout``, ``kill``, a batch system)."""


def _raise_terminated(*_: object) -> None:
    raise _Terminated


def launch_local(nranks: int, hpc_argv: list[str], timeout: float | None = None) -> int:
    """Run ``python -m hpc <hpc_argv>`` on ``nranks`` ranks; returns its exit code.

    Every rank runs under the runner's abort-on-exception guard (hpc.runner.run_ranks),
    the same protection ``python -m mpi4py`` gives, without turning an orderly exit code
    (3: result not verified) into an MPI_Abort. The child runs in its own process group
    so that a timeout, Ctrl-C or SIGTERM can stop mpiexec and all its ranks; if this
    process dies without that chance (SIGKILL), hpc.lifeline ends them.
    """
    program = [sys.executable, "-m", "hpc", *hpc_argv]
    argv, env = mpiexec_command(nranks, program)
    env["HPC_LAUNCH_COMMAND"] = shlex.join(["hpc", *hpc_argv])
    env[lifeline.LAUNCHER_ENV] = lifeline.identity()
    # SIGTERM becomes an orderly stop of the whole job (its default would leave it running).
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    proc = subprocess.Popen(argv, env=env, start_new_session=True,
                            preexec_fn=lifeline.die_with_parent)
    # A stop request for --checkpoint: mpiexec (Hydra and Open MPI) passes it to the ranks.
    previous = signal.signal(signal.SIGUSR1, lambda *_: proc.send_signal(signal.SIGUSR1))
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"hpc: error: the run exceeded --timeout {timeout:g} s and was stopped",
              file=sys.stderr)
        _stop(proc)
        return 124
    except KeyboardInterrupt:
        _stop(proc)
        return 130
    except _Terminated:
        print("hpc: terminated; stopping the ranks", file=sys.stderr)
        _stop(proc)
        return EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGUSR1, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue
