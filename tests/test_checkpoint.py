"""Checkpoint and resume under real mpiexec with real signals (hpc.checkpoint).

A run is stopped with SIGUSR1 in its last timed repeat, so the final result comes from
state that crossed the checkpoint; resumed, it must equal an uninterrupted run bit for
bit. The Slurm side (--signal, requeue) is in tests/slurm; the CUDA backend's runs, which
go through the same step loop, in tests/test_cuda_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpc.checkpoint import EXIT_CHECKPOINTED
from tests.checkpointing import HEAT, NBODY, check_resumed, stop_in_last_repeat, uninterrupted
from tests.conftest import assert_ok, run_hpc


def test_heat2d_stopped_on_one_rank_resumes_bit_for_bit(tmp_path):
    # Only rank 1 is signalled: rank 0 learns it through the ranks' agreement.
    out, ckpt, args, saved = stop_in_last_repeat(tmp_path, HEAT, ranks=2, signal_rank=1)
    proc = run_hpc("run", *args)
    assert_ok(proc)
    assert "in 2 segments" in proc.stdout and "resuming from" in proc.stderr
    run = check_resumed(out, ckpt, ranks=2, saved=saved)
    reference = uninterrupted(tmp_path, HEAT, ranks=2)
    for key in ("field", "residual_history", "checksum"):
        assert np.array_equal(run["result"][key], reference["result"][key]), key


def test_nbody_stopped_through_mpiexec_resumes_bit_for_bit(tmp_path):
    # 3 ranks split 601 bodies unevenly; the signal goes to the launcher, which passes it on.
    out, ckpt, args, saved = stop_in_last_repeat(tmp_path, NBODY, ranks=3, signal_rank=None)
    assert_ok(run_hpc("run", *args))
    run = check_resumed(out, ckpt, ranks=3, saved=saved)
    reference = uninterrupted(tmp_path, NBODY, ranks=3)
    for key in ("positions", "velocities", "energy_final"):
        assert np.array_equal(run["result"][key], reference["result"][key]), key


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    """A checkpoint of a stopped heat2d run (its bytes, to check that refusals keep it)."""
    tmp_path = tmp_path_factory.mktemp("ckpt")
    _, ckpt, args, _ = stop_in_last_repeat(tmp_path, HEAT, ranks=2, signal_rank=0)
    return ckpt, args


def test_checkpoint_of_another_run_is_refused_and_kept(saved_checkpoint, tmp_path):
    ckpt, args = saved_checkpoint
    before = ckpt.read_bytes()
    proc = run_hpc("run", "heat2d", "--size", "128", "--steps", "2000", "--np", "2",
                   "--repeats", "2", "--warmup", "0", "--checkpoint", str(ckpt),
                   "--out", str(tmp_path / "other.h5"))
    assert proc.returncode == 2
    assert "holds another run" in proc.stderr and "steps" in proc.stderr
    proc = run_hpc("run", *HEAT, "--np", "1", "--repeats", "2", "--warmup", "0",
                   "--checkpoint", str(ckpt), "--out", str(tmp_path / "other.h5"))
    assert proc.returncode == 2 and "ranks 2 there, 1 here" in proc.stderr
    assert ckpt.read_bytes() == before and not (tmp_path / "other.h5").exists()


def test_rank_failure_on_resume_keeps_checkpoint(saved_checkpoint):
    ckpt, args = saved_checkpoint
    before = ckpt.read_bytes()
    proc = run_hpc(*("run", *args), env={"HPC_FAIL_RANK": "1"}, timeout=120)
    assert proc.returncode not in (0, EXIT_CHECKPOINTED)
    assert "injected failure" in proc.stderr
    assert ckpt.read_bytes() == before  # the next start can still resume


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "runs.h5", "is also the --out file"),
    (lambda d: d, "is a directory"),
    (lambda d: d / "notes.txt", "is not a checkpoint of this suite"),
])
def test_bad_checkpoint_paths(tmp_path, make, message):
    (tmp_path / "notes.txt").write_text("keep me")
    path = make(tmp_path)
    proc = run_hpc("run", *HEAT, "--out", str(tmp_path / "runs.h5"), "--checkpoint", str(path))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "runs.h5").exists()


def test_a_records_file_is_not_taken_for_a_checkpoint(tmp_path):
    records = tmp_path / "runs.h5"
    assert_ok(run_hpc("run", "pi", "--size", "1000", "--repeats", "1", "--out", str(records)))
    before = records.read_bytes()
    proc = run_hpc("run", *HEAT, "--out", str(tmp_path / "new.h5"), "--checkpoint",
                   str(records))
    assert proc.returncode == 2 and "is not a checkpoint of this suite" in proc.stderr
    assert records.read_bytes() == before


def test_only_steppable_workloads_take_checkpoint(tmp_path):
    proc = run_hpc("run", "pi", "--checkpoint", str(tmp_path / "c.h5"))
    assert proc.returncode == 2 and "unrecognized arguments: --checkpoint" in proc.stderr


def stepped_classes() -> list[type]:
    """Every workload class of every backend that can be checkpointed."""
    from hpc.workloads import WORKLOADS
    from hpc.workloads.cuda import CUDA_WORKLOADS

    return [cls for cls in {*WORKLOADS.values(), *CUDA_WORKLOADS.values()}
            if cls.checkpoint_every]


def test_every_backend_runs_the_one_step_loop():
    # The tests above exercise SteppedWorkload.execute through the CPU classes; a backend
    # that wrote its own loop would skip the stop agreement and the resume (the CUDA
    # classes once did: SIGUSR1 was ignored and a requeued run started from step 1).
    from hpc.workloads.base import SteppedWorkload

    classes = stepped_classes()
    assert {c.__name__ for c in classes} >= {"Heat2D", "NBody", "Heat2DCuda", "NBodyCuda"}
    for cls in classes:
        assert issubclass(cls, SteppedWorkload), cls
        assert cls.execute is SteppedWorkload.execute, f"{cls.__name__} re-implements execute"
        for hook in ("reset", "save_state", "load_state", "advance"):
            assert getattr(cls, hook) is not getattr(SteppedWorkload, hook), (cls, hook)


@pytest.mark.parametrize("workload, backend, refused", [
    ("kmeans", "numpy", True), ("kmeans", "cuda", True), ("pi", "cython", True),
    ("heat2d", "cuda", False), ("nbody", "cuda", False)])
def test_validate_asks_the_backend_whether_it_can_checkpoint(tmp_path, workload, backend,
                                                             refused):
    from hpc.errors import UserError
    from hpc.runner import RunSpec, validate

    spec = RunSpec(workload, backend, {}, checkpoint=tmp_path / "c.h5")
    try:
        validate(spec, 2)
        message = ""
    except UserError as exc:  # without a GPU, an accepted cuda run fails on CUDA itself
        message = str(exc)
    assert ("cannot be checkpointed" in message) == refused, message
    if refused:
        assert f"--backend {backend}" in message
