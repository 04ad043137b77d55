"""``MPI``, imported on first use.

Importing mpi4py.MPI initialises MPI. The launching process (``hpc run --np 4``) and
``hpc --help`` must not become MPI singletons just because they read workload
declarations, so modules that need MPI at run time use this proxy instead.
"""

from __future__ import annotations

from typing import Any


class _LazyMPI:
    def __getattr__(self, name: str) -> Any:
        from mpi4py import MPI as _MPI

        return getattr(_MPI, name)


MPI: Any = _LazyMPI()
