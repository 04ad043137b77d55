"""Where a run came from: code version, machines, MPI, packages, Slurm job, environment."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import threading
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


def git_state(folder: Path = SOURCE_DIR) -> dict[str, Any]:
    """Commit of the suite's own source tree and whether tracked files differ from it.

    One ``git status`` gives both (porcelain v2's branch header holds the commit): a git
    process less on rank 0 of every run than rev-parse and status.
    """
    try:
        out = subprocess.run(["git", "-C", str(folder), "status", "--porcelain=v2", "--branch",
                              "--untracked-files=no"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": "unknown", "git_dirty": False}
    lines = out.stdout.splitlines() if out.returncode == 0 else []
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")),
                  "(initial)")
    if commit == "(initial)":  # no repository, or one without a commit yet
        return {"git_commit": "unknown", "git_dirty": False}
    return {"git_commit": commit, "git_dirty": any(not ln.startswith("#") for ln in lines)}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_versions(path: list[str] | None = None) -> dict[str, str]:
    """Normalised distribution name -> version of everything installed on ``path``.

    One pass over the folders, where importlib.metadata.version() scans all of sys.path
    again for every name asked (tens of ms per run). It finds the same ``*.dist-info``
    and ``*.egg-info`` entries; the version comes from the entry's name (installers write
    it there), else from its metadata file. The first entry on the path wins, as for
    importlib.metadata.
    """
    found: dict[str, str] = {}
    for folder in sys.path if path is None else path:
        try:
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            stem, dot, kind = entry.name.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            name, _, version = stem.partition("-")
            key = _normalise(name)
            if key in found:
                continue
            version = version.split("-py")[0]
            if not version:
                from importlib import metadata  # ~10 ms to import: only when needed

                version = metadata.PathDistribution(Path(entry.path)).version or ""
            if version:
                found[key] = version
    return found


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    installed = installed_versions()
    for name in PACKAGES:
        if _normalise(name) in installed:
            versions[name] = installed[_normalise(name)]
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


class Prefetch:
    """This process's part of the provenance (git, packages, environment), gathered in a
    thread while the run goes on: git and the package scan take tens of milliseconds,
    which every run and every test paid after its work was done."""

    def __init__(self) -> None:
        self._info: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._gather, name="hpc-provenance",
                                        daemon=True)
        self._thread.start()

    def _gather(self) -> None:
        self._info = _process_info()

    def result(self) -> dict[str, Any]:
        """The information (waits for the thread; at once when it has finished)."""
        self._thread.join()
        if not self._info:  # the thread failed: try here, so that its error is raised here
            self._info = _process_info()
        return self._info


def collect_local(command_line: str) -> dict[str, Any]:
    """Provenance of a program this process ran (no MPI here: an external command)."""
    return {"hostnames": [platform.node()], "command_line": command_line, **_process_info()}


def collect(comm: Any, prefetched: Prefetch | None = None) -> dict[str, Any]:
    """Collective: provenance of this run on rank 0 (an empty dict elsewhere); the
    process part from ``prefetched`` when rank 0 started one."""
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
        **(prefetched.result() if prefetched is not None else _process_info()),
    }
