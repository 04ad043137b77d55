"""``mpiexec -n N python -m hpc.slurm.mpi_call CALL.pkl RESULT.pkl``: call a pickled
function on every rank; rank 0 writes its value. The local side of the submitit engine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cloudpickle

from hpc.slurm.submitit_engine import on_every_rank


def main(call: Path, result: Path) -> int:
    fn, args, kwargs = cloudpickle.loads(call.read_bytes())
    value = on_every_rank(fn, args, kwargs)
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        tmp = result.with_name(f".{result.name}.{os.getpid()}")
        tmp.write_bytes(cloudpickle.dumps(value))
        os.replace(tmp, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
