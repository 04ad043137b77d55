"""hpc submit / status / wait / cancel / logs without a cluster: dry runs, bad input that
fails before Slurm is asked, and the local submitit engine (real mpiexec ranks)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import h5py
import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.test_cli_errors import assert_clean_error

SMALL_HEAT = ("heat2d", "--size", "32", "--steps", "10", "--repeats", "1", "--warmup", "0")
# The submitit launcher on this machine, as where Slurm is absent (ranks from mpiexec).
SUBMITIT_HERE = {"HPC_SUBMITIT_ENGINE": "local"}


def submit(*args: str, jobs: Path, env: dict[str, str] | None = None, timeout: float = 120):
    return run_hpc("submit", *args, "--jobs-dir", str(jobs), env=env, timeout=timeout)


def test_dry_run_prints_the_script_and_submits_nothing(tmp_path):
    out = tmp_path / "my results" / "r.h5"
    proc = submit(*SMALL_HEAT, "--profile", "local", "--ntasks-per-node", "2", "--time",
                  "00:02:00", "--out", str(out), "--dry-run", jobs=tmp_path / "jobs")
    assert_ok(proc)
    script = proc.stdout
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=heat2d\n")
    for line in ("#SBATCH --ntasks-per-node=2", "#SBATCH --time=00:02:00",
                 "#SBATCH --partition=debug"):
        assert line in script
    assert f"--out '{out}'" in script
    assert "srun --kill-on-bad-exit=1 --mpi=pmi2 --ntasks=2 " in script
    assert f"{sys.executable} -m hpc run heat2d --backend cython --repeats 1" in script
    assert "nothing was submitted" in proc.stderr
    assert not (tmp_path / "jobs").exists() and not out.parent.exists()


def test_dry_run_resource_options_override_the_profile(tmp_path):
    proc = submit(*SMALL_HEAT, "--profile", "example-openmpi-gres", "--partition", "short",
                  "--module", "FFTW/3.3", "--env", "A=b c", "--directive=--mail-type=END",
                  "--gpus-per-node", "1", "--dry-run", jobs=tmp_path)
    assert_ok(proc)
    script = proc.stdout
    assert "#SBATCH --partition=short" in script and "#SBATCH --gres=gpu:a100:1" in script
    assert "module load OpenMPI/4.1.5\nmodule load HDF5/1.14.0\nmodule load FFTW/3.3" in script
    assert "export A='b c'" in script and "#SBATCH --mail-type=END" in script
    assert "#SBATCH --exclusive" in script  # the profile's own directive stays


@pytest.mark.parametrize("args,phrases", [
    (("--time", "25:99"), ["time '25:99'", "seconds must be below 60"]),
    (("--time", "soon"), ["time 'soon' is malformed", "HH:MM:SS"]),
    (("--nodes", "0"), ["nodes must be at least 1, got 0"]),
    (("--job-name", "a;touch pwned"), ["job_name 'a;touch pwned' is not allowed"]),
    (("--job-name", "my job"), ["job_name 'my job' is not allowed"]),
    (("--partition", "$(touch pwned)"), ["partition '$(touch pwned)' is not allowed"]),
    (("--partition", "`touch pwned`"), ["is not allowed"]),
    (("--account", "a\nb"), ["account 'a\\nb' is not allowed"]),
    (("--qos", "x'y"), ["qos", "is not allowed"]),
    (("--env", "NOEQUALS"), ["--env 'NOEQUALS': give NAME=VALUE"]),
    (("--env", "1A=x"), ["environment variable '1A' is not allowed"]),
    (("--directive=--output=/tmp/x",), ["conflicts with what hpc writes"]),
    (("--starter", "aprun"), ["starter 'aprun' is not one of srun, mpirun"]),
    (("--dependency", "afterok:1;id"), ["not a Slurm job id"]),
    (("--profile", "nosuchsite"), ["unknown profile 'nosuchsite'", "local"]),
    (("--checkpoint-signal", "30"), ["--checkpoint-signal needs --checkpoint FILE.h5"]),
    (("--checkpoint", "c.h5", "--time", "00:00:09"), ["too short to checkpoint"]),
    (("--checkpoint", "c.h5", "--time", "1", "--checkpoint-signal", "55"),
     ["give 1 to 50 s"]),
    (("--checkpoint", "c.h5", "--launcher", "submitit"),
     ["the submitit launcher does not take --checkpoint"]),
    (("--hold", "--launcher", "local"), ["the local launcher does not take --hold"]),
    (("--engine", "sbatch"), ["--engine is now --launcher: use --launcher slurm"]),
    (("--ntasks-per-node", "4", "--size", "1"), ["too small for 4 ranks"]),
])
def test_bad_input_fails_before_slurm(tmp_path, args, phrases):
    proc = submit(*SMALL_HEAT, *args, "--out", str(tmp_path / "r.h5"), jobs=tmp_path / "j")
    assert_clean_error(proc, *phrases)
    assert not (tmp_path / "j").exists() and not (tmp_path / "r.h5").exists()
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()


def test_user_profile_with_unknown_field(tmp_path):
    profile = tmp_path / "site.toml"
    profile.write_text('[resources]\npartition = "x"\ngpus = 4\n')
    proc = submit(*SMALL_HEAT, "--profile", str(profile), "--dry-run", jobs=tmp_path)
    assert_clean_error(proc, "unknown resource field(s): gpus", "gpus_per_node")


def test_without_slurm_commands_submit_says_so(tmp_path):
    # A PATH holding only the venv: no sbatch. (Slurm itself is not needed to see this.)
    venv_bin = str(Path(sys.executable).parent)
    proc = submit(*SMALL_HEAT, "--out", str(tmp_path / "r.h5"), jobs=tmp_path / "j",
                  env={"PATH": venv_bin})
    assert_clean_error(proc, "sbatch not found", "not installed or not on PATH", code=1)
    assert not (tmp_path / "r.h5").exists()
    for command in (("status", "12"), ("cancel", "12"), ("wait", "12")):
        proc = run_hpc(*command, env={"PATH": venv_bin})
        assert_clean_error(proc, f"{'sacct' if command[0] != 'cancel' else 'scancel'} "
                           "not found", code=1)
        assert "attempt" not in proc.stderr  # no retries: a missing command stays missing


def test_status_logs_and_cancel_refuse_what_is_not_a_job(tmp_path):
    assert_clean_error(run_hpc("status", "12;id", "--jobs-dir", str(tmp_path)),
                       "neither a Slurm job id")
    assert_clean_error(run_hpc("cancel", "$(id)", "--jobs-dir", str(tmp_path)),
                       "neither a Slurm job id")
    assert_clean_error(run_hpc("status", "--jobs-dir", str(tmp_path)),
                       f"no submitted jobs under {tmp_path}")
    assert_clean_error(run_hpc("logs", "77", "--jobs-dir", str(tmp_path)),
                       "no job folder for job 77")
    (tmp_path / "notajob").mkdir()
    assert_clean_error(run_hpc("logs", str(tmp_path / "notajob")), "is not a job folder")


def test_submitit_local_engine_runs_real_ranks(tmp_path):
    out = tmp_path / "r.h5"
    proc = submit(*SMALL_HEAT, "--ntasks-per-node", "2", "--out", str(out),
                  "--launcher", "submitit", jobs=tmp_path / "jobs", env=SUBMITIT_HERE)
    assert_ok(proc)
    assert "submitit run: exit code 0 on 2 ranks" in proc.stdout
    (run,) = read_runs(out)
    assert run["ranks"] == 2 and run["verified"]
    assert run["provenance"]["command_line"].startswith("hpc submit heat2d")
    (folder,) = (tmp_path / "jobs").iterdir()
    info = json.loads((folder / "job.json").read_text())
    assert info["engine"] == "submitit" and info["submitit_engine"] == "local"
    assert info["job_id"] is None and info["out"] == str(out)
    assert list((folder / "submitit").glob("*_result.pkl"))


def test_submitit_local_engine_reports_a_failing_rank(tmp_path):
    out = tmp_path / "r.h5"
    assert_ok(submit(*SMALL_HEAT, "--out", str(out), "--launcher", "submitit",
                     jobs=tmp_path / "jobs", env=SUBMITIT_HERE))
    with h5py.File(out) as f:
        before = sorted(f["runs"])
    proc = submit(*SMALL_HEAT, "--ntasks-per-node", "2", "--out", str(out), "--launcher",
                  "submitit", jobs=tmp_path / "jobs",
                  env={"HPC_FAIL_RANK": "1", **SUBMITIT_HERE})
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "the job failed: mpiexec -n 2 exited with 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    log = Path(proc.stderr.split("the ranks' messages are in ")[1].strip())
    assert "rank failed [rank 1@" in log.read_text()
    with h5py.File(out) as f:  # the earlier record is intact
        assert sorted(f["runs"]) == before


def test_local_launcher_runs_the_same_submission_here(tmp_path):
    out = tmp_path / "r.h5"
    proc = submit(*SMALL_HEAT, "--ntasks-per-node", "2", "--out", str(out), "--launcher",
                  "local", jobs=tmp_path / "jobs")
    assert_ok(proc)
    (run,) = read_runs(out)
    assert run["ranks"] == 2 and run["verified"]
    assert "heat2d ranks=2 status=ok" in proc.stdout


def test_submitit_api_returns_rank_zero_value(tmp_path):
    from hpc.slurm.resources import Resources
    from hpc.slurm.submitit_engine import submit_function

    job = submit_function(_rank_and_size, resources=Resources.create(ntasks_per_node=3),
                          folder=tmp_path / "s", engine="local")
    assert job.engine == "local"
    assert job.result() == (0, 3, os.environ.get("SLURM_JOB_ID"))


def _rank_and_size():
    from mpi4py import MPI

    return MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size, os.environ.get("SLURM_JOB_ID")
