"""``mpiexec -n N python -m hpc.slurm.mpi_call CALL.pkl RESULT.pkl``: call a pickled
function on every rank; rank 0 writes its value. The local side of the submitit engine."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle

from hpc.atomic import write_bytes
from hpc.slurm.submitit_engine import on_every_rank


def main(call: Path, result: Path) -> int:
    fn, args, kwargs = cloudpickle.loads(call.read_bytes())
    value = on_every_rank(fn, args, kwargs)
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        write_bytes(result, cloudpickle.dumps(value))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
