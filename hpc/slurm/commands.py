"""Run Slurm's client commands (sbatch, sacct, squeue, scancel): argv lists, never a
shell, always under a timeout, and every failure turned into one clear message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hpc.errors import FAILED, UserError

# Long enough for a busy controller (and for the client's own connect retries), short
# enough that a dead one gives an answer instead of a hang.
COMMAND_TIMEOUT = 120


class SlurmError(UserError):
    """A Slurm command failed or refused; the message carries its own words. Exit 1."""

    exit_code = FAILED


class SlurmMissing(SlurmError):
    """A Slurm client command is not on PATH: an answer that no retry can change."""


def slurm_available(command: str = "sbatch") -> bool:
    return shutil.which(command) is not None


def run_slurm(argv: list[str], *, cwd: Path | None = None, timeout: float = COMMAND_TIMEOUT,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run a Slurm command; with ``check``, a non-zero exit raises SlurmError with stderr."""
    if shutil.which(argv[0]) is None:
        raise SlurmMissing(f"{argv[0]} not found: Slurm's client commands are not installed "
                         "or not on PATH (on the project's test cluster: "
                         "eval \"$(scripts/slurm-cluster.sh env)\")")
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {timeout:g} s; is the Slurm "
                         "controller reachable? (scontrol ping)") from None
    if check and proc.returncode != 0:
        raise SlurmError(f"{argv[0]} failed (exit {proc.returncode}): "
                         f"{describe_failure(proc)}")
    return proc


def describe_failure(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or proc.stdout or "").strip()
    return text or "no message"
