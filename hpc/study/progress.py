"""Progress of a study's points: done, elapsed, and an ETA from the work model.

Each point's cost is estimated as (work per rank) x (repeats + warm-ups). A point's time
is modelled as a fixed start-up (mpiexec, imports, set-up) plus a rate times its cost,
both fitted to the points already run, so the ETA improves as the study goes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import numpy as np


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StudyProgress:
    def __init__(self, costs: list[float], stream: TextIO | None = None):
        self.costs = costs
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.seconds: list[float] = []
        self.finished = 0

    def eta(self) -> float | None:
        if not self.seconds:
            return None
        done = np.array(self.costs[:self.finished])
        taken = np.array(self.seconds)
        remaining = np.array(self.costs[self.finished:])
        if len(set(done)) >= 2:
            rate, startup = np.polyfit(done, taken, 1)
            if rate >= 0 and startup >= 0:
                return float(np.sum(startup + rate * remaining))
        return float(remaining.sum() * taken.sum() / max(done.sum(), 1e-300))

    def starting(self, label: str) -> None:
        eta = self.eta()
        left = f", about {format_duration(eta)} left" if eta is not None else ""
        self._say(f"[{self.finished + 1}/{len(self.costs)}] {label} ... "
                  f"({format_duration(time.monotonic() - self.start)} elapsed{left})")

    def finished_point(self, seconds: float, outcome: str) -> None:
        self.seconds.append(seconds)
        self.finished += 1
        self._say(f"      {outcome} in {seconds:.1f} s")

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
