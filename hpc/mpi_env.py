"""Where we are (inside an MPI job or not) and how to start one, without initialising MPI.

The launching process must not import ``mpi4py.MPI``: that would make it an MPI singleton
of its own before it starts ``mpiexec``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hpc.errors import UserError

# Set by process managers for every rank they start: MPICH/Intel (Hydra PMI), Open MPI,
# PMIx (Open MPI 5, srun --mpi=pmix) and srun's own PMI-2.
_RANK_ENV_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_FD")


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def inside_mpi_job(environ: dict[str, str] | None = None) -> bool:
    """True when this process is a rank started by mpiexec/mpirun/srun."""
    env = os.environ if environ is None else environ
    return any(name in env for name in _RANK_ENV_VARS)


def find_mpiexec() -> str:
    """The mpiexec to use: $HPC_MPIEXEC, else the one beside this Python (a venv's), else PATH."""
    override = os.environ.get("HPC_MPIEXEC")
    if override:
        path = shutil.which(override)
        if path is None:
            raise UserError(f"HPC_MPIEXEC={override!r} is not an executable")
        return path
    beside_python = Path(sys.executable).parent / "mpiexec"
    if beside_python.exists() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    path = shutil.which("mpiexec") or shutil.which("mpirun")
    if path is None:
        raise UserError(
            "no mpiexec found: run `make setup` (installs MPICH into .venv), load your "
            "cluster's MPI module, or set HPC_MPIEXEC=/path/to/mpiexec"
        )
    return path


def _flavor_cache(mpiexec: str) -> Path | None:
    """Where the flavour of this mpiexec, as it is now (path, mtime, size), is kept."""
    try:
        st = os.stat(mpiexec)
    except OSError:
        return None
    import hashlib  # ~3 ms, for the launching process only

    key = f"{os.path.realpath(mpiexec)}\0{st.st_mtime_ns}\0{st.st_size}"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hpc-suite" / f"mpiexec-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


@functools.lru_cache(maxsize=8)
def mpiexec_flavor(mpiexec: str) -> str:
    """'openmpi', 'mpich' (Hydra: MPICH, Intel MPI, MVAPICH) or 'unknown'.

    ``mpiexec --version`` costs a process start on every launch, so a known answer is
    kept in ~/.cache/hpc-suite until the mpiexec file changes (another path, mtime or size).
    """
    cache = _flavor_cache(mpiexec)
    with contextlib.suppress(OSError):
        if cache is not None and (kept := cache.read_text()) in ("openmpi", "mpich"):
            return kept
    flavor = _detect_flavor(mpiexec)
    if cache is not None and flavor != "unknown":  # unknown may be a timeout: ask again
        from hpc.atomic import write_bytes
        from hpc.errors import NoSpace

        with contextlib.suppress(OSError, NoSpace):  # a cache it cannot write is no error
            write_bytes(cache, flavor.encode())
    return flavor


def _detect_flavor(mpiexec: str) -> str:
    try:
        out = subprocess.run(
            [mpiexec, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).lower()
    if "open mpi" in text or "openrte" in text or "prte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text or "intel" in text:
        return "mpich"
    return "unknown"


def mpiexec_command(nranks: int, program: list[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start ``program`` on ``nranks`` local ranks.

    More ranks than cores is allowed (laptops, CI): Hydra allows it by default, Open MPI
    needs --oversubscribe, and as root Open MPI also needs two environment variables.
    Thread counts default to one per rank (see THREAD_VARIABLES).
    """
    mpiexec = find_mpiexec()
    flavor = mpiexec_flavor(mpiexec)
    argv = [mpiexec, "-n", str(nranks)]
    env = dict(os.environ)
    # One thread per rank unless the user asked otherwise: threaded BLAS in every rank
    # oversubscribes the cores, and its spinning threads starve ranks waiting in MPI.
    for name in THREAD_VARIABLES:
        env.setdefault(name, "1")
    if flavor == "mpich" and "SLURM_JOB_ID" in env:
        # Inside a Slurm job Hydra starts its proxies with srun; srun must not give them a
        # PMI of its own (MpiDefault=pmix), or the ranks see two and MPICH aborts.
        env["SLURM_MPI_TYPE"] = "none"
    if flavor == "openmpi":
        argv.append("--oversubscribe")
        if os.geteuid() == 0:
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return argv + program, env
