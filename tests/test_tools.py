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
    assert "-fno-math-errno" in report["c_reference_flags"]
    limits = report["limits"]
    assert limits["fp64_peak_GFLOPs"] > 0 and limits["nbody_Minteractions"] > 0
    assert limits["heat2d_MLUPs"] == limits["memory_bandwidth_GBps"] * 1e3 / 24
    fractions = {(f["workload"], f["backend"]): f["fraction"]
                 for f in report["fraction_of_limit"]}
    assert set(fractions) == {(w, b) for w in ("heat2d", "nbody")
                              for b in ("cython", "numpy", "c")}
    assert all(f > 0 for f in fractions.values())
    mpi = report["mpi"]  # the MPI section, on 2 ranks
    assert mpi["ranks"] == 2 and mpi["mpi_library"]
    assert [p["bytes"] for p in mpi["pingpong"]] == [8, 64, 512, 4096, 32768, 262144]
    assert all(p["one_way_us"] > 0 and p["bandwidth_GBps"] > 0 for p in mpi["pingpong"])
    assert mpi["allreduce_8B_us"] > 0
    halo = mpi["heat2d_halo"]
    assert (halo["n"], halo["process_grid"], halo["message_bytes"]) == (1024, [2, 1], [8192])
    assert halo["pingpong_of_messages_us"] > 0 and halo["cold_copy_of_messages_us"] > 0
    for label in ("blocking", "overlapped", "shared"):  # shared: both ranks on this node
        assert halo[label]["communication_us_per_step"] > 0
        assert halo[label]["compute_us_per_step"] > 0
        assert halo[label]["ratio_to_pingpong"] > 0
    for label in ("overlapped", "shared"):
        assert halo[label]["hidden_fraction"] < 1
        assert halo[label]["hidden_fraction_mean_over_ranks"] < 1


def test_bench_mpi_text_and_refusals():
    proc = run_hpc("bench", "--mpi", "--quick", timeout=300)
    assert_ok(proc)
    for label in ("MPI on 2 ranks", "one-way us", "Allreduce of one double",
                  "heat2d halo at 1024^2", "blocking", "overlapped", "shared",
                  "vs ping-pong"):
        assert label in proc.stdout, label
    assert "memory bandwidth" not in proc.stdout  # --mpi: the MPI section only
    proc = run_hpc("bench", "--mpi", "--np", "1")
    assert proc.returncode == 2 and "needs --np 2 or more" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_hpc("bench", "--mpi", env={"HPC_MPIEXEC": "/nonexistent/mpiexec"})
    assert proc.returncode == 2 and "no MPI section" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_hpc("bench", "--mpi", "--no-mpi")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
