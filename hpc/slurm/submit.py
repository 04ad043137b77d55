"""Render a job into its own folder and submit it with sbatch: the API behind ``hpc
submit``, also used for arrays (one task per point) and dependency chains."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpc.slurm.jobdir import SCRIPT_FILE, new_job_folder, write_info
from hpc.slurm.profiles import Profile
from hpc.slurm.render import JobScript, Step, render_script
from hpc.slurm.resources import Resources
from hpc.slurm.sbatch import Dependency, sbatch


@dataclass(frozen=True)
class SubmittedJob:
    folder: Path
    job_id: str
    cluster: str | None = None
    array_size: int | None = None

    @property
    def script(self) -> Path:
        return self.folder / SCRIPT_FILE


def python_for(profile: Profile) -> str:
    """The interpreter the job's ranks run: the profile's, else the one submitting."""
    return profile.python or sys.executable


def mpirun_for(profile: Profile) -> str:
    """The mpirun of the job's MPI: the one beside its Python (a venv with MPICH from
    PyPI), else whatever ``mpirun`` the job's PATH (its modules) provides."""
    beside = Path(python_for(profile)).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpirun"


def submit(job: JobScript, profile: Profile, *, jobs_dir: Path,
           dependency: Dependency | None = None, hold: bool = False,
           info: dict[str, Any] | None = None) -> SubmittedJob:
    """Render ``job`` into a new folder under ``jobs_dir`` and submit it.

    ``info`` adds entries to job.json (the command that asked for it, the output file).
    A job sbatch refuses leaves its folder with job.sh and job.json (no job id) behind.
    """
    text = render_script(job, profile, mpirun_for(profile))
    folder = new_job_folder(jobs_dir, job.resources.job_name)
    (folder / SCRIPT_FILE).write_text(text)
    record: dict[str, Any] = {
        "engine": "sbatch", "job_id": None, "cluster": None,
        "job_name": job.resources.job_name, "profile": profile.name,
        "resources": job.resources.as_dict(), "steps": [list(s.argv) for s in job.steps],
        "array_size": len(job.steps) if job.is_array else None, "throttle": job.throttle,
        "dependency": dependency.option().split("=", 1)[1] if dependency else None,
        "hold": hold, **(info or {}),
    }
    write_info(folder, record)
    submitted = sbatch(folder / SCRIPT_FILE, cwd=folder, dependency=dependency, hold=hold)
    record.update(job_id=submitted.job_id, cluster=submitted.cluster,
                  submitted_at=time.time(),
                  submitted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_info(folder, record)
    return SubmittedJob(folder, submitted.job_id, submitted.cluster, record["array_size"])


def submit_array(resources: Resources, commands: list[list[str]], profile: Profile, *,
                 jobs_dir: Path, throttle: int | None = None, ntasks: list[int] | None = None,
                 dependency: Dependency | None = None) -> SubmittedJob:
    """One array task per command (task i runs ``commands[i]`` on ``ntasks[i]`` ranks, at
    most the allocation), at most ``throttle`` at once: e.g. the points of a study."""
    counts = ntasks or [None] * len(commands)
    if len(counts) != len(commands):
        raise ValueError("ntasks needs one entry per command")
    steps = tuple(Step(tuple(c), n) for c, n in zip(commands, counts, strict=True))
    job = JobScript(resources, steps, throttle=throttle, array=True)
    return submit(job, profile, jobs_dir=jobs_dir, dependency=dependency)
