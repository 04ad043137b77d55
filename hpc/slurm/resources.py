"""One validated description of what a job needs, rendered for every launcher.

``Resources`` is the single source for the ``#SBATCH`` lines of a job script, the
parameters of a submitit executor and the local ``mpiexec`` line. Every value is checked
when a ``Resources`` is made: an unknown field fails listing the valid ones, impossible
values (0 nodes, a malformed time) fail saying what is allowed.

Strings that end up in ``#SBATCH`` lines (names, partition, constraint, directives) are
restricted to characters that need no quoting, because sbatch reads those lines with its
own parser, not a shell: a space, quote, ``;``, ``$``, backtick or newline there is
rejected rather than escaped. Environment values may hold anything; they are only ever
written shell-quoted.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from hpc.errors import UserError
from hpc.limits import MAX_NODES, MAX_RANKS, MAX_TASKS_PER_NODE

STARTERS = ("srun", "mpirun")  # what starts the ranks inside a Slurm job
# Field names before "launcher" came to mean local|slurm|submitit only.
_RENAMED = {"launcher": "starter", "launcher_args": "starter_args"}
KILL_ON_BAD_EXIT = "--kill-on-bad-exit=1"
# The srun PMI plugin each MPI family speaks: Open MPI is built with PMIx; MPICH (the PyPI
# wheel, Intel MPI, MVAPICH) speaks PMI-2 and refuses PMIx unless built for it.
SRUN_MPI_FOR_FLAVOR = {"openmpi": "pmix", "mpich": "pmi2"}
GPU_DIRECTIVES = ("gpus-per-node", "gres")

# Slurm names (partition, account, qos, job name): no shell or sbatch metacharacters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_NAME_LIST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*(,[A-Za-z0-9][A-Za-z0-9_.+-]*)*")
# Node features combine with & | , * [ ] ( ) and counts, e.g. "a100&(ib|roce)" or "[rack1*2]".
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.+\-&|,*\[\]():!]+")
_MODULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+/@:~-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEM = re.compile(r"[1-9][0-9]{0,15}[KMGT]?")
_MPI_PLUGIN = re.compile(r"[a-z][a-z0-9_]*")
# One command-line option (sbatch directive or srun argument): --name or --name=value.
_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:=@%+/*\[\]&|()!-]+)?")
# One argument of the starter (srun or mpirun), e.g. --gpu-bind=closest or --bind-to, core.
_TOKEN = re.compile(r"[A-Za-z0-9_.,:=@%+/*\[\]-]+")
# At most 9 digits a field: a limit beyond that is a typo, and int() of it stays quick.
_TIME = re.compile(r"(?:(?P<days>\d{1,9})-)?(?P<a>\d{1,9})(?::(?P<b>\d{1,9}))?"
                   r"(?::(?P<c>\d{1,9}))?")

# Directives the renderer writes itself: giving them as extras would contradict it.
_OWN_DIRECTIVES = {
    "nodes": "nodes", "ntasks-per-node": "ntasks_per_node", "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node", "gres": "gpus_per_node", "mem": "mem", "time": "time",
    "partition": "partition", "account": "account", "qos": "qos", "constraint": "constraint",
    "job-name": "job_name", "output": None, "error": None, "array": None, "dependency": None,
    "chdir": None, "parsable": None, "ntasks": "ntasks_per_node",
}


def parse_time(text: str) -> int:
    """Seconds in a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    text = str(text).strip()
    m = _TIME.fullmatch(text)
    if m is None:
        raise UserError(f"time {text!r} is malformed; use HH:MM:SS (e.g. 00:30:00), "
                        "MM, MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    days, a, b, c = (int(v) if v is not None else None for v in m.group("days", "a", "b", "c"))
    if days is not None:
        hours, minutes, seconds = a, b or 0, c or 0
        bounded = [(hours, 24, "hours"), (minutes, 60, "minutes"), (seconds, 60, "seconds")]
    elif c is not None:
        hours, minutes, seconds = a, b, c
        bounded = [(minutes, 60, "minutes"), (seconds, 60, "seconds")]
    else:  # MM or MM:SS, as Slurm reads one or two numbers
        hours, minutes, seconds = 0, a, b or 0
        bounded = [(seconds, 60, "seconds")]
    for value, limit, what in bounded:
        if value >= limit:
            raise UserError(f"time {text!r}: {what} must be below {limit}, got {value}")
    total = ((days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds
    if total == 0:
        raise UserError(f"time {text!r} is zero; a job needs a positive time limit")
    return total


def format_time(seconds: int) -> str:
    """The canonical Slurm spelling: HH:MM:SS, or D-HH:MM:SS from one day on."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hms = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hms}" if days else hms


def _check_int(name: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise UserError(f"{name} must be at least {minimum}, got {value}")
    if value > maximum:
        raise UserError(f"{name} must be at most {maximum}, got {value}")
    return value


def _check_pattern(name: str, value: Any, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise UserError(f"{name} {value!r} is not allowed: {allowed}")
    return value


def _check_strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise UserError(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


_NAME_RULE = "use letters, digits and . _ + - only (no spaces, quotes, ; $ ` or newlines)"


def _refuse_old_names(given: Mapping[str, Any]) -> None:
    for old in sorted(set(given) & set(_RENAMED)):
        raise UserError(f"resource field {old!r} is now {_RENAMED[old]!r} (srun or mpirun: "
                        "what starts the ranks in a job); 'launcher' names how a run is "
                        "started: local, slurm or submitit")


@dataclass(frozen=True)
class Resources:
    """What a job asks Slurm (or local mpiexec) for. Make one with ``Resources.create``."""

    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem: str | None = None  # per node, Slurm units: 4000 (MB), 4G, 1T
    time: str = "00:10:00"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str = "hpc"
    modules: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    starter: str = "srun"  # srun (ranks started by Slurm) or mpirun (the MPI's own)
    # srun --mpi plugin. "auto": pmix for Open MPI, pmi2 for MPICH-derived MPIs, judged by
    # the mpiexec beside the submitting Python; None: Slurm's MpiDefault.
    mpi: str | None = "auto"
    gpu_directive: str = "gpus-per-node"  # how this site asks for GPUs: gpus-per-node | gres
    gpu_type: str | None = None  # e.g. a100: --gres=gpu:a100:N or --gpus-per-node=a100:N
    starter_args: tuple[str, ...] = ()  # more starter options, e.g. --gpu-bind=closest
    extra_directives: tuple[str, ...] = ()  # more #SBATCH options, e.g. --exclusive

    # -- construction --------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def create(cls, values: Mapping[str, Any] | None = None, **more: Any) -> Resources:
        """A validated Resources from field values; unknown names fail listing valid ones."""
        given = {**(values or {}), **more}
        _refuse_old_names(given)
        unknown = sorted(set(given) - set(cls.field_names()))
        if unknown:
            raise UserError(f"unknown resource field(s): {', '.join(unknown)}; valid fields: "
                            f"{', '.join(cls.field_names())}")
        return cls(**{k: v for k, v in given.items() if v is not None})

    def updated(self, values: Mapping[str, Any] | None = None, **more: Any) -> Resources:
        """A copy with some fields replaced (None leaves a field as it is), validated."""
        current = {name: getattr(self, name) for name in self.field_names()}
        given = {k: v for k, v in {**(values or {}), **more}.items() if v is not None}
        _refuse_old_names(given)
        unknown = sorted(set(given) - set(current))
        if unknown:
            raise UserError(f"unknown resource field(s): {', '.join(unknown)}; valid fields: "
                            f"{', '.join(self.field_names())}")
        return Resources.create({**current, **given})

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "nodes", _check_int("nodes", self.nodes, 1, MAX_NODES))
        set_(self, "ntasks_per_node", _check_int("ntasks_per_node", self.ntasks_per_node, 1,
                                                 MAX_TASKS_PER_NODE))
        set_(self, "cpus_per_task", _check_int("cpus_per_task", self.cpus_per_task, 1,
                                               MAX_TASKS_PER_NODE))
        set_(self, "gpus_per_node", _check_int("gpus_per_node", self.gpus_per_node, 0, 1024))
        if self.ntasks > MAX_RANKS:
            raise UserError(f"nodes = {self.nodes} x ntasks_per_node = {self.ntasks_per_node} "
                            f"is {self.ntasks} ranks, beyond the {MAX_RANKS} this suite runs")
        set_(self, "time", format_time(parse_time(self.time)))
        if self.mem is not None:
            set_(self, "mem", _check_pattern("mem", str(self.mem).upper(), _MEM,
                                             "give a positive whole number with an optional "
                                             "unit K, M, G or T, e.g. 4G or 4000 (MB)"))
        for name in ("account", "qos", "job_name", "gpu_type"):
            value = getattr(self, name)
            if value is not None:
                _check_pattern(name, value, _NAME, _NAME_RULE)
        if self.partition is not None:
            _check_pattern("partition", self.partition, _NAME_LIST,
                           _NAME_RULE + "; several partitions are separated by commas")
        if self.constraint is not None:
            _check_pattern("constraint", self.constraint, _CONSTRAINT,
                           "use feature names with & | , * [ ] ( ) ! only")
        set_(self, "modules", tuple(
            _check_pattern("module", m, _MODULE, "module names use letters, digits and "
                           ". _ + / @ : ~ - only") for m in _check_strings("modules",
                                                                           self.modules)))
        set_(self, "environment", self._checked_environment(self.environment))
        if self.starter not in STARTERS:
            raise UserError(f"starter {self.starter!r} is not one of {', '.join(STARTERS)}")
        if self.mpi is not None:
            _check_pattern("mpi", self.mpi, _MPI_PLUGIN,
                           "give an srun --mpi plugin name such as pmix, pmi2 or none")
        if self.gpu_directive not in GPU_DIRECTIVES:
            raise UserError(f"gpu_directive {self.gpu_directive!r} is not one of "
                            f"{', '.join(GPU_DIRECTIVES)}")
        set_(self, "starter_args", tuple(
            _check_pattern("starter argument", arg, _TOKEN, "give one argument per list item, "
                           "with no spaces, quotes, ; $ ` or newlines")
            for arg in _check_strings("starter_args", self.starter_args)))
        set_(self, "extra_directives", self._checked_options("extra_directives",
                                                             self.extra_directives))
        for option in self.extra_directives:
            name = option[2:].split("=", 1)[0]
            if name in _OWN_DIRECTIVES:
                instead = _OWN_DIRECTIVES[name]
                hint = (f"set the field {instead} instead" if instead
                        else "hpc submit sets it itself")
                raise UserError(f"extra directive {option!r} conflicts with what hpc writes: "
                                f"{hint}")

    @staticmethod
    def _checked_environment(value: Any) -> tuple[tuple[str, str], ...]:
        items = value.items() if isinstance(value, Mapping) else value
        try:
            pairs = [(k, v) for k, v in items]
        except (TypeError, ValueError):
            raise UserError(f"environment must be a table of NAME = \"value\", got {value!r}")\
                from None
        out = []
        for name, text in pairs:
            _check_pattern("environment variable", name, _ENV_NAME,
                           "names are letters, digits and _, not starting with a digit")
            if not isinstance(text, str | int | float) or isinstance(text, bool):
                raise UserError(f"environment variable {name}: value must be a string, "
                                f"got {text!r}")
            if "\x00" in str(text):
                raise UserError(f"environment variable {name}: value holds a NUL byte")
            out.append((name, str(text)))
        return tuple(sorted(dict(out).items()))

    @staticmethod
    def _checked_options(name: str, value: Any) -> tuple[str, ...]:
        return tuple(_check_pattern(name[:-1].replace("_", " "), option, _OPTION,
                                    "give options as --name or --name=value with no spaces, "
                                    "quotes, ; $ ` or newlines")
                     for option in _check_strings(name, value))

    # -- derived -------------------------------------------------------------------------
    @property
    def ntasks(self) -> int:
        return self.nodes * self.ntasks_per_node

    @property
    def time_seconds(self) -> int:
        return parse_time(self.time)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists, a table for environment), as a profile or job.json holds them."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if name == "environment":
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def _gpu_option(self) -> str | None:
        if not self.gpus_per_node:
            return None
        typed = f"{self.gpu_type}:{self.gpus_per_node}" if self.gpu_type else \
            str(self.gpus_per_node)
        if self.gpu_directive == "gres":
            return f"--gres=gpu:{typed}"
        return f"--gpus-per-node={typed}"

    # -- renderers -----------------------------------------------------------------------
    def sbatch_options(self) -> list[str]:
        """The sbatch options this job asks for, in a fixed order (one per #SBATCH line)."""
        options = [f"--job-name={self.job_name}", f"--nodes={self.nodes}",
                   f"--ntasks-per-node={self.ntasks_per_node}",
                   f"--cpus-per-task={self.cpus_per_task}", f"--time={self.time}"]
        for name in ("mem", "partition", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None:
                options.append(f"--{name}={value}")
        gpu = self._gpu_option()
        if gpu:
            options.append(gpu)
        return options + list(self.extra_directives)

    def sbatch_lines(self) -> list[str]:
        return [f"#SBATCH {option}" for option in self.sbatch_options()]

    def with_mpi_resolved(self) -> Resources:
        """This job with ``mpi="auto"`` replaced by the plugin the local MPI speaks."""
        if self.mpi != "auto":
            return self
        from hpc.mpi_env import find_mpiexec, mpiexec_flavor

        try:
            flavor = mpiexec_flavor(find_mpiexec())
        except UserError:  # no mpiexec here: leave the plugin to Slurm
            flavor = "unknown"
        return dataclasses.replace(self, mpi=SRUN_MPI_FOR_FLAVOR.get(flavor))

    def srun_options(self) -> list[str]:
        """Options of the srun that starts the ranks inside the allocation."""
        if self.mpi == "auto":
            raise ValueError("resolve mpi='auto' with with_mpi_resolved() before rendering")
        mpi = [f"--mpi={self.mpi}"] if self.mpi else []
        # One task failing ends the step at once: a rank that dies in MPI start-up would
        # otherwise leave the others in MPI_Init until the time limit (hpc.mpi_start).
        return [KILL_ON_BAD_EXIT, *mpi, *self.starter_args]

    def submitit_parameters(self) -> dict[str, Any]:
        """Parameters for ``submitit.SlurmExecutor.update_parameters``: the same job."""
        import shlex

        setup = [f"module load {shlex.quote(m)}" for m in self.modules]
        setup += [f"export {k}={shlex.quote(v)}" for k, v in self.environment]
        params: dict[str, Any] = {
            "job_name": self.job_name, "nodes": self.nodes,
            "ntasks_per_node": self.ntasks_per_node, "cpus_per_task": self.cpus_per_task,
            # submitit takes whole minutes; never ask for less than the user gave.
            "time": max(1, math.ceil(self.time_seconds / 60)),
            "srun_args": self.srun_options(), "setup": setup,
        }
        for name in ("mem", "partition", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        extra = {}
        gpu = self._gpu_option()
        for option in ([gpu] if gpu else []) + list(self.extra_directives):
            key, _, value = option[2:].partition("=")
            extra[key] = value if value else True
        if extra:
            params["additional_parameters"] = extra
        return params

    def mpiexec_command(self, program: list[str]) -> tuple[list[str], dict[str, str]]:
        """The local line: ``mpiexec -n NTASKS program`` and its environment."""
        from hpc.mpi_env import mpiexec_command

        argv, env = mpiexec_command(self.ntasks, program)
        env.update(dict(self.environment))
        return argv, env
