"""Launchers, registered by name: how a ``Run`` (hpc.runs) gets onto MPI ranks.

``local`` starts ranks with this machine's mpiexec; ``slurm`` renders a job script (one
run) or a job array (one task per run) and submits it with sbatch; ``submitit`` runs
every rank of a Python function through submitit. Each takes the runs plus one
``Resources`` per run, and ``hpc run``, ``hpc submit`` and ``hpc study run`` all use them.

A new launcher is one module in this package defining a ``Launcher`` subclass decorated
with ``@register``; ``get_launcher`` finds it by name.

"Launcher" means only this. What starts the ranks inside a Slurm job (srun or mpirun) is
the job's *starter* (``Resources.starter``).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hpc.errors import UserError
from hpc.launchers._starters import STARTERS, mpirun_words
from hpc.runs import Run

__all__ = ["NO_OPTIONS", "STARTERS", "JobOptions", "Launched", "Launcher", "Run",
           "get_launcher", "launcher_names", "mpirun_words", "register"]

_REGISTRY: dict[str, type[Launcher]] = {}


@dataclass(frozen=True)
class JobOptions:
    """Scheduler options some launchers take; a launcher refuses the ones it cannot honour."""

    dependency: Any = None               # hpc.slurm.sbatch.Dependency
    hold: bool = False
    checkpoint_signal: int | None = None
    throttle: int | None = None          # arrays: at most this many runs at once
    after_all: Run | None = None         # a run to start once all the others have ended

    def given(self) -> list[str]:
        """The names of the options set."""
        return [name for name in _OPTION_WORDS if getattr(self, name)]


# How each option is spelled where a user gives it, for messages.
_OPTION_WORDS = {"dependency": "--dependency", "hold": "--hold",
                 "checkpoint_signal": "--checkpoint", "throttle": "array_throttle",
                 "after_all": "a job after the others"}


NO_OPTIONS = JobOptions()


@dataclass
class Launched:
    """One started run: its job id and job folder where it has them."""

    run: Run
    job_id: str | None = None
    folder: Path | None = None
    handle: Any = None                   # the launcher's own (a process, a submitit job)
    exit_code: int | None = None         # known once it ended
    extra: dict[str, Any] = field(default_factory=dict)


class Launcher(ABC):
    """Starts runs and waits for them. Subclasses set ``name`` and ``supports``."""

    name: ClassVar[str]
    supports: ClassVar[frozenset[str]] = frozenset()  # JobOptions fields it honours
    sequential: ClassVar[bool] = False  # runs one at a time, to the end, inside start()

    def __init__(self, profile: Any = None, jobs_dir: Path | None = None) -> None:
        self.profile = profile       # hpc.slurm.profiles.Profile; None: the default one
        self.jobs_dir = jobs_dir

    @classmethod
    def check_runs(cls, runs: Sequence[Run]) -> None:
        """Refuse, before anything starts, runs this launcher cannot place (default:
        none; the scheduler places them)."""
        return None

    def check_options(self, options: JobOptions) -> None:
        refused = [_OPTION_WORDS[n] for n in options.given() if n not in self.supports]
        if refused:
            raise UserError(f"the {self.name} launcher does not take "
                            f"{', '.join(refused)}; the slurm launcher does")

    @abstractmethod
    def describe(self, runs: Sequence[Run], resources: Sequence[Any],
                 options: JobOptions = NO_OPTIONS) -> str:
        """What ``start`` would do, exactly (the commands, the job script): --dry-run."""

    @abstractmethod
    def start(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions = NO_OPTIONS) -> list[Launched]:
        """Start (or submit) every run; the local launcher runs them to the end here."""

    @abstractmethod
    def wait(self, launched: list[Launched], timeout: float | None = None) -> bool:
        """Wait until every run ended, setting each ``exit_code``; False on timeout."""

    def starter_options(self, resources: Any) -> list[str]:
        """The options a [command] run's driver needs to fill in ``{mpirun}`` where it
        runs (see ``mpirun_words``)."""
        return ["--starter", "local"]


def register(cls: type[Launcher]) -> type[Launcher]:
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def launcher_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY, key=lambda n: (n != "local", n))


def get_launcher(name: str) -> type[Launcher]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = (" ('launcher' was renamed 'starter' for srun|mpirun inside a job)"
                if name in ("srun", "mpirun") else "")
        raise UserError(f"unknown launcher {name!r}; valid: "
                        f"{', '.join(launcher_names())}{hint}") from None
