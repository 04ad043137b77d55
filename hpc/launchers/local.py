"""The local launcher: runs one after another on this machine, started by mpiexec.

A workload run is ``python -P -m hpc run ...`` on P ranks of the environment's mpiexec; a
driver (a [command] study point) is one process that starts its own ranks with the same
mpiexec. Each runs in its own process group, so a timeout, Ctrl-C or SIGTERM stops it and
all its ranks; if this process dies without that chance (SIGKILL), hpc.lifeline ends them.
SIGUSR1 (a checkpoint request) is passed on to mpiexec, which passes it to the ranks.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from hpc import lifeline
from hpc.errors import INTERRUPTED, TERMINATED, TIMED_OUT, UserError
from hpc.launchers import NO_OPTIONS, JobOptions, Launched, Launcher, register
from hpc.runs import Run

KILL_GRACE_SECONDS = 5


class _Terminated(Exception):
    """SIGTERM reached the launcher (``timeout``, ``kill``, a batch system)."""


def _raise_terminated(*_: object) -> None:
    raise _Terminated


# `python -m hpc` would put the working folder first on sys.path, so that started inside
# another checkout of the suite, its ranks would run that checkout's hpc. -P (3.11+) leaves
# it out; on 3.10 the same is done by hand before hpc is imported.
_BOOTSTRAP = ("import sys, runpy; del sys.path[0]; "
              "runpy.run_module('hpc', run_name='__main__', alter_sys=True)")


def hpc_program(version: tuple[int, ...] = tuple(sys.version_info)) -> list[str]:
    """The words that run this installation's ``hpc``, whatever the working folder holds."""
    if version >= (3, 11):
        return [sys.executable, "-P", "-m", "hpc"]
    return [sys.executable, "-c", _BOOTSTRAP]


def _command(run: Run) -> tuple[list[str], dict[str, str]]:
    program = [*hpc_program(), *run.hpc_argv()]
    if run.spec is None:  # a driver starts its own ranks with mpiexec
        return [*program, "--starter", "local"], dict(os.environ)
    from hpc.mpi_env import mpiexec_command

    argv, env = mpiexec_command(run.ranks, program)
    if run.threads > 1:
        env["OMP_NUM_THREADS"] = str(run.threads)
    return argv, env


@register
class LocalLauncher(Launcher):
    name = "local"
    sequential = True  # a study runs its points one at a time, with progress between

    @classmethod
    def check_runs(cls, runs: Sequence[Run]) -> None:
        many = sorted({r.nodes for r in runs if r.nodes is not None and r.nodes > 1})
        if many:
            raise UserError(f"the local launcher runs on this one machine; a point on "
                            f"{' and '.join(map(str, many))} nodes cannot run here: run it "
                            "with --launcher slurm or submitit")

    def describe(self, runs: Sequence[Run], resources: Sequence[Any],
                 options: JobOptions = NO_OPTIONS) -> str:
        self.check_runs(runs)
        return "\n".join(shlex.join(_command(run)[0]) for run in runs)

    def start(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions = NO_OPTIONS) -> list[Launched]:
        self.check_options(options)
        self.check_runs(runs)
        launched = []
        for run in runs:
            launched.append(Launched(run, exit_code=self.run_one(run)))
            if launched[-1].exit_code == INTERRUPTED:
                break
        return launched

    def wait(self, launched: list[Launched], timeout: float | None = None) -> bool:
        return True  # start ran them to the end

    @staticmethod
    def run_one(run: Run) -> int:
        """Run ``run`` to its end; its exit code (124 after ``run.timeout``)."""
        argv, env = _command(run)
        env["HPC_LAUNCH_COMMAND"] = run.info.get("command") or shlex.join(
            ["hpc", *run.hpc_argv()])
        env[lifeline.LAUNCHER_ENV] = lifeline.identity()
        # SIGTERM becomes an orderly stop of the whole job (its default would leave it running).
        previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
        proc = subprocess.Popen(argv, env=env, start_new_session=True,
                                preexec_fn=lifeline.die_with_parent)
        previous = signal.signal(signal.SIGUSR1, lambda *_: proc.send_signal(signal.SIGUSR1))
        try:
            return proc.wait(timeout=run.timeout)
        except subprocess.TimeoutExpired:
            print(f"hpc: error: the run exceeded --timeout {run.timeout:g} s and was "
                  "stopped", file=sys.stderr)
            _stop(proc)
            return TIMED_OUT
        except KeyboardInterrupt:
            _stop(proc)
            return INTERRUPTED
        except _Terminated:
            print("hpc: terminated; stopping the ranks", file=sys.stderr)
            _stop(proc)
            return TERMINATED
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
