"""Start MPI on a rank so that a rank failing before or inside ``MPI_Init`` ends the job.

Once MPI is up, a failing rank calls ``MPI_Abort`` (hpc.runner). Before that there is no
MPI to abort with, and a rank that merely exits non-zero leaves the others waiting in
``MPI_Init``: PyPI MPICH 5.0.2's Hydra waits for them until killed (measured: a rank
exiting 1 before MPI_Init kept ``mpiexec -n 2`` running until a 20 s timeout, 3 of 3),
and srun without ``--kill-on-bad-exit`` until the time limit. A rank killed by a signal,
by contrast, makes every launcher end the job at once (Hydra's auto-cleanup: 0.16 s;
srun, which the rendered scripts also give ``--kill-on-bad-exit=1``; Open MPI's mpirun).
So a rank that fails here says why and ends itself with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

# Test hook: the rank named here fails before MPI_Init, as a rank whose start-up breaks
# on one node would (an import error, a broken library); see tests/test_runtime_guards.py.
FAIL_BEFORE_INIT_ENV = "HPC_FAIL_BEFORE_INIT_RANK"
# Where process managers put a rank's number before MPI is initialised.
_RANK_VARIABLES = ("PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def rank_before_init() -> str | None:
    """This rank's number as its process manager set it, before MPI is up (None: unknown)."""
    return next((os.environ[v] for v in _RANK_VARIABLES if v in os.environ), None)


def init_mpi() -> Any:
    """``mpi4py.MPI``, initialised; on any failure the whole job ends (see above)."""
    try:
        target = os.environ.get(FAIL_BEFORE_INIT_ENV)
        if target is not None and target == rank_before_init():
            raise RuntimeError(f"injected failure before MPI_Init ({FAIL_BEFORE_INIT_ENV}="
                               f"{target})")
        from mpi4py import MPI

        return MPI
    except BaseException:  # noqa: BLE001 - whatever it was, no rank may be left waiting
        print(f"hpc: rank failed before MPI was up [rank {rank_before_init() or '?'}@"
              f"{os.uname().nodename}]:\n{traceback.format_exc()}", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        raise  # not reached
