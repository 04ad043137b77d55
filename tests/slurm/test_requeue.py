"""Checkpoint and requeue on a real Slurm cluster, the way docs/CHECKPOINT.md tells.

A heat2d job with a 1-minute limit is sized to need about 55 s of compute; Slurm's
--signal=USR1@50 reaches its ranks 10 to 40 s after the start, before it could finish.
They save a checkpoint and exit 75, the batch script requeues the job, and the next
start resumes. The result must equal, bit for bit, that of the same run uninterrupted.
The grid is large enough (512^2 for about 512^2 steps) that the field is still far from
its steady state, so a step lost or repeated across the checkpoint would show.

The job is sized by timing a short run first. Should the machine speed up enough for
the job to finish before the signal (its load dropped), it is run again three times
longer: the test is about requeueing, not about this machine's speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpc.checkpoint import EXIT_CHECKPOINTED
from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.slurm.jobs import HPC, batch_script, cancelled_on_failure, sacct, submit, wait_final

pytestmark = pytest.mark.slurm

SIZE = 512
TARGET_SECONDS = 55  # of compute on 2 ranks


def seconds_per_step(folder) -> float:
    """Measure a 2-rank heat2d step on this machine (warm), to size the job."""
    out, steps = folder / "calibration.h5", 3000
    assert_ok(run_hpc("run", "heat2d", "--np", "2", "--size", str(SIZE), "--steps", str(steps),
                      "--repeats", "1", "--warmup", "1", "--out", str(out)))
    return float(read_runs(out)[0]["timings"][0, :, 0].max()) / steps


def run_requeueing_job(folder, env, steps: int) -> tuple[str, dict]:
    """The batch script of docs/CHECKPOINT.md; the job id and its final record."""
    out, ckpt = folder / "runs.h5", folder / "heat.ckpt.h5"
    run = (f"run heat2d --size {SIZE} --steps {steps} --repeats 1 --warmup 0 --out {out} "
           f"--checkpoint {ckpt}")
    script = batch_script(
        f"srun --mpi=pmi2 {HPC} {run}",
        "rc=$?",
        f'if [ "$rc" -eq {EXIT_CHECKPOINTED} ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
        'exit "$rc"',
        sbatch=("--ntasks=2", "--time=1", "--signal=USR1@50", "--requeue",
                "--open-mode=append"))
    out.unlink(missing_ok=True)
    job = submit(script, folder, env, f"requeue-{steps}")
    with cancelled_on_failure(job, env):
        # Each segment: up to 60 s, then 30 s held back by the requeue (more when loaded).
        assert wait_final(job, env, timeout=900) == "COMPLETED"
    assert not ckpt.exists()  # the run is recorded: nothing left to resume
    [record] = read_runs(out)
    return job, record


@pytest.mark.timeout(1800)
def test_timeout_signal_checkpoint_requeue_resume(slurm_env, tmp_path):
    steps = int(TARGET_SECONDS / seconds_per_step(tmp_path))
    job, record = run_requeueing_job(tmp_path, slurm_env, steps)
    if record["segments"] == 1:  # finished before the signal: the machine sped up
        steps *= 3
        job, record = run_requeueing_job(tmp_path, slurm_env, steps)
    segments = record["segments"]
    assert segments >= 2 and record["resumed"] and record["verified"]
    log = (tmp_path / f"requeue-{steps}.out").read_text()
    assert log.count("state saved to") == segments - 1 and "resuming from" in log, log
    runs = [row[1] for row in sacct(job, slurm_env, "-X", "-D")]
    assert runs == ["REQUEUED"] * (segments - 1) + ["COMPLETED"], runs
    assert record["provenance"]["slurm"]["SLURM_RESTART_COUNT"] == str(segments - 1)

    # The same run without Slurm, uninterrupted, on the job's 2 ranks (half the time of 1
    # rank; with the same decomposition the residuals, sums over ranks, must agree too).
    reference = tmp_path / "reference.h5"
    assert_ok(run_hpc("run", "heat2d", "--np", "2", "--size", str(SIZE), "--steps",
                      str(steps), "--repeats", "1", "--warmup", "0", "--out", str(reference),
                      timeout=900))
    [expected] = read_runs(reference)
    for key in ("field", "checksum", "residual", "residual_history"):
        assert np.array_equal(record["result"][key], expected["result"][key]), key
