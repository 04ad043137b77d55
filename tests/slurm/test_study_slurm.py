"""Scaling studies on the real local Slurm: one job array plus a dependent report job,
and submitit with every task an MPI rank."""

from __future__ import annotations

import textwrap

import pytest

from hpc.records import read_runs
from hpc.study.store import read_analysis
from tests.conftest import assert_ok, run_hpc

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


def test_study_as_a_job_array_with_a_report_job(slurm_env, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(STUDY))
    out = tmp_path / "study.h5"
    proc = run_hpc("study", "run", str(study), "--launcher", "slurm", "--out", str(out),
                   "--wait", "--jobs-dir", str(tmp_path / "jobs"), env=slurm_env,
                   timeout=600)
    assert_ok(proc)
    assert "array job" in proc.stdout and "report job" in proc.stdout
    runs = read_runs(out)
    assert sorted((r["ranks"], r["size"]) for r in runs) == [(1, 96), (2, 136), (4, 192)]
    assert all(r["verified"] for r in runs)
    # Every point ran as a task of one array, under srun with its own rank count.
    arrays = {r["provenance"]["slurm"]["SLURM_ARRAY_JOB_ID"] for r in runs}
    assert len(arrays) == 1
    assert sorted(r["provenance"]["slurm"]["SLURM_ARRAY_TASK_ID"] for r in runs) == \
        ["0", "1", "2"]
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


def test_command_study_refuses_the_slurm_launcher(slurm_env, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text('kind = "strong"\nranks = [1, 2]\n[command]\n'
                     'run = "srun -n {ranks} hostname"\n')
    proc = run_hpc("study", "run", str(study), "--launcher", "slurm", "--out",
                   str(tmp_path / "s.h5"), env=slurm_env)
    assert proc.returncode == 2 and "--launcher local" in proc.stderr
