"""Shared helpers: run the real `hpc` command (and so real mpiexec) in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every launched job is bounded: a hang fails the test instead of stalling CI.
RUN_TIMEOUT = 180


def run_hpc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_"))}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "hpc", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout,
                          check=False)


@pytest.fixture
def hpc():
    """The `hpc` command as a function: hpc("run", "pi", "--np", "2") -> CompletedProcess."""
    return run_hpc


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
