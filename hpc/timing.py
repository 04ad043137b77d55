"""Per-phase wall-clock timers for the ranks of a run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from hpc.lazympi import lazy_module

np = lazy_module("numpy")  # not imported by a process that only starts the ranks


class PhaseTimer:
    """Accumulates the time spent in named phases during one repeat.

    ``total`` is measured by the runner around the whole repeat; a workload times the
    regions it knows (``compute``, ``communication``, ...) with ``with timer.phase(name)``.
    The clock is MPI.Wtime on ranks and time.perf_counter elsewhere.
    """

    def __init__(self, phases: Sequence[str], clock: Callable[[], float] = time.perf_counter):
        self.phases = tuple(phases)
        self._index = {name: i for i, name in enumerate(self.phases)}
        self._clock = clock
        self.seconds = np.zeros(len(self.phases))

    def reset(self) -> None:
        self.seconds[:] = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        i = self._index[name]  # KeyError names a phase the workload forgot to declare
        start = self._clock()
        try:
            yield
        finally:
            self.seconds[i] += self._clock() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[self._index[name]] += seconds
