"""Submit a job script with ``sbatch --parsable`` and cancel jobs with ``scancel``.

The job id comes from ``--parsable`` output (``123`` or ``123;cluster``), never from
free text. Dependencies (``afterok:12:13``) are given at submission, since the ids they
name are only known then; arrays are part of the script (``#SBATCH --array``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpc.errors import UserError
from hpc.slurm.commands import SlurmError, run_slurm

DEPENDENCY_TYPES = ("after", "afterany", "afterok", "afternotok", "aftercorr")
_JOB_ID = re.compile(r"\d+(_\d+)?")
_PARSABLE = re.compile(r"(?P<id>\d+)(?:;(?P<cluster>[A-Za-z0-9_.-]+))?")


@dataclass(frozen=True)
class Submitted:
    job_id: str
    cluster: str | None = None


@dataclass(frozen=True)
class Dependency:
    """Start only after other jobs: e.g. Dependency("afterok", ("12", "13"))."""

    kind: str
    job_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in DEPENDENCY_TYPES:
            raise UserError(f"dependency type {self.kind!r} is not one of "
                            f"{', '.join(DEPENDENCY_TYPES)}")
        if not self.job_ids:
            raise UserError("a dependency needs at least one job id")
        for job_id in self.job_ids:
            if not _JOB_ID.fullmatch(str(job_id)):
                raise UserError(f"dependency job id {job_id!r} is not a Slurm job id "
                                "(digits, or 123_4 for an array task)")

    def option(self) -> str:
        return f"--dependency={self.kind}:{':'.join(self.job_ids)}"

    @classmethod
    def parse(cls, text: str) -> Dependency:
        """``afterok:12:13`` (the sbatch spelling) -> Dependency."""
        kind, _, ids = text.partition(":")
        return cls(kind, tuple(i for i in ids.split(":") if i))


def parse_parsable(stdout: str) -> Submitted:
    """The job id (and cluster) from ``sbatch --parsable`` output."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    m = _PARSABLE.fullmatch(lines[-1]) if lines else None
    if m is None:
        raise SlurmError(f"sbatch --parsable printed {stdout.strip()!r}, not a job id; "
                         "the job may have been submitted: check squeue")
    return Submitted(m.group("id"), m.group("cluster"))


def sbatch(script: Path, *, cwd: Path, dependency: Dependency | None = None,
           hold: bool = False) -> Submitted:
    """Submit ``script`` from ``cwd`` (its output files land there); returns its id."""
    argv = ["sbatch", "--parsable"]
    if dependency is not None:
        argv.append(dependency.option())
    if hold:
        argv.append("--hold")
    proc = run_slurm([*argv, script.name], cwd=cwd, check=False)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip() or "no message"
        raise SlurmError(f"sbatch refused the job (exit {proc.returncode}): {message}")
    return parse_parsable(proc.stdout)


def scancel(job_ids: Sequence[str]) -> None:
    for job_id in job_ids:
        if not _JOB_ID.fullmatch(job_id):
            raise UserError(f"{job_id!r} is not a Slurm job id")
    run_slurm(["scancel", *job_ids])
