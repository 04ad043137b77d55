"""Where a run came from: code version, machines, MPI, packages, Slurm job, environment."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import hpc

PACKAGES = ("hpc-suite", "numpy", "mpi4py", "h5py", "Cython", "scipy", "mpich", "pycuda")
SLURM_IDS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NAME",
             "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_NTASKS",
             "SLURM_RESTART_COUNT")
# Variables that change how a run behaves or where it ran; never secrets.
ENV_PREFIXES = ("SLURM_", "OMP_", "MKL_", "OPENBLAS_", "CUDA_", "MPICH_", "OMPI_", "PMIX_",
                "UCX_", "FI_", "I_MPI_", "HPC_", "HDF5_")
ENV_NAMES = ("PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "HOSTNAME", "USER")
SOURCE_DIR = Path(hpc.__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(SOURCE_DIR), *args], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """Commit of the suite's own source tree and whether tracked files differ from it."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": False}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status)}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import h5py

        versions["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    return versions


def relevant_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k: v for k, v in sorted(env.items())
            if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}


def mpi_library_version() -> str:
    """MPI_Get_library_version(), cleaned: Open MPI pads it with NUL bytes, which HDF5
    strings cannot hold. Callable before MPI_Init."""
    from mpi4py import MPI

    return MPI.Get_library_version().replace("\x00", "").strip()


def _process_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "working_directory": os.getcwd(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "environment": relevant_environment(),
        "slurm": {k: os.environ[k] for k in SLURM_IDS if k in os.environ},
    }
    info.update(git_state())
    return info


def collect_local(command_line: str) -> dict[str, Any]:
    """Provenance of a program this process ran (no MPI here: an external command)."""
    return {"hostnames": [platform.node()], "command_line": command_line, **_process_info()}


def collect(comm: Any) -> dict[str, Any]:
    """Collective: provenance of this run on rank 0 (an empty dict elsewhere)."""
    from mpi4py import MPI

    hostnames = comm.gather(MPI.Get_processor_name(), root=0)
    if comm.rank != 0:
        return {}
    return {
        "hostnames": hostnames,
        "mpi_library_version": mpi_library_version(),
        "mpi_standard_version": "{}.{}".format(*MPI.Get_version()),
        # What the user typed: set by the launcher; else this process's own arguments.
        "command_line": (os.environ.get("HPC_LAUNCH_COMMAND")
                         or shlex.join(["hpc", *sys.argv[1:]])),
        "rank_command_line": shlex.join([sys.executable, *sys.argv]),
        **_process_info(),
    }
