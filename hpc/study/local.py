"""The local launcher: a study's points one after another under mpiexec on this machine."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hpc.errors import NoSpace, UserError, VerificationError
from hpc.launch import EXIT_TERMINATED, launch_local
from hpc.study.external import PointFailed, run_command_point
from hpc.study.plan import Point, size_name
from hpc.study.progress import StudyProgress
from hpc.study.spec import StudySpec
from hpc.workloads import WORKLOADS

INTERRUPTED = 130
BAD_INPUT = UserError.exit_code
NOT_VERIFIED = VerificationError.exit_code
# Exit codes after which the next point would fare no better, or must not run at all.
STOP_CODES = (INTERRUPTED, BAD_INPUT, EXIT_TERMINATED, NoSpace.exit_code)


def point_run_argv(spec: StudySpec, point: Point, out: Path) -> list[str]:
    """The ``hpc run`` arguments of one point of a built-in workload's study."""
    cls = WORKLOADS[spec.workload]
    argv = ["run", spec.workload, "--backend", spec.backend, "--repeats", str(spec.repeats),
            "--warmup", str(spec.warmup), "--out", str(out), "--quiet"]
    for param in cls.params:
        value = point.params[param.name]
        # repr() gives floats back exactly; strings go as they are (no shell in between).
        argv += [f"--{param.option}", repr(value) if isinstance(value, float) else str(value)]
    return argv


def run_points_locally(spec: StudySpec, points: list[Point], out: Path) -> list[str]:
    """Run ``points`` in order; returns a message per point that failed.

    A point whose result did not verify is recorded (the analysis leaves it out) and the
    study goes on; so does one whose job failed, since the other points stay useful.
    Ctrl-C, or bad input that every point would repeat, stops the study; the points
    already finished are in ``out`` either way.
    """
    progress = StudyProgress([p.work_per_rank * (spec.repeats + spec.warmup) for p in points])
    failures = []
    for point in points:
        label = f"{spec.workload or 'command'} {point.describe(size_name(spec))}"
        progress.starting(label)
        start = time.monotonic()
        if spec.workload is None:
            try:
                best = run_command_point(spec, point, out)
                outcome = f"ok, best {best:.4g} s"
            except PointFailed as exc:
                outcome = "FAILED"
                failures.append(f"{label}: {exc}")
        else:
            code = launch_local(point.ranks, point_run_argv(spec, point, out),
                                timeout=spec.timeout)
            if code in STOP_CODES:
                progress.finished_point(time.monotonic() - start, "stopped")
                failures.append(f"{label}: stopped (exit {code}); later points not run")
                break
            outcome = {0: "ok", NOT_VERIFIED: "recorded, but its result did NOT verify"}.get(
                code, f"FAILED (exit {code})")
            if code != 0:
                failures.append(f"{label}: {outcome}")
        progress.finished_point(time.monotonic() - start, outcome)
    if failures:
        print("hpc: points that failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return failures
