"""Bad input: a clear message, a non-zero exit, no traceback, nothing damaged."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hpc.mpi_env import mpiexec_command
from tests.conftest import run_hpc


def assert_clean_error(proc, *phrases: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, (phrase, proc.stderr)


def test_unknown_workload_lists_valid_ones():
    proc = run_hpc("run", "heat3d")
    assert_clean_error(proc, "invalid choice: 'heat3d'", "pi", "heat2d", "nbody", "kmeans",
                       "amdahl")


def test_unknown_backend_lists_valid_ones():
    proc = run_hpc("run", "pi", "--backend", "fortran")
    assert_clean_error(proc, "invalid choice: 'fortran'", "numpy", "cython")


@pytest.mark.parametrize("np_value", ["0", "-1", "-4"])
def test_nonpositive_rank_count(np_value):
    proc = run_hpc("run", "pi", f"--np={np_value}")
    assert_clean_error(proc, "positive number of ranks")


def test_rank_count_not_a_number():
    assert_clean_error(run_hpc("run", "pi", "--np", "two"), "expected a whole number")


def test_size_too_small_for_process_grid(tmp_path):
    # 4 ranks make a 2 x 2 grid; a 1 x 1 grid cannot be split over it.
    proc = run_hpc("run", "heat2d", "--np", "4", "--size", "1", "--out", str(tmp_path / "r.h5"))
    assert_clean_error(proc, "too small for 4 ranks", "2 x 2")
    assert not (tmp_path / "r.h5").exists()


def test_too_few_bodies_for_ranks(tmp_path):
    proc = run_hpc("run", "nbody", "--np", "3", "--n", "2", "--out", str(tmp_path / "r.h5"))
    assert_clean_error(proc, "too small for 3 ranks")


def test_parameter_out_of_range():
    assert_clean_error(run_hpc("run", "amdahl", "--serial-fraction", "1.5"),
                       "--serial-fraction must be <= 1")


def test_size_and_named_size_disagree():
    assert_clean_error(run_hpc("run", "heat2d", "--size", "64", "--n", "65"), "disagree")


def test_existing_non_hdf5_output_is_left_untouched(tmp_path):
    target = tmp_path / "notes.h5"
    target.write_bytes(b"my precious notes\n")
    before = target.stat().st_mtime_ns
    proc = run_hpc("run", "pi", "--np", "2", "--size", "1000", "--out", str(target))
    assert_clean_error(proc, "not an HDF5 file", "untouched")
    assert target.read_bytes() == b"my precious notes\n"
    assert target.stat().st_mtime_ns == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_non_root(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_clean_error(run_hpc("run", "pi", "--out", str(locked / "r.h5")), "cannot create")


def test_output_under_a_regular_file(tmp_path):
    # Not writable even as root: a path whose parent is a file.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_clean_error(run_hpc("run", "pi", "--out", str(blocker / "r.h5")), "cannot create")


def test_output_is_a_directory(tmp_path):
    assert_clean_error(run_hpc("run", "pi", "--out", str(tmp_path)), "is a directory")


@pytest.mark.parametrize("hook, said", [
    # Rank 1 raises while rank 0 waits in a halo exchange.
    ("HPC_FAIL_RANK", "rank failed [rank 1@"),
    # Rank 1 fails before MPI_Init while rank 0 waits in it: PyPI MPICH's Hydra would wait
    # forever for a rank that merely exits 1 there (hpc.mpi_start).
    ("HPC_FAIL_BEFORE_INIT_RANK", "rank failed before MPI was up [rank 1@"),
])
def test_failing_rank_ends_the_whole_job_quickly(tmp_path, hook, said):
    """The job must end in seconds, not hang."""
    out = tmp_path / "r.h5"
    start = time.monotonic()
    proc = run_hpc("run", "heat2d", "--np", "2", "--size", "64", "--out", str(out),
                   env={hook: "1"}, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert said in proc.stderr
    assert "injected failure" in proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f} s to end"
    assert not out.exists()


def test_failing_rank_keeps_earlier_runs(tmp_path):
    out = tmp_path / "r.h5"
    assert run_hpc("run", "pi", "--np", "2", "--size", "1000", "--out", str(out)).returncode == 0
    before = out.read_bytes()
    proc = run_hpc("run", "pi", "--np", "2", "--size", "1000", "--out", str(out),
                   env={"HPC_FAIL_RANK": "0"}, timeout=60)
    assert proc.returncode != 0
    assert out.read_bytes() == before


def test_np_inside_a_job_must_match(tmp_path):
    """`mpiexec -n 2 hpc run --np 3` is a contradiction and says so."""
    argv, env = mpiexec_command(2, [sys.executable, "-m", "hpc", "run", "pi", "--np", "3",
                                    "--size", "100", "--out", str(tmp_path / "r.h5")])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2
    assert "--np 3 asked for, but this MPI job has 2 ranks" in proc.stderr
    # The ranks agree before failing: one message, an orderly exit, no MPI_Abort.
    assert proc.stderr.count("hpc: error:") == 1 and "Abort" not in proc.stderr


def test_bad_size_inside_a_job_stops_every_rank_with_one_message(tmp_path):
    argv, env = mpiexec_command(4, [sys.executable, "-m", "hpc", "run", "heat2d", "--size", "1",
                                    "--out", str(tmp_path / "r.h5")])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert_clean_error(proc, "too small for 4 ranks", "(every rank)")
    assert proc.stderr.count("hpc: error:") == 1 and "Abort" not in proc.stderr


def test_timeout_stops_the_job(tmp_path):
    proc = run_hpc("run", "amdahl", "--np", "2", "--work", "100000", "--timeout", "3",
                   "--out", str(tmp_path / "r.h5"), timeout=60)
    assert proc.returncode == 124
    assert "exceeded --timeout 3" in proc.stderr


# -- bounded validation (issue 9): caps before any work, clear refusals ----------------
def test_huge_rank_count_fails_at_once(tmp_path):
    start = time.monotonic()
    proc = run_hpc("run", "heat2d", "--np", "4611686018427387904", "--size", "16",
                   "--out", str(tmp_path / "r.h5"))
    assert_clean_error(proc, "beyond the 1048576 ranks")
    assert time.monotonic() - start < 30  # it took 131 s factoring a process grid


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_timeout_must_be_positive_and_finite(value):
    assert_clean_error(run_hpc("run", "pi", "--np", "2", "--timeout", value),
                       "argument --timeout", "positive, finite number of seconds")


def test_more_ranks_than_memory_allows_never_reaches_mpiexec(tmp_path):
    # A million Python ranks need ~60 TB; mpiexec -n 1000000 would take the machine down.
    proc = run_hpc("run", "amdahl", "--np", "1000000", "--out", str(tmp_path / "r.h5"))
    assert_clean_error(proc, "1000000 rank(s) needs about", "is available on this machine now")
    assert not (tmp_path / "r.h5").exists()


def test_size_beyond_memory_is_refused_up_front(tmp_path):
    proc = run_hpc("run", "heat2d", "--size", "300000", "--out", str(tmp_path / "r.h5"))
    assert_clean_error(proc, "heat2d --n 300000", "GiB of memory", "smaller size")


def test_not_a_finite_parameter():
    assert_clean_error(run_hpc("run", "amdahl", "--serial-fraction", "nan"),
                       "--serial-fraction must be a finite number")


@pytest.mark.parametrize("options, phrase", [
    (["--nodes", "4611686018427387904"], "nodes must be at most"),
    (["--nodes", "10000", "--ntasks-per-node", "1000"], "beyond the 1048576"),
    (["--nodes", "2", "--mem", "1G", "--size", "40000"], "but only 1.0 GiB per node with --mem 1G"),
])
def test_submit_dry_run_refuses_what_no_allocation_holds(tmp_path, options, phrase):
    start = time.monotonic()
    proc = run_hpc("submit", "heat2d", *options, "--dry-run", "--jobs-dir",
                   str(tmp_path / "jobs"))
    assert_clean_error(proc, phrase)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "jobs").exists()
