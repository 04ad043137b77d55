"""The registry of built-in workloads, by name."""

from __future__ import annotations

from hpc.errors import UserError
from hpc.workloads.amdahl import Amdahl
from hpc.workloads.base import Param, Verification, Workload
from hpc.workloads.heat2d import Heat2D
from hpc.workloads.kmeans import KMeans
from hpc.workloads.nbody import NBody
from hpc.workloads.pi import Pi

WORKLOADS: dict[str, type[Workload]] = {w.name: w for w in (Pi, Heat2D, NBody, KMeans, Amdahl)}

__all__ = ["WORKLOADS", "Param", "Verification", "Workload", "get_workload"]


def get_workload(name: str) -> type[Workload]:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise UserError(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}") from None
