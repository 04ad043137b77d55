"""Build the tests' MPI application (tests/apps/mpi_app.c) with a real mpicc."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).parent / "apps" / "mpi_app.c"


def venv_mpicc() -> str:
    """The mpicc of the MPI that `make setup` installs (PyPI's MPICH ships it, with its
    headers), beside this Python; else the one on PATH."""
    beside = Path(sys.executable).parent / "mpicc"
    found = str(beside) if beside.exists() else shutil.which("mpicc")
    assert found, "no mpicc: run `make setup` (PyPI's mpich brings one)"
    return found


def build(folder: Path, mpicc: str | None = None, name: str = "app") -> Path:
    """Compile the application into ``folder``; its path."""
    target = folder / name
    proc = subprocess.run([mpicc or venv_mpicc(), "-O2", "-o", str(target), str(SOURCE)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"mpicc failed:\n{proc.stdout}{proc.stderr}"
    return target
