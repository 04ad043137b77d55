"""The submitit launcher: each run is one submitit job with exactly its ranks.

A workload run calls the runner on every task, each task an MPI rank (srun --mpi=...);
a driver (a [command] point) runs once in the batch script, holding the allocation, and
starts its ranks with srun. Without Slurm, submitit runs the job on this machine and the
ranks come from mpiexec (hpc.slurm.submitit_engine). Every job gets a job folder with
job.json, so ``hpc status``, ``hpc logs``, ``hpc wait`` and ``hpc cancel`` see it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from hpc.errors import FAILED, TIMED_OUT
from hpc.launchers import NO_OPTIONS, JobOptions, Launched, Launcher, register
from hpc.runs import Run, RunSpec


def run_workload(spec: RunSpec) -> dict[str, Any]:
    """Runs on every rank (an srun task, or a local mpiexec rank): the runner in place.

    Returns on rank 0 the exit code and where the record went; the caller gets rank 0's.
    """
    from mpi4py import MPI

    from hpc.runner import run_ranks

    code = run_ranks(spec)
    comm = MPI.COMM_WORLD
    outcome: dict[str, Any] = {"exit_code": code, "ranks": comm.size,
                               "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                               "out": str(spec.out) if spec.out else None}
    if comm.rank == 0 and spec.out is not None and code in (0, 3):
        from hpc.records import read_runs

        last = read_runs(spec.out)[-1]
        outcome.update(group=last["group"], run_id=last["run_id"], verified=last["verified"])
    return outcome


def run_driver(argv: list[str]) -> dict[str, Any]:
    """Runs once in the job: ``python -m hpc ARGV``, which starts its own ranks."""
    proc = subprocess.run([sys.executable, "-m", "hpc", *argv], check=False)
    return {"exit_code": proc.returncode, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


@register
class SubmititLauncher(Launcher):
    name = "submitit"

    @property
    def engine(self) -> str:
        """submitit's: Slurm where sbatch exists, else this machine (forced with
        $HPC_SUBMITIT_ENGINE=local|slurm)."""
        return os.environ.get("HPC_SUBMITIT_ENGINE") or "auto"

    def _profile(self) -> Any:
        if self.profile is None:
            from hpc.slurm.profiles import load_profile

            self.profile = load_profile(None)
        return self.profile

    def starter_options(self, resources: Any) -> list[str]:
        from hpc.slurm.submitit_engine import resolve_engine

        if resolve_engine(self.engine) == "local":
            return ["--starter", "local"]
        mpi = resources.with_mpi_resolved().mpi
        return ["--starter", "srun", *(["--mpi", mpi] if mpi else [])]

    def describe(self, runs: Sequence[Run], resources: Sequence[Any],
                 options: JobOptions = NO_OPTIONS) -> str:
        self.check_options(options)
        lines = []
        for run, res in zip(runs, resources, strict=True):
            params = res.with_mpi_resolved().submitit_parameters()
            what = (f"run_workload on every one of {res.ntasks} ranks: hpc "
                    f"{' '.join(run.hpc_argv())}" if run.spec is not None else
                    f"once, holding the allocation: hpc {' '.join(run.hpc_argv())} "
                    f"{' '.join(self.starter_options(res))}")
            lines.append(f"submitit job {run.name}: {what}\n  parameters: {params}")
        return "\n".join(lines)

    def start(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions = NO_OPTIONS) -> list[Launched]:
        from hpc.slurm.jobdir import jobs_root, new_job_folder, write_info
        from hpc.slurm.submitit_engine import submit_function

        self.check_options(options)
        profile, root = self._profile(), jobs_root(self.jobs_dir)
        launched = []
        for run, res in zip(runs, resources, strict=True):
            folder = new_job_folder(root, run.name)
            if run.spec is not None:
                job = submit_function(run_workload, run.spec, resources=res,
                                      folder=folder / "submitit", engine=self.engine,
                                      python=profile.python)
            else:
                argv = [*run.hpc_argv(), *self.starter_options(res)]
                job = submit_function(run_driver, argv, resources=res,
                                      folder=folder / "submitit", engine=self.engine,
                                      python=profile.python, every_rank=False)
            on_slurm = job.engine == "slurm"
            write_info(folder, {
                "launcher": self.name, "engine": "submitit", "submitit_engine": job.engine,
                "job_id": job.job_id if on_slurm else None,
                "local_pid": None if on_slurm else job.job_id,
                "job_name": res.job_name, "profile": profile.name,
                "resources": res.as_dict(), "array_size": None, **run.info,
                "submitted_at": time.time(),
                "submitted_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            launched.append(Launched(run, job.job_id if on_slurm else None, folder, job))
        return launched

    def wait(self, launched: list[Launched], timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not all(item.handle.job.done() for item in launched):
            if deadline is not None and time.monotonic() > deadline:
                for item in launched:
                    if not item.handle.job.done():
                        item.handle.job.cancel(check=False)
                        item.exit_code = TIMED_OUT
                return False
            time.sleep(1.0)
        for item in launched:
            try:
                outcome = item.handle.result()
            except Exception as exc:  # noqa: BLE001 - submitit re-raises the job's failure
                # submitit's message holds the task's whole traceback; keep its last line.
                found = re.findall(r"^\w*Error: (.+)$", str(exc), flags=re.MULTILINE)
                item.extra["error"] = found[-1] if found else str(exc).strip()[-300:]
                item.extra["log"] = str(item.handle.job.paths.stderr)
                item.exit_code = FAILED
                continue
            item.extra["outcome"] = outcome
            item.exit_code = int(outcome["exit_code"])
        return True
