"""What ``{mpirun}`` becomes in a [command] run: the words that start P ranks where the
run's driver is, and the environment they need.

``local``: this machine's mpiexec (hpc.mpi_env: Open MPI's root and oversubscription
flags included). ``srun``: a Slurm job step of P tasks on the job's nodes, wired to MPI by
the ``--mpi`` plugin. ``mpirun``: the job's own MPI's mpirun, which reads the allocation.
"""

from __future__ import annotations

import os

from hpc.errors import UserError

STARTERS = ("local", "srun", "mpirun")


def mpirun_words(starter: str, ranks: int, nodes: int = 1, threads: int = 1,
                 mpi: str | None = None, mpirun: str = "mpirun"
                 ) -> tuple[list[str], dict[str, str]]:
    """The words that start ``ranks`` ranks (``threads`` threads each), and the env."""
    if starter == "local":
        from hpc.mpi_env import mpiexec_command

        words, env = mpiexec_command(ranks, [])
    elif starter == "srun":
        words, env = ["srun"], dict(os.environ)
        if mpi:
            words.append(f"--mpi={mpi}")
        words += [f"--nodes={nodes}", f"--ntasks={ranks}", f"--cpus-per-task={threads}"]
    elif starter == "mpirun":
        # Hydra under Slurm starts proxies with srun, which must not add a PMI of its own.
        words, env = [mpirun, "-n", str(ranks)], {**os.environ, "SLURM_MPI_TYPE": "none"}
    else:
        raise UserError(f"starter {starter!r} is not one of {', '.join(STARTERS)}")
    env["OMP_NUM_THREADS"] = str(threads)
    return words, env
