"""``hpc info``: what this installation has, and why a part is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from hpc import __version__


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def mpi_info() -> dict[str, Any]:
    import mpi4py

    mpi4py.rc.initialize = False  # Get_library_version needs no MPI_Init
    from mpi4py import MPI

    from hpc.errors import UserError
    from hpc.mpi_env import find_mpiexec, inside_mpi_job, mpiexec_flavor
    from hpc.provenance import mpi_library_version

    try:
        mpiexec: str | None = find_mpiexec()
    except UserError as exc:
        mpiexec, flavor = None, str(exc)
    else:
        flavor = mpiexec_flavor(mpiexec)
    return {
        "library": mpi_library_version().splitlines()[0],
        "standard": "{}.{}".format(*MPI.Get_version()),
        "mpi4py": mpi4py.__version__,
        "mpiexec": mpiexec,
        "mpiexec_flavor": flavor,
        "inside_mpi_job": inside_mpi_job(),
    }


def kernels_info() -> dict[str, Any]:
    from kernels import load_backend

    out: dict[str, Any] = {}
    for name in ("numpy", "cython"):
        try:
            module = load_backend(name)
            out[name] = f"available ({module.__file__})"
        except ImportError as exc:
            out[name] = f"unavailable: {exc}"
    return out


def cuda_info() -> dict[str, Any]:
    from dataclasses import asdict

    from hpc.gpu import probe

    status = probe()
    return asdict(status) | {"pycuda": status.pycuda or "not installed"}


def hdf5_info() -> dict[str, Any]:
    import h5py

    return {"h5py": h5py.version.version, "hdf5": h5py.version.hdf5_version,
            "parallel": bool(h5py.get_config().mpi)}


def slurm_info() -> dict[str, Any]:
    found = {cmd: shutil.which(cmd) for cmd in ("sbatch", "srun", "squeue", "sacct", "scancel")}
    version = _first_line(["sbatch", "--version"]) if found["sbatch"] else None
    return {"commands": found, "version": version, "in_job": os.environ.get("SLURM_JOB_ID")}


def gather() -> dict[str, Any]:
    import numpy

    return {
        "hpc": __version__,
        "numpy": numpy.__version__,
        "cores": len(os.sched_getaffinity(0)),
        "mpi": mpi_info(),
        "kernels": kernels_info(),
        "cuda": cuda_info(),
        "hdf5": hdf5_info(),
        "slurm": slurm_info(),
    }


def _cuda_line(cuda: dict[str, Any]) -> str:
    if not cuda["available"]:
        return f"unavailable: {cuda['reason']}"
    names = ", ".join(f"{d['name']} (sm {d['compute_capability']})" for d in cuda["devices"])
    return (f"available: {names}; driver {cuda['driver_version']} (CUDA "
            f"{cuda['driver_cuda_version']}), PyCUDA {cuda['pycuda']}")


def cmd_info(as_json: bool = False) -> int:
    info = gather()
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    mpi, h5, cuda, slurm = info["mpi"], info["hdf5"], info["cuda"], info["slurm"]
    slurm_found = [c for c, p in slurm["commands"].items() if p]
    lines = [
        f"hpc {info['hpc']}, numpy {info['numpy']}, {info['cores']} usable cores",
        f"MPI:      {mpi['library']} (MPI {mpi['standard']}, mpi4py {mpi['mpi4py']})",
        f"mpiexec:  {mpi['mpiexec'] or 'not found'} ({mpi['mpiexec_flavor']})",
        *(f"kernels:  {name}: {state}" for name, state in info["kernels"].items()),
        f"CUDA:     {_cuda_line(cuda)}; nvcc {'found' if cuda['nvcc'] else 'not found'}",
        f"HDF5:     {h5['hdf5']} via h5py {h5['h5py']}, "
        f"{'parallel (MPI-IO)' if h5['parallel'] else 'serial'}",
        f"Slurm:    {slurm['version'] or 'not found'}"
        + (f" ({', '.join(slurm_found)})" if slurm_found else ""),
    ]
    print("\n".join(lines))
    return 0
