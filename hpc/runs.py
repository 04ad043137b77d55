"""One description of a run, and the one place it becomes options, argv or a job step.

``RunSpec`` is a built-in workload's run, as every rank of ``hpc run`` executes it.
``RUN_OPTIONS`` is the table of the options every workload takes: the argparse options of
``hpc run`` and ``hpc submit``, the RunSpec built from them and the ``hpc run`` argv that
repeats a RunSpec inside a job all come from it, so a new run option is one entry here
and one RunSpec field (plus its use in the runner).

``Run`` is what a launcher (hpc.launchers) starts: a name, a rank count, and either a
RunSpec that every rank runs, or a driver command, one process that starts its own ranks
(a [command] study's point, whose ``{mpirun}`` the launcher fills in).
Fields that describe the machine state of a run belong here, so that every launcher
carries them the same way.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc.errors import UserError

DEFAULT_OUT = Path("results/runs.h5")


@dataclass
class RunSpec:
    workload: str
    backend: str
    params: dict[str, Any]
    repeats: int = 3
    warmup: int = 1
    out: Path | None = None
    quiet: bool = False
    np: int | None = None  # ranks asked for; inside a job it must match the job's
    checkpoint: Path | None = None  # save here on SIGUSR1 and resume from here

    def identity(self, params: dict[str, Any], nranks: int) -> Any:
        """What a checkpoint of this run records, to be matched on resume
        (an ``hpc.checkpoint.Identity``)."""
        from hpc import checkpoint as ckpt

        return ckpt.Identity(self.workload, self.backend, params, self.repeats, self.warmup,
                             nranks)


@dataclass(frozen=True)
class RunOption:
    """One option common to every workload."""

    dest: str                     # a RunSpec field, or "size" / "timeout" (see below)
    flag: str
    kwargs: dict[str, Any]        # for argparse.add_argument
    in_job: bool = True           # also an option of hpc submit (False: local hpc run only)
    repeated: bool = True         # part of the argv that repeats a RunSpec in a job


def _options() -> list[RunOption]:
    from hpc.limits import rank_count, seconds
    from kernels import BACKENDS

    return [
        RunOption("np", "--np", dict(type=rank_count, metavar="P", help=(
            "number of MPI ranks to start with mpiexec (outside an MPI job; inside one, the "
            "job's ranks are used); default: 1 rank")), in_job=False, repeated=False),
        RunOption("backend", "--backend", dict(choices=BACKENDS, default="cython",
                                               help="kernel implementation (default: "
                                               "%(default)s)")),
        # --size names the workload's own size parameter; it lands in RunSpec.params.
        RunOption("size", "--size", dict(type=int, metavar="S"), repeated=False),
        RunOption("repeats", "--repeats", dict(type=int, default=3,
                                               help="timed repeats (default: %(default)s)")),
        RunOption("warmup", "--warmup", dict(type=int, default=1, help=(
            "untimed repeats before them (default: %(default)s)"))),
        RunOption("out", "--out", dict(type=Path, default=DEFAULT_OUT, metavar="FILE.h5",
                                       help="HDF5 file the run record is appended to "
                                       "(default: %(default)s)")),
        RunOption("timeout", "--timeout", dict(type=seconds, metavar="SECONDS", help=(
            "stop the job after this long (with --np)")), in_job=False, repeated=False),
        RunOption("quiet", "--quiet", dict(action="store_true",
                                           help="print nothing on success")),
        RunOption("checkpoint", "--checkpoint", dict(type=Path, metavar="FILE.h5", help=(
            "on SIGUSR1 (Slurm: --signal=USR1@SECONDS) save the state here and exit 75; "
            "started again, resume from it; removed once the run is recorded "
            "(docs/CHECKPOINT.md)"))),
    ]


def add_run_options(p: argparse.ArgumentParser, cls: type, local: bool = True) -> None:
    """The options of ``hpc run NAME`` (``local``) or ``hpc submit NAME``."""
    common = p.add_argument_group("run options")
    for option in _options():
        if (option.in_job or local) and (option.dest != "checkpoint" or cls.checkpoint_every):
            kwargs = dict(option.kwargs)
            if option.dest == "size":
                kwargs["help"] = f"problem size: sets --{cls.size_param.replace('_', '-')}"
            common.add_argument(option.flag, dest=option.dest, **kwargs)
    own = p.add_argument_group(f"{cls.name} options")
    for param in cls.params:
        own.add_argument(f"--{param.option}", dest=f"param_{param.name}", type=param.type,
                         default=None, choices=param.choices,
                         metavar=None if param.choices else param.type.__name__.upper(),
                         help=f"{param.help} (default: {param.default})")


def run_spec_from_args(args: argparse.Namespace) -> RunSpec:
    from hpc.workloads import WORKLOADS

    cls = WORKLOADS[args.workload]
    params = {k[len("param_"):]: v for k, v in vars(args).items()
              if k.startswith("param_") and v is not None}
    if args.size is not None:
        named = params.get(cls.size_param)
        if named is not None and named != args.size:
            raise UserError(f"--size {args.size} and --{cls.size_param} {named} disagree; "
                            "give one of them")
        params[cls.size_param] = args.size
    fields = {o.dest: getattr(args, o.dest, None) for o in _options()
              if o.dest not in ("size", "timeout")}
    return RunSpec(workload=args.workload, params=params, **fields)


def run_argv(spec: RunSpec) -> list[str]:
    """``hpc run`` arguments that repeat ``spec`` in place, with every value spelled out."""
    from hpc.workloads import WORKLOADS

    argv = ["run", spec.workload]
    for option in _options():
        value = getattr(spec, option.dest) if option.repeated else None
        if value is None or value is False:
            continue
        argv += [option.flag] if value is True else [option.flag, str(value)]
    options = {p.name: p.option for p in WORKLOADS[spec.workload].params}
    for name, value in sorted(spec.params.items()):
        # repr() gives floats back exactly; strings go as they are (no shell in between).
        argv += [f"--{options.get(name, name.replace('_', '-'))}",
                 repr(value) if isinstance(value, float) else str(value)]
    return argv


@dataclass(frozen=True)
class Run:
    """What a launcher starts: ``ranks`` ranks of a workload, or one driver process."""

    name: str                              # names the job and its folder
    ranks: int
    spec: RunSpec | None = None            # a built-in workload: every rank runs it
    driver: tuple[str, ...] = ()           # else: hpc arguments of a process that starts
                                           # its own ranks through the launcher's {mpirun}
    threads: int = 1                       # OpenMP threads per rank
    nodes: int | None = None               # exactly this many nodes (a node ladder's
                                           # point); None: as the resources say
    timeout: float | None = None           # seconds; None: the launcher's limit
    info: dict[str, Any] = field(default_factory=dict)  # added to the job's job.json

    def __post_init__(self) -> None:
        if (self.spec is None) == (not self.driver):
            raise ValueError("a Run has either a RunSpec or a driver command")

    def hpc_argv(self) -> list[str]:
        """The arguments of ``python -m hpc`` that this run executes."""
        return run_argv(self.spec) if self.spec is not None else list(self.driver)

    @property
    def out(self) -> Path | None:
        return self.spec.out if self.spec is not None else None
