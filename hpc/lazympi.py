"""Modules imported on first use: ``MPI``, and ``lazy_module`` for numpy and h5py.

Importing mpi4py.MPI initialises MPI. The launching process (``hpc run --np 4``) and
``hpc --help`` must not become MPI singletons just because they read workload
declarations, so modules that need MPI at run time use this proxy instead. numpy and
h5py cost a launching process about as much as a bare Python start; modules that it
imports for their declarations or checks reach them through ``lazy_module`` too.
"""

from __future__ import annotations

import importlib
from typing import Any


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # kept: later uses are plain attribute reads
        return value


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it at its first attribute use."""
    return _LazyModule(name)


MPI: Any = lazy_module("mpi4py.MPI")
