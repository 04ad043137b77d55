"""Workload runs as Slurm jobs: the ``hpc run`` line a job script starts on its ranks,
and the function the submitit engine calls on every rank."""

from __future__ import annotations

import os
from typing import Any

from hpc.runner import RunSpec


def run_argv(spec: RunSpec) -> list[str]:
    """``hpc run`` arguments that repeat ``spec`` in place, with every value spelled out."""
    argv = ["run", spec.workload, "--backend", spec.backend, "--repeats", str(spec.repeats),
            "--warmup", str(spec.warmup)]
    for name, value in sorted(spec.params.items()):
        argv += [f"--{name.replace('_', '-')}", str(value)]
    if spec.out is not None:
        argv += ["--out", str(spec.out)]
    if spec.checkpoint is not None:
        argv += ["--checkpoint", str(spec.checkpoint)]
    if spec.quiet:
        argv.append("--quiet")
    return argv


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
