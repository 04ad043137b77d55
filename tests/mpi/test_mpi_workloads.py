"""Workloads and the runner inside one MPI job (run by scripts/mpi-tests.sh under mpiexec).

Without --with-mpi (plain `pytest`) these are skipped: they need several ranks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from hpc.records import read_runs
from hpc.runner import RunSpec, run_ranks
from hpc.timing import PhaseTimer
from hpc.workloads import WORKLOADS
from hpc.workloads.decomp import balanced_dims, block_range
from kernels import load_backend

SMALL = {
    "pi": {"samples": 100_003},
    "heat2d": {"n": 29, "steps": 13, "residual_every": 4},
    "nbody": {"n": 37, "steps": 4},
    "kmeans": {"points": 5001, "k": 3, "iterations": 4, "predict_points": 777},
    # A CPU-time share needs enough work to measure: at 40 units (8 ms serial) the numpy
    # backend measured f anywhere in 0.19-0.28; at 200 units it stayed within 0.175-0.231.
    "amdahl": {"work": 200, "serial_fraction": 0.2},
}


@pytest.mark.mpi(min_size=2)
def test_balanced_dims_matches_mpi_dims_create():
    from mpi4py import MPI

    for p in range(1, 65):
        assert balanced_dims(p) == tuple(MPI.Compute_dims(p, 2)), p


@pytest.mark.mpi(min_size=2)
def test_block_ranges_cover_everything_once():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    lo, hi = block_range(1001, comm.size, comm.rank)
    assert comm.allreduce(hi - lo) == 1001
    ranges = comm.allgather((lo, hi))
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_workload_verifies_on_all_ranks(name, backend):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    cls = WORKLOADS[name]
    params = cls.resolve_params(SMALL[name], comm.size)
    workload = cls(comm, params, load_backend(backend), backend)
    workload.setup()
    timer = PhaseTimer(cls.phases, clock=MPI.Wtime)
    for _ in range(2):  # a second repeat must start from the same state
        workload.reset()
        timer.reset()
        workload.execute(timer)
    assert min(timer.seconds) >= 0
    result = workload.collect()
    outcome = comm.bcast(workload.verify(result) if comm.rank == 0 else None)
    assert outcome.ok, outcome


@pytest.mark.mpi(min_size=2)
def test_heat2d_halo_exchange_matches_serial_after_one_step():
    from mpi4py import MPI

    from hpc.workloads.heat2d import serial_reference

    comm = MPI.COMM_WORLD
    cls = WORKLOADS["heat2d"]
    params = cls.resolve_params({"n": 23, "steps": 1}, comm.size)
    workload = cls(comm, params, load_backend("cython"), "cython")
    workload.setup()
    workload.reset()
    workload.execute(PhaseTimer(cls.phases, clock=MPI.Wtime))
    result = workload.collect()
    if comm.rank == 0:
        np.testing.assert_array_equal(result["field"],
                                      serial_reference(23, 1, load_backend("numpy")))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_heat2d_every_exchange_gives_the_serial_reference_bit_for_bit(backend):
    """Every sub-communicator of 1..size ranks (2: 2x1, 3: 3x1, 4: 2x2 process grids) on a
    side that no grid divides, down to blocks of one or two rows (no inside, degenerate
    rims): the shared-memory, overlapped and blocking exchanges give the numpy serial
    field bit for bit and the same residuals, over two repeats (the second starts from
    windows and counters the first one used)."""
    from mpi4py import MPI

    from hpc.workloads.heat2d import serial_reference

    world = MPI.COMM_WORLD
    cls = WORKLOADS["heat2d"]
    numpy_kernels = load_backend("numpy")
    problems = []  # on world rank 0, which is rank 0 of every sub-communicator
    for size in range(1, world.size + 1):
        comm = world.Split(0 if world.rank < size else MPI.UNDEFINED, world.rank)
        if comm == MPI.COMM_NULL:
            world.Barrier()
            continue
        for n, steps in ((31, 12), (size + 1, 5)):
            reference = serial_reference(n, steps, numpy_kernels)
            residuals = []
            for exchange in ("shared", "overlapped", "blocking"):
                params = cls.resolve_params({"n": n, "steps": steps, "residual_every": 4,
                                             "exchange": exchange}, comm.size)
                workload = cls(comm, params, load_backend(backend), backend)
                workload.setup()
                for _ in range(2):
                    workload.reset()
                    workload.execute(PhaseTimer(cls.phases, clock=MPI.Wtime))
                    result = workload.collect()
                    if comm.rank == 0:
                        if not np.array_equal(result["field"], reference):
                            problems.append(f"{size} ranks, n={n}, {exchange}: field")
                        if result["exchange"] != exchange:
                            problems.append(f"{size} ranks: {exchange} ran {result['exchange']}")
                        residuals.append(result["residual_history"])
                workload.teardown()
            if comm.rank == 0 and not (len(residuals[0]) == steps // 4 and all(
                    np.array_equal(residuals[0], r) for r in residuals[1:])):
                problems.append(f"{size} ranks, n={n}: residuals {residuals}")
        comm.Free()
        world.Barrier()
    # Asserted on every rank at once: a rank leaving early would hang the others.
    assert not world.bcast(problems, root=0)


@pytest.mark.mpi(min_size=2)
def test_runner_writes_one_record_from_all_ranks():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    folder = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None)
    out = Path(folder) / "r.h5"
    code = run_ranks(RunSpec("kmeans", "cython", SMALL["kmeans"], repeats=2, warmup=0,
                             out=out, quiet=True))
    assert code == 0
    if comm.rank == 0:
        (run,) = read_runs(out)
        assert run["ranks"] == comm.size
        assert run["timings"].shape == (2, comm.size, 4)
        assert run["phases"] == ["total", "compute", "communication", "predict"]
        assert len(run["provenance"]["hostnames"]) == comm.size
    comm.Barrier()
