"""The Slurm launchers of a study.

``slurm``: the pending points as one job array (task i runs point i's ``hpc run`` under
srun with that point's ranks), then a job that depends on the whole array (afterany, so
it also runs when a point failed) and writes the analysis and report. Every array task
gets the allocation of the largest point: each point then runs alone on the same shape of
allocation, undisturbed by the others, at the cost of idle cores in the small points.

``submitit``: one submitit job per point, every task an MPI rank; on a machine without
Slurm, submitit runs each point locally through mpiexec. The study waits for all of them
and then analyses, like the local launcher.

Array tasks append to the same study file; appends are serialised by a lock on its folder,
which needs a file system with working ``flock`` (local disks, Lustre, GPFS; not every NFS).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from hpc.errors import UserError
from hpc.study.local import point_run_argv
from hpc.study.plan import Point, size_name
from hpc.study.spec import StudySpec

REPORT_TIME = "00:10:00"


def _profile(spec: StudySpec) -> Any:
    from hpc.slurm.profiles import load_profile

    return load_profile(spec.profile or os.environ.get("HPC_PROFILE"))


def allocation(spec: StudySpec, profile: Any, ranks: int) -> Any:
    """The profile's resources with the study's [resources], sized for ``ranks`` ranks."""
    given = dict(spec.resources)
    resources = profile.resources.updated({**given, "job_name": spec.name})
    if resources.ntasks >= ranks:
        return resources
    if "nodes" in given and "ntasks_per_node" in given:
        raise UserError(f"{spec.source}: [resources] nodes = {resources.nodes} x "
                        f"ntasks_per_node = {resources.ntasks_per_node} gives "
                        f"{resources.ntasks} ranks, fewer than the study's largest point "
                        f"({ranks}); raise them or drop nodes to have it computed")
    if "ntasks_per_node" in given:
        return resources.updated(nodes=math.ceil(ranks / resources.ntasks_per_node))
    return resources.updated(nodes=1, ntasks_per_node=ranks)


def exact_allocation(spec: StudySpec, profile: Any, ranks: int) -> Any:
    """Resources with exactly ``ranks`` tasks (submitit makes every task a rank): one node
    unless [resources] ntasks_per_node says fewer fit, else the fewest nodes that share
    them evenly."""
    resources = allocation(spec, profile, 1)
    per_node = spec.resources.get("ntasks_per_node", ranks)
    nodes = math.ceil(ranks / max(per_node, 1))
    while ranks % nodes:
        nodes += 1
    return resources.updated(nodes=nodes, ntasks_per_node=ranks // nodes)


def allocation_memory(spec: StudySpec, points: list[Point]) -> tuple[int | None, str,
                                                                     dict[int, int]]:
    """(bytes per node, how to name them, nodes per rank count) of the study's jobs; None
    bytes when [resources] (or the profile) asks for no mem."""
    from hpc.limits import slurm_mem_bytes

    profile = _profile(spec)
    if spec.launcher == "submitit":
        shapes = {p.ranks: exact_allocation(spec, profile, p.ranks) for p in points}
    else:  # every array task has the largest point's shape; srun packs a point's ranks
        largest = allocation(spec, profile, max(p.ranks for p in points))
        shapes = {p.ranks: largest for p in points}
    mem = next(iter(shapes.values())).mem
    nodes = {ranks: math.ceil(ranks / r.ntasks_per_node) for ranks, r in shapes.items()}
    return (slurm_mem_bytes(mem) if mem else None), f"per node with [resources] mem = {mem}", nodes


def _require_workload(spec: StudySpec, launcher: str) -> None:
    if spec.workload is None:
        raise UserError(f"the {launcher} launcher runs built-in workloads; a [command] study "
                        "starts its own ranks, so run it with --launcher local (inside an "
                        "allocation, with srun in its command, for a cluster)")


def submit_study_array(spec: StudySpec, points: list[Point], out: Path, *,
                       jobs_dir: Path | None, wait: bool,
                       wait_timeout: float | None = None) -> int:
    """Submit the points as one array plus the dependent report job."""
    from hpc.slurm.jobdir import jobs_root
    from hpc.slurm.render import JobScript, Step
    from hpc.slurm.sbatch import Dependency
    from hpc.slurm.submit import python_for, submit, submit_array

    _require_workload(spec, "slurm")
    profile = _profile(spec)
    out = out.resolve()
    python = python_for(profile)
    resources = allocation(spec, profile, max(p.ranks for p in points))
    commands = [[python, "-m", "hpc", *point_run_argv(spec, p, out)] for p in points]
    root = jobs_root(jobs_dir)
    array = submit_array(resources, commands, profile, jobs_dir=root,
                         throttle=spec.array_throttle, ntasks=[p.ranks for p in points])
    report_resources = resources.updated(nodes=1, ntasks_per_node=1,
                                         job_name=f"{spec.name}-report", time=REPORT_TIME)
    report_argv = (python, "-m", "hpc", "study", "report", str(out), "--store-analysis",
                   *(("--include-oversubscribed",) if spec.include_oversubscribed else ()))
    report = submit(JobScript(report_resources, (Step(report_argv),)),
                    profile, jobs_dir=root, dependency=Dependency("afterany", (array.job_id,)))
    names = ", ".join(f"{i}: {p.describe(size_name(spec))}" for i, p in enumerate(points))
    print(f"submitted study {spec.name}: array job {array.job_id} ({len(points)} points; "
          f"{names}), report job {report.job_id} after it\n"
          f"  study file {out}\n  job folders {array.folder} and {report.folder}\n"
          f"  follow with: hpc status {array.job_id} {report.job_id}", flush=True)
    if not wait:
        return 0
    return _wait(array.job_id, len(points), report.job_id, out, wait_timeout)


def _wait(array_id: str, size: int, report_id: str, out: Path,
          timeout: float | None) -> int:
    from hpc.slurm.report import describe, exit_code, wait_for
    from hpc.slurm.tracker import Tracker

    tracker = Tracker()
    tracker.add(array_id, submitted_at=time.time(), array_size=size)
    tracker.add(report_id, submitted_at=time.time())
    if not wait_for(tracker, timeout):
        print(f"hpc: error: the study's jobs still run after {timeout:g} s; they go on "
              f"(hpc status {array_id} {report_id})", file=sys.stderr)
        return 124
    for key, job in sorted(tracker.jobs.items()):
        print(f"job {key}: {describe(job)}")
    if out.with_suffix(".html").exists():
        print(f"report: {out.with_suffix('.html')}")
    return exit_code(tracker.jobs.values())


def run_study_submitit(spec: StudySpec, points: list[Point], out: Path, *,
                       jobs_dir: Path | None) -> list[str]:
    """Submit every point through submitit, wait for all; returns a message per failure."""
    from hpc.runner import RunSpec
    from hpc.slurm.jobdir import jobs_root, new_job_folder
    from hpc.slurm.submitit_engine import submit_function
    from hpc.slurm.workload_jobs import run_workload

    _require_workload(spec, "submitit")
    profile = _profile(spec)
    out = out.resolve()
    root = jobs_root(jobs_dir)
    jobs = []
    for point in points:
        run = RunSpec(workload=spec.workload, backend=spec.backend, params=point.params,
                      repeats=spec.repeats, warmup=spec.warmup, out=out, quiet=True)
        resources = exact_allocation(spec, profile, point.ranks)
        folder = new_job_folder(root, f"{spec.name}-{point.ranks}")
        job = submit_function(run_workload, run, resources=resources,
                              folder=folder / "submitit", python=profile.python)
        print(f"point {point.describe(size_name(spec))}: submitit job {job.job_id} "
              f"({job.engine})", file=sys.stderr, flush=True)
        jobs.append((point, job))
    failures = []
    # A job that cannot start (a request the partition refuses) would wait forever.
    deadline = time.monotonic() + spec.timeout * len(jobs)
    while not all(job.job.done() for _, job in jobs) and time.monotonic() < deadline:
        time.sleep(1.0)
    for point, job in jobs:
        label = point.describe(size_name(spec))
        if not job.job.done():
            job.job.cancel(check=False)
            failures.append(f"{label}: not finished within {spec.timeout * len(jobs):g} s "
                            f"(the study's timeout per point x points); job {job.job_id} "
                            "cancelled")
            continue
        try:
            outcome = job.result()
        except Exception as exc:  # noqa: BLE001 - submitit re-raises the job's failure
            failures.append(f"{label}: {str(exc).strip().splitlines()[-1]}")
            continue
        code = int(outcome["exit_code"]) if isinstance(outcome, dict) else int(outcome)
        if code != 0:
            failures.append(f"{label}: exit {code}")
    if failures:
        print("hpc: points that failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return failures
