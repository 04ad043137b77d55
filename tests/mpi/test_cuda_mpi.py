"""GPU binding's MPI parts, on real ranks (no GPU needed): the node-local rank split and
the question to the MPI library whether it is CUDA-aware."""

from __future__ import annotations

import pytest

from hpc.gpu import AWARE_ENV, choose_device, cuda_aware_mpi, node_local_rank


@pytest.mark.mpi(min_size=2)
def test_node_local_ranks_split_by_host():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    local_rank, local_size = node_local_rank(comm)
    # Ranks on the same host form one group, numbered in world order from 0.
    hosts = comm.allgather(MPI.Get_processor_name())
    same_host = [r for r, h in enumerate(hosts) if h == hosts[comm.rank]]
    assert local_size == len(same_host)
    assert local_rank == same_host.index(comm.rank)
    # Two ranks sharing one GPU both take device 0; with two GPUs they take one each.
    assert choose_device(local_rank, 1, {}).ordinal == 0
    assert choose_device(local_rank, 2, {}).ordinal == local_rank % 2


@pytest.mark.mpi(min_size=2)
def test_cuda_awareness_is_asked_of_the_mpi_library(monkeypatch):
    monkeypatch.delenv(AWARE_ENV, raising=False)
    aware, how = cuda_aware_mpi()
    # MPICH from PyPI (CI) is built without CUDA and says so; another library must at least
    # say how it was asked.
    assert "MPIX_Query_cuda_support" in how
    from mpi4py import MPI

    if "MPICH" in MPI.Get_library_version() and "pypi.org/p/mpich" in MPI.Get_library_version():
        assert aware is False and "= 0 in libmpi" in how
    monkeypatch.setenv(AWARE_ENV, "1")
    assert cuda_aware_mpi() == (True, f"{AWARE_ENV}=1 (set by the user)")
