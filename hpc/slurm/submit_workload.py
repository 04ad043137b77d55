"""``hpc submit WORKLOAD``: one workload run as a Slurm job, by sbatch or by submitit,
optionally waited for, ending with the record it wrote."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpc.runner import RunSpec
from hpc.slurm.jobdir import new_job_folder, write_info
from hpc.slurm.profiles import Profile
from hpc.slurm.render import JobScript, Step, render_script
from hpc.slurm.report import (
    TIMEOUT_EXIT,
    describe,
    exit_code,
    explain_node_failures,
    remember_states,
    say,
    show_failure_logs,
    wait_for,
)
from hpc.slurm.resources import Resources
from hpc.slurm.sbatch import Dependency
from hpc.slurm.submit import mpirun_for, python_for, submit
from hpc.slurm.tracker import Tracker
from hpc.slurm.workload_jobs import run_argv, run_workload


def _announce(job_id: str, folder: Path, parsable: bool, engine: str) -> None:
    if parsable:
        print(job_id, flush=True)
    else:
        print(f"submitted job {job_id} ({engine}); job folder {folder}", flush=True)


def _show_record(spec: RunSpec, job_id: str) -> None:
    """The record the job appended, found by its Slurm job id in the provenance."""
    from hpc.records import read_runs

    if spec.out is None or not spec.out.exists():
        say(f"hpc: warning: the job ended but {spec.out} does not exist")
        return
    runs = [r for r in read_runs(spec.out)
            if str(r.get("provenance", {}).get("slurm", {}).get("SLURM_JOB_ID")) == job_id]
    if not runs:
        say(f"hpc: warning: {spec.out} holds no run of job {job_id}")
        return
    run = runs[-1]
    print(f"record {spec.out}:{run['group']}: {run['workload']} ranks={run['ranks']} "
          f"status={run['status']} verified={'yes' if run['verified'] else 'NO'}", flush=True)


def _wait_and_report(job_id: str, folder: Path, spec: RunSpec, timeout: float | None) -> int:
    tracker = Tracker()
    tracker.add(job_id, submitted_at=time.time())
    if not wait_for(tracker, timeout):
        say(f"hpc: error: job {job_id} still running after --wait-timeout {timeout:g} s "
            f"(it keeps running: hpc wait {job_id})")
        return TIMEOUT_EXIT
    remember_states(tracker, {job_id: folder})
    job = tracker.jobs[job_id]
    code = exit_code([job])
    print(f"job {job_id}: {describe(job)}", flush=True)
    if code != 0:
        show_failure_logs(folder, job_id)
        explain_node_failures(tracker, {job_id: folder})
    if spec.out is not None and spec.out.exists():
        _show_record(spec, job_id)  # partial results too: earlier runs stay in the file
    return code


def submit_workload(spec: RunSpec, resources: Resources, profile: Profile, *, jobs_dir: Path,
                    command: str, dependency: Dependency | None, hold: bool, dry_run: bool,
                    wait: bool, wait_timeout: float | None, parsable: bool,
                    checkpoint_signal: int | None = None) -> int:
    """The sbatch engine: a job script running ``hpc run`` under srun (or mpirun); with a
    checkpoint signal, a run stopped by the time limit is requeued and resumes."""
    step = Step(tuple([python_for(profile), "-m", "hpc", *run_argv(spec)]))
    job = JobScript(resources, (step,), checkpoint_signal=checkpoint_signal)
    if dry_run:
        sys.stdout.write(render_script(job, profile, mpirun_for(profile)))
        say("hpc: dry run: nothing was submitted")
        return 0
    submitted = submit(job, profile, jobs_dir=jobs_dir, dependency=dependency, hold=hold,
                       info={"command": command, "workload": spec.workload,
                             "out": str(spec.out)})
    _announce(submitted.job_id, submitted.folder, parsable, "sbatch")
    if not wait:
        return 0
    return _wait_and_report(submitted.job_id, submitted.folder, spec, wait_timeout)


def submit_workload_function(spec: RunSpec, resources: Resources, profile: Profile, *,
                             jobs_dir: Path, command: str, local: bool, wait: bool,
                             wait_timeout: float | None, parsable: bool) -> int:
    """The submitit engine: ``run_workload(spec)`` on every rank; rank 0's outcome back."""
    from hpc.slurm.submitit_engine import submit_function

    folder = new_job_folder(jobs_dir, resources.job_name)
    info: dict[str, Any] = {
        "engine": "submitit", "job_name": resources.job_name, "profile": profile.name,
        "resources": resources.as_dict(), "command": command, "workload": spec.workload,
        "out": str(spec.out), "array_size": None,
    }
    job = submit_function(run_workload, spec, resources=resources,
                          folder=folder / "submitit", engine="local" if local else "auto",
                          python=profile.python)
    info.update(submitit_engine=job.engine,
                job_id=job.job_id if job.engine == "slurm" else None,
                local_pid=job.job_id if job.engine == "local" else None,
                submitted_at=time.time(),
                submitted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_info(folder, info)
    if job.engine == "local":
        say(f"hpc: running on {resources.ntasks} local rank(s) of this machine "
            f"(job folder {folder})")
        return _local_outcome(job)
    _announce(job.job_id, folder, parsable, "submitit")
    if not wait:
        return 0
    code = _wait_and_report(job.job_id, folder, spec, wait_timeout)
    if code == 0:
        outcome = job.result()
        say(f"hpc: rank 0 returned {outcome}")
        code = int(outcome["exit_code"])
    return code


def _local_outcome(job: Any) -> int:
    try:
        outcome = job.result()
    except Exception as exc:  # noqa: BLE001 - submitit re-raises the task's failure
        # submitit's message holds the task's whole traceback; ours is its last error line.
        found = re.findall(r"^\w*Error: (.+)$", str(exc), flags=re.MULTILINE)
        say(f"hpc: error: the local run failed: {found[-1] if found else 'see its log'}; "
            f"the ranks' messages are in {job.job.paths.stderr}")
        return 1
    print(f"local run: exit code {outcome['exit_code']} on {outcome['ranks']} ranks; "
          f"record {outcome.get('out')}:{outcome.get('group')}", flush=True)
    return int(outcome["exit_code"])
