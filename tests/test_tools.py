"""`hpc info` and `hpc bench` describe this installation truthfully."""

from __future__ import annotations

import json

from tests.conftest import assert_ok, run_hpc


def test_info_json():
    proc = run_hpc("info", "--json")
    assert_ok(proc)
    info = json.loads(proc.stdout)
    assert info["mpi"]["library"]
    assert info["mpi"]["mpiexec"]
    assert info["kernels"]["cython"].startswith("available")
    assert info["hdf5"]["hdf5"]
    assert info["cuda"]["available"] in (True, False)
    if not info["cuda"]["available"]:
        assert info["cuda"]["reason"]
    assert set(info["slurm"]["commands"]) >= {"sbatch", "srun", "squeue", "sacct"}


def test_info_text():
    proc = run_hpc("info")
    assert_ok(proc)
    for label in ("MPI:", "mpiexec:", "kernels:", "CUDA:", "HDF5:", "Slurm:"):
        assert label in proc.stdout


def test_bench_quick_json():
    proc = run_hpc("bench", "--quick", "--json", timeout=300)
    assert_ok(proc)
    report = json.loads(proc.stdout)
    assert report["memory_bandwidth_GBps"] > 0
    seen = {(k["workload"], k["backend"]) for k in report["kernels"]}
    for workload in ("heat2d", "nbody", "kmeans"):
        assert (workload, "cython") in seen and (workload, "numpy") in seen
    for k in report["kernels"]:
        assert k["value"] > 0 and k["unit"] and k["size"] > 0
    assert {c["workload"] for c in report["c_reference"]} == {"heat2d", "nbody"}
    assert set(report["cython_over_c"]) == {"heat2d", "nbody"}
