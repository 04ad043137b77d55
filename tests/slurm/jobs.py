"""Submit batch scripts to a real Slurm cluster and wait for what sacct says of them."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

# States after which a job never runs again (REQUEUED is not one of them).
FINAL_STATES = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE")
# `python -m hpc` of this checkout, as a batch script line.
HPC = f"{shlex.quote(sys.executable)} -m hpc"


def batch_script(*lines: str, sbatch: tuple[str, ...] = ()) -> str:
    """A bash batch script: #SBATCH lines, then the commands, run from the checkout."""
    head = ["#!/bin/bash", *(f"#SBATCH {option}" for option in sbatch),
            f"cd {shlex.quote(str(ROOT))}", "export OMP_NUM_THREADS=1"]
    return "\n".join([*head, *lines]) + "\n"


def submit(script: str, folder: Path, env: dict[str, str], name: str = "job") -> str:
    """sbatch --parsable; the job id. The script and its output (NAME.out) go in folder."""
    path = folder / f"{name}.sh"
    path.write_text(script)
    proc = subprocess.run(["sbatch", "--parsable", f"--output={folder / name}.out",
                           f"--job-name={name}", str(path)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"sbatch failed: {proc.stderr}"
    return proc.stdout.strip().split(";")[0]


def sacct(job: str, env: dict[str, str], *options: str) -> list[list[str]]:
    """Rows of `sacct -n -P -j JOB -o JobID,State,ExitCode` (with extra options)."""
    proc = subprocess.run(["sacct", "-n", "-P", "-j", job, "-o", "JobID,State,ExitCode",
                           *options], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines() if line]


def wait_final(job: str, env: dict[str, str], timeout: float) -> str:
    """The job's final state in sacct; fails the test if there is none within timeout."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        rows = sacct(job, env, "-X")
        if rows:
            state = rows[-1][1].split()[0]  # "CANCELLED by 0" -> CANCELLED
            if state in FINAL_STATES:
                return state
        time.sleep(1)
    subprocess.run(["scancel", job], env=env, timeout=60, check=False)
    raise AssertionError(f"job {job} still {state} after {timeout:.0f} s (cancelled)")


@contextlib.contextmanager
def cancelled_on_failure(job: str, env: dict[str, str]) -> Iterator[str]:
    """Cancel the job if the test fails or times out, so it does not run on after it."""
    try:
        yield job
    except BaseException:
        subprocess.run(["scancel", job], env=env, timeout=60, check=False)
        raise
