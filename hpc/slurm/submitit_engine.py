"""Run a Python function on MPI ranks through submitit, with the same ``Resources``.

On Slurm every srun task is an MPI rank: submitit starts ``nodes x ntasks_per_node``
tasks with ``srun --mpi=<plugin>`` (the plugin from Resources, "auto" picking the one the
local MPI speaks), each task calls the function, and the value of rank 0 comes back.

Without Slurm the same call runs locally: submitit's local executor makes no MPI ranks,
so it runs one task that starts ``mpiexec -n NTASKS`` on ``hpc.slurm.mpi_call``, which
calls the function on every rank and hands rank 0's value back through a file.

Each submission gets a fresh submitit folder (job ids restart at 1 when a test cluster's
state is wiped, and submitit names its files by job id).
"""

from __future__ import annotations

import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc.errors import UserError
from hpc.mpi_start import init_mpi
from hpc.slurm.commands import SlurmError, slurm_available
from hpc.slurm.resources import Resources
from hpc.slurm.sbatch import parse_parsable

ENGINES = ("auto", "slurm", "local")


def on_every_rank(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Call ``fn`` on this rank; any exception ends every rank (no rank left waiting)."""
    comm = init_mpi().COMM_WORLD
    try:
        return fn(*args, **kwargs)
    except BaseException:
        if comm.size > 1:
            print(f"hpc: rank {comm.rank} failed:\n{traceback.format_exc()}", file=sys.stderr,
                  flush=True)
            comm.Abort(1)
        raise


def _launch_local(fn: Callable[..., Any], args: tuple, kwargs: dict, resources: Resources,
                  folder: Path) -> Any:
    """The one local submitit task: mpiexec starts the ranks, rank 0's value comes back."""
    import cloudpickle

    call, result = folder / "mpi_call.pkl", folder / "mpi_result.pkl"
    call.write_bytes(cloudpickle.dumps((fn, args, kwargs)))
    result.unlink(missing_ok=True)
    argv, env = resources.mpiexec_command(
        [sys.executable, "-m", "hpc.slurm.mpi_call", str(call), str(result)])
    # The local task is not itself a rank: keep submitit's variables from the ranks.
    env = {k: v for k, v in env.items() if not k.startswith("SUBMITIT_")}
    proc = subprocess.run(argv, env=env, timeout=resources.time_seconds, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mpiexec -n {resources.ntasks} exited with {proc.returncode}")
    return cloudpickle.loads(result.read_bytes())


def _slurm_executor_class() -> type:
    import submitit

    class ParsableSlurmExecutor(submitit.SlurmExecutor):
        """submitit's Slurm executor, reading the job id from ``sbatch --parsable``."""

        def _make_submission_command(self, submission_file_path: Path) -> list[str]:
            return ["sbatch", "--parsable", str(submission_file_path)]

        @staticmethod
        def _get_job_id_from_submission_command(string: bytes | str) -> str:
            text = string.decode() if isinstance(string, bytes) else string
            return parse_parsable(text).job_id

    return ParsableSlurmExecutor


@dataclass
class FunctionJob:
    """A submitted function: ``result()`` waits and returns rank 0's value."""

    job: Any  # submitit.Job
    engine: str  # "slurm" or "local"
    folder: Path
    every_rank: bool = True  # False: ran once (task 0), however many tasks it holds

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def result(self) -> Any:
        return self.job.results()[0] if self.every_rank else self.job.task(0).result()


def resolve_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UserError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "slurm" if slurm_available("sbatch") else "local"
    if engine == "slurm" and not slurm_available("sbatch"):
        raise SlurmError("sbatch not found: Slurm is not installed here; use engine "
                         "'local' to run on this machine")
    return engine


def submit_function(fn: Callable[..., Any], *args: Any, resources: Resources, folder: Path,
                    engine: str = "auto", python: str | None = None, every_rank: bool = True,
                    **kwargs: Any) -> FunctionJob:
    """Run ``fn(*args, **kwargs)`` on every MPI rank of a job described by ``resources``.

    With ``every_rank=False`` it runs once, in the batch script, holding the whole
    allocation: for a function that starts its ranks itself (srun, mpiexec).

    ``folder`` must be new or empty (one per submission) and, on a cluster, on a file
    system the compute nodes share. ``engine``: "slurm", "local" or "auto" (Slurm when
    sbatch exists).
    """
    import submitit
    from submitit.core.utils import FailedJobError

    engine = resolve_engine(engine)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise UserError(f"submitit folder {folder} is not empty; use a fresh one per "
                        "submission")
    if engine == "local":
        if resources.nodes > 1:
            raise UserError("the local engine runs on this machine only: nodes must be 1")
        executor = submitit.LocalExecutor(folder=folder, python=python)
        executor.update_parameters(timeout_min=max(1, -(-resources.time_seconds // 60)),
                                   tasks_per_node=1, nodes=1)
        job = (executor.submit(_launch_local, fn, args, kwargs, resources, folder)
               if every_rank else executor.submit(fn, *args, **kwargs))
        return FunctionJob(job, engine, folder, every_rank)
    executor = _slurm_executor_class()(folder=folder, python=python)
    executor.update_parameters(**resources.with_mpi_resolved().submitit_parameters(),
                               use_srun=every_rank)
    try:
        job = (executor.submit(on_every_rank, fn, args, kwargs) if every_rank
               else executor.submit(fn, *args, **kwargs))
    except FailedJobError as exc:
        raise SlurmError(f"sbatch refused the job: {str(exc).strip()}") from None
    return FunctionJob(job, engine, folder, every_rank)

