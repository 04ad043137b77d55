"""Real submissions to the local Slurm cluster (scripts/slurm-cluster.sh): sbatch and
submitit with two MPI ranks, arrays, dependencies, cancel, time limit, a failing rank,
requeue, held jobs, a refused job, the controller down, and accounting off.

Skipped, with the reason, when no cluster answers (the ``slurm_env`` fixture). Every
command runs under a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc

pytestmark = pytest.mark.slurm

EXPECTED = Path(__file__).parent / "slurm_expected"
PI = ("pi", "--samples", "20000", "--repeats", "1", "--warmup", "0")
HEAT = ("heat2d", "--size", "48", "--steps", "20", "--repeats", "2", "--warmup", "0")


def sleeper(seconds: int) -> tuple[str, ...]:
    """A workload that runs about ``seconds`` on one rank, sleeping (no CPU burnt)."""
    return ("amdahl", "--work", str(seconds * 1000), "--serial-fraction", "0", "--unit",
            "sleep", "--repeats", "1", "--warmup", "0")


@pytest.fixture(scope="module")
def cluster(slurm_env):
    """SLURM_CONF of the cluster (tests/conftest.py's slurm_env skips when none answers),
    also set in this process for the Python API calls."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
        yield slurm_env["SLURM_CONF"]


@pytest.fixture(autouse=True)
def _cancel_leftovers(tmp_path):
    """A test that fails (or times out) must not leave its jobs running on the cluster."""
    yield
    ids = [json.loads(p.read_text()).get("job_id") for p in tmp_path.rglob("job.json")]
    ids = [i for i in ids if i]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60, check=False)


def hpc(*args: str, timeout: float = 240, env: dict[str, str] | None = None):
    return run_hpc(*args, timeout=timeout, env=env)


def submit(jobs: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return hpc("submit", *args, "--jobs-dir", str(jobs), **kw)


def job_folder(jobs: Path, job_id: str) -> Path:
    for info in jobs.glob("*/job.json"):
        if json.loads(info.read_text()).get("job_id") == job_id:
            return info.parent
    raise AssertionError(f"no folder for job {job_id} in {jobs}")


def status(jobs: Path, *ids: str) -> dict:
    proc = hpc("status", *ids, "--json", "--jobs-dir", str(jobs), timeout=60)
    assert_ok(proc)
    return json.loads(proc.stdout)


def wait_for_state(jobs: Path, job_id: str, state: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if status(jobs, job_id)[job_id]["state"] == state:
            return
        time.sleep(1)
    raise AssertionError(f"job {job_id} never reached {state} in {limit} s")


def slurm_ids(out: Path) -> list[dict]:
    return [run["provenance"]["slurm"] for run in read_runs(out)]


# -- the two launchers ---------------------------------------------------------------------
def test_sbatch_two_ranks_end_with_a_valid_record(cluster, tmp_path):
    out, jobs = tmp_path / "r.h5", tmp_path / "jobs"
    proc = submit(jobs, "heat2d", "--size", "48", "--steps", "20", "--nodes", "1",
                  "--ntasks-per-node", "2", "--time", "00:05:00", "--wait", "--out", str(out))
    assert_ok(proc)
    job_id = proc.stdout.split("submitted job ")[1].split()[0]
    assert f"job {job_id}: COMPLETED exit=0:0" in proc.stdout
    assert "SUBMITTED ->" in proc.stderr and "-> COMPLETED" in proc.stderr
    (run,) = read_runs(out)
    assert (run["workload"], run["ranks"], run["status"], run["verified"]) == (
        "heat2d", 2, "ok", True)
    assert run["provenance"]["slurm"]["SLURM_JOB_ID"] == job_id
    assert run["provenance"]["slurm"]["SLURM_NTASKS"] == "2"
    assert run["provenance"]["command_line"].startswith("hpc submit heat2d")
    folder = job_folder(jobs, job_id)
    names = {p.name for p in folder.iterdir()}
    assert {"job.sh", "job.json", f"slurm-{job_id}.out", f"slurm-{job_id}.err",
            f"provenance-{job_id}.txt"} <= names
    assert "exit_code=0" in (folder / f"provenance-{job_id}.txt").read_text()
    info = json.loads((folder / "job.json").read_text())
    assert info["out"] == str(out) and info["last_state"] == {job_id: "COMPLETED"}
    assert status(jobs, job_id)[job_id]["state"] == "COMPLETED"
    logs = hpc("logs", job_id, "--jobs-dir", str(jobs), timeout=30)
    assert_ok(logs)
    assert "verified=yes" in logs.stdout and f"slurm-{job_id}.out" in logs.stdout


def test_submitit_two_ranks_end_with_a_valid_record(cluster, tmp_path):
    out, jobs = tmp_path / "r.h5", tmp_path / "jobs"
    proc = submit(jobs, "heat2d", "--size", "48", "--steps", "20", "--nodes", "1",
                  "--ntasks-per-node", "2", "--time", "00:05:00", "--wait", "--out", str(out),
                  "--launcher", "submitit")
    assert_ok(proc)
    job_id = proc.stdout.split("submitted job ")[1].split()[0]
    assert "submitit run: exit code 0 on 2 ranks" in proc.stdout
    (run,) = read_runs(out)
    assert run["ranks"] == 2 and run["verified"]
    assert run["provenance"]["slurm"]["SLURM_JOB_ID"] == job_id
    assert len(set(run["provenance"]["hostnames"])) == 1
    folder = job_folder(jobs, job_id)
    assert (folder / "submitit" / f"{job_id}_0_result.pkl").exists()
    assert (folder / "submitit" / f"{job_id}_1_log.out").exists()


def test_submitit_api_every_task_is_a_rank(cluster, tmp_path):
    from hpc.slurm.resources import Resources
    from hpc.slurm.submitit_engine import submit_function

    job = submit_function(_whoami, 7, resources=Resources.create(ntasks_per_node=3,
                                                                 time="00:02:00"),
                          folder=tmp_path / "s", engine="slurm")
    assert job.engine == "slurm"
    rank, size, job_id, value = job.result()
    assert (rank, size, job_id, value) == (0, 3, job.job_id, 49)


def _whoami(x: int):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    total = comm.allreduce(x)  # a collective: fails unless the tasks are one MPI job
    return comm.rank, comm.size, os.environ.get("SLURM_JOB_ID"), total * x // comm.size


# -- scripts ---------------------------------------------------------------------------
# Site-specific names this one-node cluster lacks (accounts, GPUs, features) are overridden
# on the command line; sbatch still parses every line of the stored script.
TEST_ONLY_OVERRIDES = {
    "local-heat2d": [], "local-array": [], "local-quoting": [], "local-checkpoint": [],
    "default-pi": ["--nodes=1"],
    "example-cray-gpu": ["--account=", "--qos=", "--constraint=", "--gpus-per-node=0",
                         "--nodes=1", "--cpus-per-task=1"],
    "example-openmpi-gres": ["--partition=debug", "--account=", "--gres=none", "--mem=1G",
                             "--cpus-per-task=1"],
}


@pytest.mark.parametrize("name", sorted(TEST_ONLY_OVERRIDES))
def test_stored_scripts_pass_sbatch_test_only(cluster, name):
    proc = subprocess.run(["sbatch", "--test-only", *TEST_ONLY_OVERRIDES[name],
                           str(EXPECTED / f"{name}.sh")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and "to start at" in proc.stderr, proc.stderr


def test_hostile_output_path_is_written_literally(cluster, tmp_path):
    folder = tmp_path / "it's $(touch pwned) `touch pwned`; x"
    folder.mkdir()
    out = folder / "r 1.h5"
    proc = submit(tmp_path / "jobs", *PI, "--out", str(out), "--env",
                  "HPC_NOTE=$(touch pwned) `touch pwned`", "--wait")
    assert_ok(proc)
    (run,) = read_runs(out)
    assert run["verified"]
    assert run["provenance"]["environment"]["HPC_NOTE"] == "$(touch pwned) `touch pwned`"
    assert not list(tmp_path.rglob("pwned")), "a quoted string was executed"


# -- arrays and dependencies --------------------------------------------------------------
def test_array_one_task_per_point_with_throttle(cluster, tmp_path):
    from hpc.slurm.profiles import load_profile
    from hpc.slurm.resources import Resources
    from hpc.slurm.submit import submit_array

    out, jobs = tmp_path / "ladder.h5", tmp_path / "jobs"
    commands = [[sys.executable, "-m", "hpc", "run", *PI, "--out", str(out)]] * 3
    job = submit_array(Resources.create(ntasks_per_node=2, job_name="ladder", time="2"),
                       commands, load_profile("default"), jobs_dir=jobs, throttle=2,
                       ntasks=[1, 2, 2])
    assert job.array_size == 3 and "#SBATCH --array=0-2%2" in job.script.read_text()
    proc = hpc("wait", job.job_id, "--timeout", "180", "--jobs-dir", str(jobs))
    assert_ok(proc)
    for task in range(3):
        assert f"{job.job_id}_{task}" in proc.stdout
    runs = read_runs(out)
    by_task = {r["provenance"]["slurm"]["SLURM_ARRAY_TASK_ID"]: r for r in runs}
    assert sorted(by_task) == ["0", "1", "2"]
    assert [by_task[t]["ranks"] for t in ("0", "1", "2")] == [1, 2, 2]
    assert {r["provenance"]["slurm"]["SLURM_ARRAY_JOB_ID"] for r in runs} == {job.job_id}
    assert len(list(job.folder.glob(f"slurm-{job.job_id}_*.out"))) == 3


def test_dependency_chain_runs_in_order(cluster, tmp_path):
    out, jobs = tmp_path / "chain.h5", tmp_path / "jobs"
    first = submit(jobs, *sleeper(3), "--out", str(out), "--parsable")
    assert_ok(first)
    first_id = first.stdout.strip()
    assert first_id.isdigit()
    second = submit(jobs, *PI, "--out", str(out), "--parsable", "--dependency",
                    f"afterok:{first_id}")
    assert_ok(second)
    second_id = second.stdout.strip()
    assert_ok(hpc("wait", first_id, second_id, "--timeout", "180", "--jobs-dir", str(jobs)))
    workloads = [(r["workload"], r["provenance"]["slurm"]["SLURM_JOB_ID"])
                 for r in read_runs(out)]
    assert workloads == [("amdahl", first_id), ("pi", second_id)]
    end_first = _provenance(jobs, first_id)["end_utc"]
    start_second = _provenance(jobs, second_id)["start_utc"]
    assert start_second >= end_first
    info = json.loads((job_folder(jobs, second_id) / "job.json").read_text())
    assert info["dependency"] == f"afterok:{first_id}"


def test_tracker_asks_once_per_poll_for_all_jobs(cluster, tmp_path):
    from hpc.slurm.tracker import Tracker

    jobs = tmp_path / "jobs"
    ids = []
    for _ in range(3):
        proc = submit(jobs, *PI, "--out", str(tmp_path / "r.h5"), "--parsable")
        assert_ok(proc)
        ids.append(proc.stdout.strip())
    tracker = Tracker(say=lambda message: None)
    for job_id in ids:
        tracker.add(job_id)
    assert tracker.wait(timeout=120, min_interval=0.5)
    assert {t.state.value for t in tracker.jobs.values()} == {"COMPLETED"}
    # One sacct per poll for all three jobs (and an squeue if sacct failed on the way).
    assert tracker.polls >= 1 and tracker.calls == tracker.polls + tracker.fallbacks


def test_tracker_falls_back_to_squeue_when_sacct_fails_and_says_so_once(cluster, tmp_path,
                                                                          monkeypatch):
    from hpc.slurm.tracker import Tracker

    proc = submit(tmp_path / "jobs", *PI, "--out", str(tmp_path / "r.h5"), "--parsable")
    assert_ok(proc)
    # A real sacct failure: the same cluster, its accounting daemon at a closed port.
    text = Path(cluster).read_text()
    broken = tmp_path / "slurm.conf"
    broken.write_text("\n".join("AccountingStoragePort=9" if line.startswith(
        "AccountingStoragePort=") else line for line in text.splitlines()) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(broken))
    said: list[str] = []
    tracker = Tracker(say=said.append)
    tracker.add(proc.stdout.strip())
    assert tracker.wait(timeout=120, min_interval=0.5)
    assert {t.state.value for t in tracker.jobs.values()} == {"COMPLETED"}
    assert tracker.fallbacks == tracker.polls >= 1
    assert len([m for m in said if "asking squeue" in m]) == 1, said


def _provenance(jobs: Path, job_id: str) -> dict[str, str]:
    text = (job_folder(jobs, job_id) / f"provenance-{job_id}.txt").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# -- states caused for real -------------------------------------------------------------
def test_held_job_is_pending_then_cancelled(cluster, tmp_path):
    jobs = tmp_path / "jobs"
    proc = submit(jobs, *PI, "--out", str(tmp_path / "r.h5"), "--hold", "--parsable")
    assert_ok(proc)
    job_id = proc.stdout.strip()
    wait_for_state(jobs, job_id, "PENDING", limit=30)
    assert_ok(hpc("cancel", job_id, "--jobs-dir", str(jobs), timeout=30))
    proc = hpc("wait", job_id, "--timeout", "60", "--jobs-dir", str(jobs))
    assert proc.returncode == 1 and "CANCELLED" in proc.stdout, proc.stdout + proc.stderr
    assert not (tmp_path / "r.h5").exists()


def test_cancelled_running_job_is_reported_and_keeps_earlier_results(cluster, tmp_path):
    out, jobs = tmp_path / "r.h5", tmp_path / "jobs"
    assert_ok(submit(jobs, *PI, "--out", str(out), "--wait"))
    proc = submit(jobs, *sleeper(120), "--out", str(out), "--parsable")
    assert_ok(proc)
    job_id = proc.stdout.strip()
    wait_for_state(jobs, job_id, "RUNNING")
    assert_ok(hpc("cancel", job_folder(jobs, job_id).as_posix(), "--jobs-dir", str(jobs),
                  timeout=30))
    proc = hpc("wait", job_id, "--timeout", "90", "--jobs-dir", str(jobs))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "-> CANCELLED" in proc.stderr
    assert status(jobs, job_id)[job_id]["state"] == "CANCELLED"
    assert [r["workload"] for r in read_runs(out)] == ["pi"]


@pytest.mark.slow
def test_job_over_its_time_limit_times_out(cluster, tmp_path):
    out, jobs = tmp_path / "r.h5", tmp_path / "jobs"
    assert_ok(submit(jobs, *PI, "--out", str(out), "--wait"))
    # The controller checks time limits about every 30 s: TIMEOUT comes 60 to 90 s in.
    proc = submit(jobs, *sleeper(600), "--time", "00:01:00", "--out", str(out), "--wait",
                  timeout=300)
    assert proc.returncode == 124, proc.stdout + proc.stderr
    assert "TIMEOUT" in proc.stdout and "-> TIMEOUT" in proc.stderr
    with h5py.File(out) as f:
        assert list(f["runs"]) == ["000001"]  # the earlier run, intact


def test_failing_rank_fails_the_job_with_its_message(cluster, tmp_path):
    out, jobs = tmp_path / "r.h5", tmp_path / "jobs"
    assert_ok(submit(jobs, *PI, "--out", str(out), "--wait"))
    proc = submit(jobs, *HEAT, "--ntasks-per-node", "2", "--out", str(out), "--wait",
                  env={"HPC_FAIL_RANK": "1"})
    assert proc.returncode not in (0, 124), proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout
    assert "rank failed [rank 1@" in proc.stderr  # the end of the job's error log
    assert [r["workload"] for r in read_runs(out)] == ["pi"]


@pytest.mark.slow
def test_requeued_job_is_tracked_through_its_restart(cluster, tmp_path):
    out, jobs = tmp_path / "r.h5", tmp_path / "jobs"
    proc = submit(jobs, *sleeper(8), "--out", str(out), "--parsable")
    assert_ok(proc)
    job_id = proc.stdout.strip()
    waiter = subprocess.Popen(  # hpc wait, running while the job is requeued under it
        [sys.executable, "-m", "hpc", "wait", job_id, "--timeout", "200", "--jobs-dir",
         str(jobs)], cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_for_state(jobs, job_id, "RUNNING")
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
        stdout, stderr = waiter.communicate(timeout=240)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, stdout + stderr
    assert "requeued=1" in stderr or "requeued 1x" in stdout, stdout + stderr
    assert "COMPLETED" in stdout
    runs = _provenance_runs(jobs, job_id)
    assert [r.get("restart_count") for r in runs] == ["0", "1"]
    assert "exit_code" not in runs[0] and runs[1]["exit_code"] == "0"
    (run,) = read_runs(out)  # the first run was stopped before it wrote anything
    assert run["provenance"]["slurm"]["SLURM_RESTART_COUNT"] == "1"


@pytest.mark.slow
@pytest.mark.timeout(660)  # each segment: up to 35 s to the signal, then 30 s held back
def test_submitted_checkpointing_job_is_requeued_and_resumes(cluster, tmp_path):
    """hpc submit --checkpoint: the template's signal and requeue lines at work (the
    protocol itself is tested in tests/slurm/test_requeue.py). The run needs about 55 s
    of compute: longer than the latest signal (40 s in), so it is stopped at least once."""
    from tests.slurm.test_requeue import SIZE, TARGET_SECONDS, seconds_per_step

    steps = int(TARGET_SECONDS / seconds_per_step(tmp_path))
    out, jobs, ckpt = tmp_path / "r.h5", tmp_path / "jobs", tmp_path / "heat.ckpt.h5"
    proc = submit(jobs, "heat2d", "--size", str(SIZE), "--steps", str(steps), "--repeats",
                  "1", "--warmup", "0", "--ntasks-per-node", "2", "--time", "1",
                  "--checkpoint", str(ckpt), "--checkpoint-signal", "50", "--out", str(out),
                  "--wait", "--wait-timeout", "540", timeout=600)
    assert_ok(proc)
    job_id = proc.stdout.split("submitted job ")[1].split()[0]
    assert "requeued=" in proc.stdout  # the final line: COMPLETED, requeued at least once
    (run,) = read_runs(out)
    assert run["resumed"] and run["segments"] >= 2 and run["verified"]
    assert run["provenance"]["slurm"]["SLURM_JOB_ID"] == job_id
    segments = _provenance_runs(jobs, job_id)
    assert [s["exit_code"] for s in segments] == ["75"] * (len(segments) - 1) + ["0"]
    assert not ckpt.exists()


def _provenance_runs(jobs: Path, job_id: str) -> list[dict[str, str]]:
    """Each run of a job script appends a block starting with job_id=."""
    runs: list[dict[str, str]] = []
    text = (job_folder(jobs, job_id) / f"provenance-{job_id}.txt").read_text()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "job_id":
            runs.append({})
        if runs:
            runs[-1][key] = value
    return runs


# -- faults ------------------------------------------------------------------------------
def test_refused_job_shows_sbatch_error(cluster, tmp_path):
    for launcher in ("slurm", "submitit"):
        proc = submit(tmp_path / "jobs", *PI, "--partition", "nosuchpartition", "--out",
                      str(tmp_path / "r.h5"), "--launcher", launcher)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "hpc: error: sbatch refused the job" in proc.stderr
        assert "invalid partition" in proc.stderr.lower()
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.h5").exists()


def _conf_copy(cluster: str, folder: Path, key: str, value: str) -> str:
    """A copy of the cluster's slurm.conf with one setting changed: for the client only;
    the running cluster is not touched."""
    lines = Path(cluster).read_text().splitlines()
    changed = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    assert changed != lines, f"{key} not in {cluster}"
    path = folder / "slurm.conf"
    path.write_text("\n".join(changed) + "\n")
    return str(path)


def test_controller_down_at_submission(cluster, tmp_path):
    conf = _conf_copy(cluster, tmp_path, "SlurmctldPort", "6899")  # nobody listens there
    started = time.monotonic()
    proc = submit(tmp_path / "jobs", *PI, "--out", str(tmp_path / "r.h5"),
                  env={"SLURM_CONF": conf}, timeout=150)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Unable to contact slurm controller" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 140


def test_accounting_off_falls_back_to_squeue(cluster, tmp_path):
    conf = _conf_copy(cluster, tmp_path, "AccountingStorageType",
                      "accounting_storage/none")
    out = tmp_path / "r.h5"
    proc = submit(tmp_path / "jobs", *PI, "--out", str(out), "--wait",
                  env={"SLURM_CONF": conf})
    assert_ok(proc)
    assert "accounting (sacct) is off: states come from squeue" in proc.stderr
    assert "COMPLETED" in proc.stdout and read_runs(out)[0]["verified"]
