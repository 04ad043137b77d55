"""Per-phase wall-clock timers for the ranks of a run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class PhaseTimer:
    """Accumulates the time spent in named phases during one repeat.

    ``total`` is measured by the runner around the whole repeat; a workload times the
    regions it knows (``compute``, ``communication``, ...) with ``with timer.phase(name)``.
    The clock is MPI.Wtime on ranks and time.perf_counter elsewhere.

    A phase costs two clock reads and a float addition: a small object and a plain list,
    no generator and no numpy call, because a step of a small problem opens several
    phases, right after sweeps that have pushed the interpreter's own state out of the
    cache (a ``contextmanager`` phase adding into a numpy array cost about 40 us there).
    """

    def __init__(self, phases: Sequence[str], clock: Callable[[], float] = time.perf_counter):
        self.phases = tuple(phases)
        self._clock = clock
        self.seconds: list[float] = [0.0] * len(self.phases)
        self._phases = {name: _Phase(self, i) for i, name in enumerate(self.phases)}

    def reset(self) -> None:
        self.seconds[:] = [0.0] * len(self.phases)

    def phase(self, name: str) -> _Phase:
        return self._phases[name]  # KeyError names a phase the workload forgot to declare

    def add(self, name: str, seconds: float) -> None:
        self.seconds[self._phases[name].index] += seconds


class _Phase:
    """``with timer.phase(name)``: adds the wall time of the block to the phase (phases
    of one timer do not nest into themselves)."""

    __slots__ = ("_seconds", "index", "_clock", "_start")

    def __init__(self, timer: PhaseTimer, index: int):
        self._seconds, self.index, self._clock = timer.seconds, index, timer._clock
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = self._clock()

    def __exit__(self, *exc: object) -> None:
        self._seconds[self.index] += self._clock() - self._start
