"""Real jobs on a real Slurm cluster, from hand-written batch scripts: MPI under srun, a
failing rank. (A job over its time limit: tests/test_slurm_cluster.py, through
`hpc submit --wait`.)
"""

from __future__ import annotations

import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.slurm.jobs import HPC, batch_script, sacct, submit, wait_final

pytestmark = pytest.mark.slurm

# The venv's MPICH speaks PMI-2, not the PMIx that this cluster defaults to.
SRUN = "srun --mpi=pmi2"
HEAT = "run heat2d --size 64 --steps 40 --repeats 1 --warmup 0"


def test_mpi_job_under_srun_completes(slurm_env, tmp_path):
    out = tmp_path / "runs.h5"
    job = submit(batch_script(f"{SRUN} {HPC} {HEAT} --out {out}", sbatch=("--ntasks=2",)),
                 tmp_path, slurm_env)
    assert wait_final(job, slurm_env, timeout=120) == "COMPLETED"
    steps = {row[0]: row[1] for row in sacct(job, slurm_env)}
    assert steps[f"{job}.0"] == "COMPLETED"  # the srun step with the two ranks
    [run] = read_runs(out)
    assert run["ranks"] == 2 and run["verified"]
    assert run["provenance"]["slurm"]["SLURM_JOB_ID"] == job


def test_failing_rank_ends_failed_and_keeps_earlier_records(slurm_env, tmp_path):
    out = tmp_path / "runs.h5"
    assert_ok(run_hpc("run", "pi", "--size", "1000", "--repeats", "1", "--out", str(out)))
    before = out.read_bytes()
    script = batch_script(f"HPC_FAIL_RANK=1 {SRUN} {HPC} {HEAT} --out {out}",
                          sbatch=("--ntasks=2", "--time=2"))
    job = submit(script, tmp_path, slurm_env)
    assert wait_final(job, slurm_env, timeout=120) == "FAILED"  # not TIMEOUT: no hang
    assert "injected failure" in (tmp_path / "job.out").read_text()
    assert out.read_bytes() == before
    assert [r["workload"] for r in read_runs(out)] == ["pi"]
