"""Checkpoint and requeue on a real Slurm cluster, the way docs/CHECKPOINT.md tells.

A heat2d job with a 1-minute limit is sized to need about 55 s of compute; Slurm's
--signal=USR1@55 reaches its ranks well before it could finish. They save a checkpoint
and exit 75, the batch script requeues the job, and the next start resumes. The result
must equal, bit for bit, that of the same run uninterrupted (2 ranks, no Slurm). The grid
is large enough (512^2 for about 512^2 steps) that the field is still far from its
steady state, so a step lost or repeated across the checkpoint would show.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpc.checkpoint import EXIT_CHECKPOINTED
from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.slurm.jobs import HPC, batch_script, sacct, submit, wait_final

pytestmark = pytest.mark.slurm

SIZE = 512
TARGET_SECONDS = 55  # of compute, on 2 ranks; the signal comes 5 to 35 s after the start


def seconds_per_step(folder) -> float:
    """Measure a 2-rank heat2d step on this machine (warm), to size the job."""
    out, steps = folder / "calibration.h5", 3000
    assert_ok(run_hpc("run", "heat2d", "--np", "2", "--size", str(SIZE), "--steps", str(steps),
                      "--repeats", "1", "--warmup", "1", "--out", str(out)))
    return float(read_runs(out)[0]["timings"][0, :, 0].max()) / steps


def test_timeout_signal_checkpoint_requeue_resume(slurm_env, tmp_path):
    steps = int(TARGET_SECONDS / seconds_per_step(tmp_path))
    out, ckpt = tmp_path / "runs.h5", tmp_path / "heat.ckpt.h5"
    run = (f"run heat2d --size {SIZE} --steps {steps} --repeats 1 --warmup 0 --out {out} "
           f"--checkpoint {ckpt}")
    script = batch_script(
        f"srun --mpi=pmi2 {HPC} {run}",
        "rc=$?",
        f'if [ "$rc" -eq {EXIT_CHECKPOINTED} ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
        'exit "$rc"',
        sbatch=("--ntasks=2", "--time=1", "--signal=USR1@55", "--requeue",
                "--open-mode=append"))
    job = submit(script, tmp_path, slurm_env, "requeue")
    # Each segment: up to 35 s to the signal, 30 s held back by the requeue, then the rest.
    assert wait_final(job, slurm_env, timeout=420) == "COMPLETED"
    log = (tmp_path / "requeue.out").read_text()
    assert "state saved to" in log and "resuming from" in log, log
    [record] = read_runs(out)
    segments = record["segments"]
    assert segments >= 2 and record["resumed"] and record["verified"]
    runs = [row[1] for row in sacct(job, slurm_env, "-X", "-D")]
    assert runs == ["REQUEUED"] * (segments - 1) + ["COMPLETED"], runs
    assert record["provenance"]["slurm"]["SLURM_RESTART_COUNT"] == str(segments - 1)
    assert not ckpt.exists()

    reference = tmp_path / "reference.h5"  # after the job: the two would share 2 cores
    assert_ok(run_hpc("run", "heat2d", "--np", "2", "--size", str(SIZE), "--steps", str(steps),
                      "--repeats", "1", "--warmup", "0", "--out", str(reference), timeout=300))
    [expected] = read_runs(reference)
    for key in ("field", "residual_history", "checksum"):
        assert np.array_equal(record["result"][key], expected["result"][key]), key
