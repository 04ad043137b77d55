"""A synthetic workload with a declared serial fraction, to validate the scaling analysis.

Of ``work`` units of busy compute, a share ``serial_fraction`` runs on rank 0
alone while the other ranks wait, then the rest is shared by all ranks. With per-unit
time t, T(p) = t*W*(f + (1-f)/p): Amdahl's law with serial fraction f.

Waiting ranks poll a non-blocking barrier and sleep in between, so that they do not
steal the core of rank 0 when ranks outnumber cores (MPI's own barrier spins).

With ``--unit sleep`` a unit is 1 ms of sleep instead: work that does not compete for
cores, so the law holds with more ranks than cores (validating the analysis on a laptop
or a 2-core CI machine). The serial share is then measured from wall time, not CPU time.
"""

from __future__ import annotations

import time
from typing import Any

from hpc.lazympi import MPI, lazy_module
from hpc.timing import PhaseTimer
from hpc.workloads.base import Param, Verification, Workload
from hpc.workloads.decomp import block_range

np = lazy_module("numpy")  # not imported by a process that only starts the ranks

_POLL_SECONDS = 2e-4


def _wait_quietly(comm: Any) -> None:
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(_POLL_SECONDS)


class Amdahl(Workload):
    name = "amdahl"
    summary = "synthetic compute with a declared serial fraction f (validates scaling fits)"
    params = (
        Param("work", int, 600, "total work W in units of about 1 ms of compute", minimum=1),
        Param("serial_fraction", float, 0.1, "serial fraction f, run on rank 0 alone",
              minimum=0.0, maximum=1.0),
        Param("unit", str, "compute", "a unit of work: about 1 ms of busy compute, or 1 ms "
              "of sleep (scales with ranks beyond the cores)", choices=("compute", "sleep")),
    )
    size_param = "work"
    work_exponent = 1.0
    phases = ("compute", "communication", "serial", "parallel")

    @classmethod
    def check_decomposition(cls, params: dict[str, Any], nranks: int) -> None:
        pass  # any W spreads over any number of ranks (some may get no parallel units)

    def setup(self) -> None:
        work = self.params["work"]
        self.serial_units = round(self.params["serial_fraction"] * work)
        lo, hi = block_range(work - self.serial_units, self.comm.size, self.comm.rank)
        self.parallel_units = hi - lo
        self.work_serial = self.work_parallel = 0.0

    def reset(self) -> None:
        self.checksum = 0.0

    def _busy(self, units: int) -> tuple[float, float]:
        """Run ``units`` of work; returns (wall seconds, measured work seconds).

        The work is measured as this thread's CPU time for compute units (so that time
        slicing among oversubscribed ranks does not count) and as wall time for sleep."""
        wall, cpu = MPI.Wtime(), time.thread_time()
        if self.params["unit"] == "sleep":
            time.sleep(units * 1e-3)
        elif units:
            self.checksum += self.kernels.busy_work(units)
        wall = MPI.Wtime() - wall
        return wall, wall if self.params["unit"] == "sleep" else time.thread_time() - cpu

    def execute(self, timer: PhaseTimer) -> None:
        if self.comm.rank == 0:
            wall, self.work_serial = self._busy(self.serial_units)
            timer.add("serial", wall)
            timer.add("compute", wall)
        with timer.phase("communication"):
            _wait_quietly(self.comm)
        wall, self.work_parallel = self._busy(self.parallel_units)
        timer.add("parallel", wall)
        timer.add("compute", wall)
        with timer.phase("communication"):
            _wait_quietly(self.comm)

    def collect(self) -> dict[str, Any] | None:
        work_parallel = np.array(self.comm.gather(self.work_parallel, root=0))
        if self.comm.rank != 0:
            return None
        # Work seconds (see _busy), so that oversubscribed ranks measure the work, not
        # the time slicing.
        total = self.work_serial + work_parallel.sum()
        return {
            "serial_units": self.serial_units,
            "parallel_units_per_rank": self.parallel_units,
            "serial_work_seconds": self.work_serial,
            "parallel_work_seconds": work_parallel,
            "measured_serial_fraction": self.work_serial / total if total > 0 else 0.0,
            "checksum": self.checksum,
        }

    def verify(self, result: dict[str, Any]) -> Verification:
        declared = self.serial_units / self.params["work"]
        measured = result["measured_serial_fraction"]
        ok = bool(np.isfinite(result["checksum"])) and abs(measured - declared) < 0.05
        return Verification(
            ok=ok,
            method="measured serial CPU share within 0.05 of the declared fraction",
            detail=f"declared f = {declared:.4f}, measured {measured:.4f}",
        )
