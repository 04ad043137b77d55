"""What every workload declares and implements.

A workload is an MPI program split into steps the runner times:

    setup()        once, untimed: build data, communicators, buffers
    reset()        before every repeat, untimed: back to the initial state
    execute(timer) timed: the work; phases are timed inside with ``timer.phase(name)``
    collect()      collective, untimed: the result on rank 0 (None elsewhere)
    verify(result) rank 0, untimed: check against a serial reference or an invariant
    teardown()     collective, untimed, last: release windows and requests

and declares its parameters, its size parameter and how its work grows with size, so
that a weak-scaling study can keep the work per rank constant.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from hpc.errors import UserError
from hpc.limits import INT64_MAX
from hpc.timing import PhaseTimer


@dataclass(frozen=True)
class Param:
    """One workload parameter, also a ``hpc run NAME --<name>`` option."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def convert(self, value: Any) -> Any:
        """``value`` checked as this parameter's type, in range; else a UserError.

        Nothing is converted silently: 2.7 is no count of steps, true is no number and
        "10" is a string (TOML and the Python API hand values over as they were written).
        """
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise UserError(f"--{self.option} must be a whole number, got {value!r}")
            value = int(value)  # numpy integers too
            if abs(value) > INT64_MAX:
                raise UserError(f"--{self.option} {value} is beyond the 64-bit integers")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise UserError(f"--{self.option} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise UserError(f"--{self.option} must be a finite number, got {value}")
        elif not isinstance(value, self.type):
            raise UserError(f"--{self.option} must be a {self.type.__name__}, got {value!r}")
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise UserError(f"--{self.option} must be one of {', '.join(self.choices)}, "
                            f"got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise UserError(f"--{self.option} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise UserError(f"--{self.option} must be <= {self.maximum:g}, got {value}")

    @property
    def option(self) -> str:
        return self.name.replace("_", "-")


@dataclass(frozen=True)
class Verification:
    """Outcome of checking a run's result; ``method`` says against what."""

    ok: bool
    method: str
    detail: str


@dataclass(frozen=True)
class Block:
    """This rank's piece ``array`` of a whole array of ``shape`` spread over the ranks
    (state for a checkpoint: hpc.checkpoint writes each piece into place)."""

    array: Any  # np.ndarray
    index: tuple[slice, ...]  # where the piece sits in the whole array
    shape: tuple[int, ...]


class Workload(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    size_param: ClassVar[str]
    # Work grows as size ** work_exponent (heat2d: n*n grid -> 2); weak scaling uses it.
    work_exponent: ClassVar[float]
    phases: ClassVar[tuple[str, ...]] = ("compute", "communication")

    def __init__(self, comm: Any, params: dict[str, Any], kernels: Any, backend: str):
        self.comm = comm
        self.params = params
        self.kernels = kernels
        self.backend = backend

    # -- declarations -------------------------------------------------------------------
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls.params}

    @classmethod
    def resolve_params(cls, given: dict[str, Any], nranks: int) -> dict[str, Any]:
        """Defaults overlaid with ``given``, range-checked and checked against ``nranks``."""
        unknown = sorted(set(given) - {p.name for p in cls.params})
        if unknown:
            valid = ", ".join(p.name for p in cls.params)
            raise UserError(f"unknown parameter(s) for {cls.name}: {', '.join(unknown)}; "
                            f"valid: {valid}")
        params = cls.defaults() | {k: v for k, v in given.items() if v is not None}
        for p in cls.params:
            params[p.name] = p.convert(params[p.name])
        cls.check_decomposition(params, nranks)
        return params

    @classmethod
    def check_decomposition(cls, params: dict[str, Any], nranks: int) -> None:
        """Raise UserError when ``params`` cannot be spread over ``nranks`` ranks."""
        size = params[cls.size_param]
        if size < nranks:
            raise UserError(
                f"{cls.name}: --{cls.size_param.replace('_', '-')} {size} is too small for "
                f"{nranks} ranks (each rank needs at least one); use at least {nranks}"
            )

    @classmethod
    def memory_bytes(cls, params: dict[str, Any], nranks: int) -> tuple[float, float]:
        """Memory model: (bytes each rank's arrays need, bytes rank 0 needs on top).

        An estimate from the arrays the workload allocates, good to a factor of two, so
        that a size which cannot fit is refused before any rank starts (hpc.limits).
        """
        return 0.0, 0.0

    @classmethod
    def work(cls, params: dict[str, Any]) -> float:
        """Relative amount of work (arbitrary units, proportional to run time on one rank)."""
        return float(params[cls.size_param]) ** cls.work_exponent

    @classmethod
    def weak_scaled_size(cls, base_size: int, factor: float) -> int:
        """The size whose work is ``factor`` times that of ``base_size``."""
        return max(1, round(base_size * factor ** (1.0 / cls.work_exponent)))

    # -- the run ------------------------------------------------------------------------
    def setup(self) -> None:  # noqa: B027 - optional hook
        """Untimed, once."""

    @abstractmethod
    def reset(self) -> None:
        """Untimed, before every repeat: return to the initial state."""

    @abstractmethod
    def execute(self, timer: PhaseTimer) -> None:
        """The timed work of one repeat."""

    @abstractmethod
    def collect(self) -> dict[str, Any] | None:
        """Collective: the result (scalars and arrays) on rank 0, None on other ranks."""

    @abstractmethod
    def verify(self, result: dict[str, Any]) -> Verification:
        """Rank 0 only: check the result."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Collective, untimed, last: release what setup() made that outlives the object
        (shared-memory windows, persistent requests)."""

    # -- checkpointing (hpc.checkpoint), for long step-by-step workloads ----------------
    # Steps between the ranks' checks for a stop request; 0: the workload cannot stop.
    checkpoint_every: ClassVar[int] = 0
    stop: Any = None  # hpc.checkpoint.StopRequest, set by the runner for --checkpoint

    def stop_agreed(self, step: int, timer: PhaseTimer) -> bool:
        """True on every rank when the ranks agreed to stop after ``step``.

        Collective every ``checkpoint_every`` steps (the same steps on every rank), only
        when a checkpoint was asked for; otherwise free.
        """
        if self.stop is None or step % self.checkpoint_every:
            return False
        with timer.phase("communication"):
            return self.stop.agree(self.comm)

    def save_state(self) -> dict[str, Any]:
        """After a stop: everything needed to go on (see hpc.checkpoint.save)."""
        raise NotImplementedError(f"{self.name} cannot be checkpointed")

    def load_state(self, saved: Any) -> None:
        """Instead of reset(): continue from an hpc.checkpoint.SavedState."""
        raise NotImplementedError(f"{self.name} cannot be checkpointed")


class SteppedWorkload(Workload):
    """A workload that advances in numbered steps (``params["steps"]`` of them).

    The step loop lives here once, for every backend: it resumes from ``self.step``, asks
    the ranks whether to stop for a checkpoint and stops at the same step on all of them.
    A backend overrides the per-step hook ``advance`` (and ``begin``) and moves its state
    to and from the host in ``save_state``/``load_state``; it never re-implements
    ``execute``, so a change to the loop reaches every backend (a test checks this).
    """

    step: int = 0  # steps done in this repeat; reset() sets it to 0, load_state to the saved

    def begin(self, timer: PhaseTimer) -> None:  # noqa: B027 - optional hook
        """Before the first step of a repeat, and again after a resume."""

    @abstractmethod
    def advance(self, step: int, timer: PhaseTimer) -> None:
        """Do step number ``step`` (1-based), timing its phases on ``timer``."""

    def execute(self, timer: PhaseTimer) -> None:
        self.begin(timer)
        last = self.params["steps"]
        for step in range(self.step + 1, last + 1):
            self.advance(step, timer)
            self.step = step
            if step < last and self.stop_agreed(step, timer):
                return
