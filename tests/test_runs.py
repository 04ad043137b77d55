"""Real runs under real mpiexec, records read back with h5py.

Decomposition independence: heat2d, nbody, kmeans and pi give the same result on 1, 2,
3 and 4 ranks (3 does not divide the sizes used; 4 ranks are oversubscribed on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc.mpi_env import mpiexec_command
from hpc.records import SCHEMA_VERSION, read_runs
from tests.conftest import assert_ok, run_hpc

RANKS = (1, 2, 3, 4)


def run_into(path: Path, workload: str, ranks: int, *args: str, backend: str = "cython"):
    proc = run_hpc("run", workload, "--np", str(ranks), "--backend", backend, "--repeats", "1",
                   "--warmup", "0", "--out", str(path), *args)
    assert_ok(proc)
    return read_runs(path)[-1]


@pytest.fixture(scope="module")
def heat_record(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "heat.h5"
    proc = run_hpc("run", "heat2d", "--np", "2", "--size", "48", "--steps", "30",
                   "--repeats", "2", "--out", str(path))
    assert_ok(proc)
    return path, proc


def test_record_fields_with_plain_h5py(heat_record):
    path, proc = heat_record
    assert "verified=yes" in proc.stdout
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        run = f["runs/000001"]
        a = run.attrs
        assert (a["workload"], a["backend"], a["ranks"], a["nodes"]) == ("heat2d", "cython", 2, 1)
        assert a["size"] == 48 and a["size_parameter"] == "n"
        assert json.loads(a["parameters"]) == {"n": 48, "steps": 30, "residual_every": 10,
                                               "exchange": "auto"}
        assert a["status"] == "ok" and a["verified"]
        assert "serial numpy reference" in a["verification_method"]
        assert a["start_utc"] < a["end_utc"] and a["start_utc"].endswith("+00:00")
        assert (a["repeats"], a["warmup"]) == (2, 1)
        timings = run["timings"]
        phases = list(timings.attrs["phases"])
        assert phases == ["total", "compute", "communication"]
        assert timings.shape == (2, 2, 3)
        t = timings[()]
        assert np.all(t > 0)
        # compute and communication are parts of the total
        assert np.all(t[:, :, 1] + t[:, :, 2] <= t[:, :, 0] * 1.0001)
        prov = run["provenance"]
        assert len(prov["hostnames"]) == 2
        # The library this test's own mpi4py loads is the one the ranks used. Reading its
        # version needs no MPI_Init, so this test process does not become an MPI singleton.
        from hpc.info import mpi_info

        assert prov.attrs["mpi_library_version"].splitlines()[0] == mpi_info()["library"]
        assert len(prov.attrs["git_commit"]) == 40 or prov.attrs["git_commit"] == "unknown"
        assert "git_dirty" in prov.attrs
        assert prov.attrs["command_line"].startswith("hpc run heat2d --np 2")
        assert "numpy" in prov["packages"].attrs and "mpi4py" in prov["packages"].attrs
        result = run["result"]
        assert result["field"].shape == (48, 48)
        assert np.isclose(result.attrs["checksum"], result["field"][()].sum())
        assert list(result["process_grid"][()]) == [2, 1]
        assert result.attrs["exchange"] == "shared"  # auto, with both ranks on this node
        assert result["residual_history"].shape == (3,)


def test_mpiexec_runs_hpc_in_place(tmp_path):
    """`mpiexec -n 2 hpc run heat2d` (the console script, no --np) writes a valid record."""
    hpc_script = shutil.which("hpc", path=str(Path(sys.executable).parent))
    assert hpc_script, "the hpc console script is not installed beside this Python"
    out = tmp_path / "r.h5"
    argv, env = mpiexec_command(2, [hpc_script, "run", "heat2d", "--size", "40", "--steps", "10",
                                    "--repeats", "1", "--out", str(out)])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert_ok(proc)
    run = read_runs(out)[0]
    assert run["ranks"] == 2 and run["verified"]


def test_heat2d_is_decomposition_independent(tmp_path):
    fields = [run_into(tmp_path / "h.h5", "heat2d", p, "--size", "37", "--steps", "25",
                       "--residual-every", "5")["result"]["field"] for p in RANKS]
    for p, field in zip(RANKS[1:], fields[1:], strict=True):
        assert np.max(np.abs(field - fields[0])) <= 1e-12, f"{p} ranks differ from 1"


def test_nbody_is_decomposition_independent(tmp_path):
    runs = [run_into(tmp_path / "n.h5", "nbody", p, "--n", "61", "--steps", "5") for p in RANKS]
    for run in runs:
        assert run["verified"], run["verification_detail"]
        np.testing.assert_allclose(run["result"]["positions"], runs[0]["result"]["positions"],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(run["result"]["energy_final"],
                                   runs[0]["result"]["energy_final"], rtol=1e-12)


def test_kmeans_is_decomposition_independent(tmp_path):
    runs = [run_into(tmp_path / "k.h5", "kmeans", p, "--points", "70001", "--k", "5",
                     "--iterations", "8", "--predict-points", "5003") for p in RANKS]
    for run in runs:
        assert run["verified"], run["verification_detail"]
        np.testing.assert_allclose(run["result"]["centroids"], runs[0]["result"]["centroids"],
                                   rtol=0, atol=1e-9)
        assert run["result"]["predict_counts"].sum() == 5003
        assert list(run["result"]["predict_counts"]) == list(runs[0]["result"]["predict_counts"])


def test_pi_is_identical_for_any_rank_count_and_within_5_sigma(tmp_path):
    runs = [run_into(tmp_path / "p.h5", "pi", p, "--samples", "1000003") for p in RANKS]
    hits = {run["result"]["hits"] for run in runs}
    assert len(hits) == 1
    r = runs[0]["result"]
    assert abs(r["pi"] - np.pi) < 5 * r["sigma"]


@pytest.mark.parametrize("workload, args, key", [
    ("heat2d", ("--size", "33", "--steps", "12"), "field"),
    ("nbody", ("--n", "40", "--steps", "3"), "positions"),
    ("kmeans", ("--points", "9000", "--k", "4", "--iterations", "5"), "centroids"),
    ("pi", ("--samples", "200000"), "hits"),
])
def test_cython_equals_numpy(tmp_path, workload, args, key):
    results = [run_into(tmp_path / "b.h5", workload, 2, *args, backend=b)["result"][key]
               for b in ("numpy", "cython")]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-13)


@pytest.mark.alone  # a share of wall time: another test beside it would skew it
@pytest.mark.parametrize("ranks", [1, 2])
def test_amdahl_measured_serial_share_matches_declared(tmp_path, ranks):
    run = run_into(tmp_path / "a.h5", "amdahl", ranks, "--work", "300",
                   "--serial-fraction", "0.25")
    measured = run["result"]["measured_serial_fraction"]
    assert abs(measured - 0.25) < 0.03, measured
    assert run["verified"]
    # The serial phase is on rank 0 only; the others spent that time waiting.
    phases = run["phases"]
    serial = run["timings"][0, :, phases.index("serial")]
    assert serial[0] > 0 and np.all(serial[1:] == 0)


def test_verification_failure_is_recorded_and_exit_3(tmp_path):
    out = tmp_path / "v.h5"
    proc = run_hpc("run", "nbody", "--np", "2", "--n", "64", "--steps", "3",
                   "--max-drift", "0", "--repeats", "1", "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    assert "verification FAILED" in proc.stderr
    run = read_runs(out)[0]
    assert run["status"] == "verification_failed" and run["verified"] is False


def test_show_prints_a_table(heat_record):
    path, _ = heat_record
    proc = run_hpc("show", str(path))
    assert_ok(proc)
    assert "heat2d" in proc.stdout and "n=48" in proc.stdout and "yes" in proc.stdout


def test_without_np_runs_one_rank_in_this_process(tmp_path):
    out = tmp_path / "r.h5"
    assert_ok(run_hpc("run", "kmeans", "--points", "3000", "--k", "3", "--iterations", "3",
                      "--repeats", "1", "--out", str(out)))
    (run,) = read_runs(out)
    assert run["ranks"] == 1 and run["verified"]
    assert run["provenance"]["command_line"].startswith("hpc run kmeans --points 3000")
