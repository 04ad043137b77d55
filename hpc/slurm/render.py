"""Render job scripts from the Jinja2 templates in ``slurm/templates``.

Templates inherit: ``base.sh.j2`` (header, modules and environment, provenance capture,
the launch of each step) is extended by one template per starter (``srun.sh.j2``,
``mpirun.sh.j2``), which a site template may extend again.

Quoting is on by default: every ``{{ value }}`` is written through ``shlex.quote`` unless
it is a ``ShellText``, which only the filters below produce after validating or quoting
their input. A template can therefore not forget to quote a user string. Undefined
names fail the render (StrictUndefined) instead of printing nothing.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jinja2

from hpc.errors import CHECKPOINTED, UserError
from hpc.slurm.paths import templates_dir
from hpc.slurm.profiles import Profile
from hpc.slurm.resources import Resources

_SBATCH_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:=@%+/*\[\]&|()!-]+)?")
# A signal sent sooner than this after the start may find Python without its handler
# (measured: 5 s was too little on a loaded machine).
CHECKPOINT_MARGIN = 10
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ShellText(str):
    """Text already safe to paste into a shell script."""


def _quote(value: Any) -> ShellText:
    return value if isinstance(value, ShellText) else ShellText(shlex.quote(str(value)))


def _join_args(values: Iterable[Any]) -> ShellText:
    return ShellText(" ".join(_quote(v) for v in values))


def _sbatch_option(value: str) -> ShellText:
    # sbatch reads #SBATCH lines with its own parser, not a shell: an option there must
    # hold nothing that needs quoting (Resources has checked this; check again here).
    if not _SBATCH_OPTION.fullmatch(value):
        raise ValueError(f"unsafe #SBATCH option {value!r}")
    return ShellText(value)


def _identifier(value: str) -> ShellText:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"not a shell variable name: {value!r}")
    return ShellText(value)


def _trusted(value: str) -> ShellText:
    # Only for a profile's own setup lines: a profile is trusted like a job script.
    return ShellText(value)


@dataclass(frozen=True)
class Step:
    """One program started on the job's ranks: the whole job, or one array task."""

    argv: tuple[str, ...]
    ntasks: int | None = None  # ranks for this step; None: every task of the allocation
    # A program that starts its own ranks (a [command] study's point driver runs the user's
    # "{mpirun} app" itself): run once in the batch shell, not under srun/mpirun.
    direct: bool = False


@dataclass(frozen=True)
class JobScript:
    """What a job script says: resources, and one step (or one per array task)."""

    resources: Resources
    steps: tuple[Step, ...]
    throttle: int | None = None  # arrays: at most this many tasks at once ("%" in --array)
    array: bool = False  # one array task per step (implied by several steps)
    # Checkpointing steps: Slurm signals them (USR1) this many seconds before the time
    # limit; they save and exit CHECKPOINTED, and the script requeues the job.
    checkpoint_signal: int | None = None

    @property
    def is_array(self) -> bool:
        return self.array or len(self.steps) > 1

    def checkpoint_options(self) -> list[str]:
        """Signal the steps (not the batch shell) before the limit; keep every segment's
        output when the job runs again."""
        if self.checkpoint_signal is None:
            return []
        return [f"--signal=USR1@{self.checkpoint_signal}", "--requeue", "--open-mode=append"]

    def array_option(self) -> str | None:
        if not self.is_array:
            return None
        throttle = f"%{self.throttle}" if self.throttle else ""
        return f"--array=0-{len(self.steps) - 1}{throttle}"

    def check(self) -> None:
        if not self.steps:
            raise UserError("a job needs at least one step to run")
        if self.throttle is not None and self.throttle < 1:
            raise UserError(f"array throttle must be at least 1, got {self.throttle}")
        if self.checkpoint_signal is not None:
            limit = self.resources.time_seconds
            if limit <= CHECKPOINT_MARGIN:
                raise UserError(f"a {self.resources.time} job is too short to checkpoint: "
                                f"give a --time longer than {CHECKPOINT_MARGIN} s")
            if not 1 <= self.checkpoint_signal <= limit - CHECKPOINT_MARGIN:
                raise UserError(
                    f"checkpoint signal {self.checkpoint_signal} s before the limit does not "
                    f"fit a {self.resources.time} job: give 1 to {limit - CHECKPOINT_MARGIN} "
                    f"s (the ranks need {CHECKPOINT_MARGIN} s to start), or a longer --time")
        for step in self.steps:
            if step.ntasks is not None and not 1 <= step.ntasks <= self.resources.ntasks:
                raise UserError(f"a step asks for {step.ntasks} ranks but the job has "
                                f"{self.resources.ntasks} (nodes x ntasks_per_node)")


def _environment(profile: Profile) -> jinja2.Environment:
    folders = [str(templates_dir())]
    if profile.folder is not None:
        folders.insert(0, str(profile.folder))  # a site's own templates beside its profile
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders), undefined=jinja2.StrictUndefined,
        autoescape=False, finalize=_quote, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(join_args=_join_args, sbatch_option=_sbatch_option,
                       identifier=_identifier, trusted=_trusted, q=_quote)
    return env


def render_script(job: JobScript, profile: Profile, mpirun: str = "mpirun") -> str:
    """The job script text for ``job`` under ``profile``; ``mpirun`` is the program the
    mpirun starter runs (found on the job's PATH when a bare name)."""
    job.check()
    resources = job.resources
    if resources.starter == "srun":
        resources = resources.with_mpi_resolved()
    options = resources.sbatch_options()
    array = job.array_option()
    log = "slurm-%A_%a" if array else "slurm-%j"
    options += ([array] if array else []) + job.checkpoint_options()
    options += [f"--output={log}.out", f"--error={log}.err"]
    name = profile.template_name(resources)
    try:
        template = _environment(profile).get_template(name)
    except jinja2.TemplateNotFound:
        raise UserError(f"template {name!r} (profile {profile.name}) is neither in "
                        f"{templates_dir()} nor beside the profile") from None
    return template.render(
        sbatch_options=options, profile=profile.name, description=profile.description,
        setup=profile.setup, modules=resources.modules, environment=resources.environment,
        starter_options=(resources.srun_options() if resources.starter == "srun"
                          else list(resources.starter_args)),
        ntasks=resources.ntasks, steps=job.steps, is_array=job.is_array,
        mpirun=mpirun, requeue_on=CHECKPOINTED if job.checkpoint_signal else None)
