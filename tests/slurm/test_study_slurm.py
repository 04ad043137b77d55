"""Scaling studies on the real local Slurm: one job array per allocation shape plus a
report job depending on all of them, and submitit with every task an MPI rank; your own
MPI application on both."""

from __future__ import annotations

import json
import textwrap

import pytest

from hpc.records import read_runs
from hpc.study.store import read_analysis
from tests.conftest import assert_ok, run_hpc
from tests.mpi_app import build
from tests.slurm.jobs import sacct
from tests.test_command_study import write_study

pytestmark = pytest.mark.slurm

STUDY = """
    name = "slurm-study"
    workload = "heat2d"
    kind = "weak"
    ranks = [1, 2, 4]
    size = 96
    repeats = 2
    profile = "local"
    array_throttle = 2
    [params]
    steps = 10
    [resources]
    time = "00:05:00"
    """


def test_study_as_job_arrays_each_point_its_allocation_and_a_report_job(slurm_env,
                                                                        tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(STUDY))
    out, jobs = tmp_path / "study.h5", tmp_path / "jobs"
    proc = run_hpc("study", "run", str(study), "--launcher", "slurm", "--out", str(out),
                   "--wait", "--jobs-dir", str(jobs), env=slurm_env, timeout=600)
    assert_ok(proc)
    assert "3 array job(s), one per allocation shape" in proc.stdout
    assert "report job" in proc.stdout
    runs = read_runs(out)
    assert sorted((r["ranks"], r["size"]) for r in runs) == [(1, 96), (2, 136), (4, 192)]
    assert all(r["verified"] for r in runs)
    # Every point ran as the task of its own array, under srun with its own rank count,
    # in an allocation of exactly its ranks (Slurm sizes an array's tasks alike).
    arrays = {r["ranks"]: r["provenance"]["slurm"]["SLURM_ARRAY_JOB_ID"] for r in runs}
    assert len(set(arrays.values())) == 3
    assert {r["provenance"]["slurm"]["SLURM_ARRAY_TASK_ID"] for r in runs} == {"0"}
    for ranks, array_id in arrays.items():
        assert [row[3] for row in sacct(array_id, slurm_env, "-X", "-o", "AllocCPUS")] \
            == [str(ranks)], (ranks, array_id)
    # job.json for every job: hpc status sees three array tasks and the report job,
    # which waited for all three arrays.
    records = [json.loads(f.read_text()) for f in jobs.glob("*/job.json")]
    report = next(r for r in records if r["job_name"].endswith("-report"))
    assert sorted(report["dependency"].split(":")[1:]) == sorted(arrays.values())
    # array_throttle = 2 across the arrays: the third waited for the first to end.
    after = {r["job_id"]: r["dependency"] for r in records if r is not report}
    assert after == {arrays[1]: None, arrays[2]: None, arrays[4]: f"afterany:{arrays[1]}"}
    status = run_hpc("status", "--json", "--jobs-dir", str(jobs), env=slurm_env)
    assert_ok(status)
    assert len(json.loads(status.stdout)) == 4
    # The dependent job analysed the file and wrote the report.
    assert read_analysis(out)["kind"] == "weak"
    assert "data:image/png;base64," in (tmp_path / "study.html").read_text()

    # A rerun has nothing left to submit.
    again = run_hpc("study", "run", str(study), "--launcher", "slurm", "--out", str(out),
                    "--jobs-dir", str(tmp_path / "jobs"), env=slurm_env)
    assert_ok(again)
    assert "3 of 3 points already recorded" in again.stderr


def test_study_through_submitit_every_task_a_rank(slurm_env, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(STUDY).replace("[1, 2, 4]", "[1, 2]"))
    out = tmp_path / "study.h5"
    proc = run_hpc("study", "run", str(study), "--launcher", "submitit", "--out", str(out),
                   "--jobs-dir", str(tmp_path / "jobs"), env=slurm_env, timeout=600)
    assert_ok(proc)
    runs = read_runs(out)
    assert sorted(r["ranks"] for r in runs) == [1, 2]
    assert all(r["provenance"]["slurm"].get("SLURM_JOB_ID") for r in runs)
    assert len({r["provenance"]["slurm"]["SLURM_JOB_ID"] for r in runs}) == 2
    assert (tmp_path / "study.html").exists()


@pytest.mark.parametrize("launcher", ["slurm", "submitit"])
def test_own_application_study_on_slurm(slurm_env, tmp_path, launcher):
    """The study file the local launcher runs (tests/test_command_study.py), unchanged
    but for the profile: {mpirun} becomes srun with the point's ranks in a Slurm job."""
    (tmp_path / "app").symlink_to(build(tmp_path / "..", name=f"app-{launcher}"))
    study = write_study(tmp_path, EXTRA="",
                        **{'launcher = "local"': 'launcher = "local"\nprofile = "local"'})
    out = tmp_path / "app-study.h5"
    jobs = tmp_path / "jobs"
    proc = run_hpc("study", "run", str(study), "--launcher", launcher, "--out", str(out),
                   "--wait", "--jobs-dir", str(jobs), env=slurm_env, timeout=600)
    assert_ok(proc)
    runs = read_runs(out)
    assert sorted((r["ranks"], r["status"]) for r in runs) == [(1, "ok"), (2, "ok")]
    for run in runs:
        assert run["provenance"]["starter"] == "srun"
        assert run["provenance"]["slurm"]["SLURM_JOB_ID"]
        command = run["provenance"]["application"]["command"]
        assert command.startswith("srun --mpi=") and f"--ntasks={run['ranks']} " in command
        assert f"ranks: {run['ranks']}" in run["result"]["output"][0]
    assert (tmp_path / "app-study.html").exists()
    # hpc status knows the study's jobs from their folders.
    status = run_hpc("status", "--json", "--jobs-dir", str(jobs), env=slurm_env)
    assert_ok(status)
    states = json.loads(status.stdout)
    expected = 3 if launcher == "slurm" else 2  # 2 array tasks + the report job; 2 jobs
    assert len(states) == expected and all(s["state"] == "COMPLETED"
                                           for s in states.values())
