"""Monte Carlo estimate of pi.

Each rank draws its own block of sample indices from a counter-based generator
(SplitMix64 of the global sample index), so the streams of different ranks are disjoint
and the estimate is bit-for-bit the same for any number of ranks. One reduction at the end.
"""

from __future__ import annotations

import math
from typing import Any

from hpc.lazympi import MPI
from hpc.timing import PhaseTimer
from hpc.workloads.base import Param, Verification, Workload
from hpc.workloads.decomp import block_range


class Pi(Workload):
    name = "pi"
    summary = "Monte Carlo estimate of pi (counter-based RNG, one reduction)"
    params = (
        Param("samples", int, 100_000_000, "number of random points", minimum=1),
        Param("seed", int, 2026, "random seed", minimum=0, maximum=2**63 - 1),
    )
    size_param = "samples"
    work_exponent = 1.0

    def setup(self) -> None:
        self.start, stop = block_range(self.params["samples"], self.comm.size, self.comm.rank)
        self.count = stop - self.start

    def reset(self) -> None:
        self.hits = 0

    def execute(self, timer: PhaseTimer) -> None:
        with timer.phase("compute"):
            local = self.kernels.pi_count_hits(self.params["seed"], self.start, self.count)
        with timer.phase("communication"):
            self.hits = self.comm.allreduce(local, op=MPI.SUM)

    def collect(self) -> dict[str, Any] | None:
        if self.comm.rank != 0:
            return None
        n = self.params["samples"]
        p = self.hits / n
        return {
            "hits": self.hits,
            "samples": n,
            "pi": 4.0 * p,
            "error": 4.0 * p - math.pi,
            # Standard error of the estimate, from the binomial variance of a hit.
            "sigma": 4.0 * math.sqrt(math.pi / 4 * (1 - math.pi / 4) / n),
        }

    def verify(self, result: dict[str, Any]) -> Verification:
        deviations = abs(result["error"]) / result["sigma"]
        return Verification(
            ok=deviations < 5.0,
            method="statistical: |estimate - pi| < 5 sigma",
            detail=f"pi = {result['pi']:.8f}, {deviations:.2f} sigma from pi",
        )
