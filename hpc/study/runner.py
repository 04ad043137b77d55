"""Run a study's pending points with its launcher (hpc.launchers), resuming from what the
study file already holds.

Each point becomes one ``Run``: a built-in workload's ``hpc run`` on the point's ranks,
or, for a [command] study, ``hpc study point FILE INDEX``, a driver that runs the
program's warm-ups and repeats and starts its ranks with the launcher's ``{mpirun}``.
A sequential launcher (local) runs the points one by one with progress; the others
start them all. The slurm launcher gives every point exactly its own allocation (one job
array per allocation shape) and adds a job that writes the report after all of them;
with the others the study waits for every point and then reports itself.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hpc.atomic import folder_lock
from hpc.errors import (
    BAD_INPUT,
    INTERRUPTED,
    NO_SPACE,
    NOT_VERIFIED,
    TERMINATED,
    TIMED_OUT,
    UserError,
)
from hpc.runs import Run, RunSpec
from hpc.study.allocation import load_study_profile, point_resources
from hpc.study.plan import Point, size_name
from hpc.study.progress import StudyProgress
from hpc.study.spec import StudySpec
from hpc.study.store import open_study_file, runs_by_point, supersede

REPORT_TIME = "00:10:00"
DRIVER_GRACE = 60.0  # seconds a point's driver may take beyond the study's timeout
# Exit codes after which the next point would fare no better, or must not run at all.
STOP_CODES = (INTERRUPTED, BAD_INPUT, TERMINATED, NO_SPACE)


def pending_points(spec: StudySpec, points: list[Point], out: Path) -> list[Point]:
    """The points without a verified record in ``out``; says which are skipped."""
    # Under the records' folder lock: a writer that passed its last check (hpc.lifeline)
    # has finished its append before we read.
    with folder_lock(out.parent):
        done = [g.point for g in runs_by_point(out, spec, points) if g.latest_ok is not None]
    if done:
        names = ", ".join(p.describe(size_name(spec)) for p in done)
        print(f"resuming {out}: {len(done)} of {len(points)} points already recorded "
              f"({names})", file=sys.stderr)
    return [p for p in points if p not in done]


def point_run(spec: StudySpec, point: Point, out: Path) -> Run:
    """The one description of a point, whatever launcher runs it."""
    name = f"{spec.name}-{point.ranks}" + (f"x{point.threads}" if point.threads > 1 else "")
    if point.nodes is not None:
        name = f"{spec.name}-{point.nodes}n{point.ranks}"
    if spec.workload is None:
        # The driver keeps the point's timeout itself; this is the backstop (its patterns
        # may take up to REGEX_TIMEOUT beyond it).
        return Run(name, point.ranks, driver=("study", "point", str(out), str(point.index)),
                   threads=point.threads, timeout=spec.timeout + DRIVER_GRACE,
                   nodes=point.nodes)
    run = RunSpec(workload=spec.workload, backend=spec.backend, params=point.params,
                  repeats=spec.repeats, warmup=spec.warmup, out=out, quiet=True)
    return Run(name, point.ranks, spec=run, threads=spec.threads[0], timeout=spec.timeout,
               nodes=point.nodes)


def _study_options(spec: StudySpec, launcher: Any, out: Path) -> Any:
    from hpc.launchers import NO_OPTIONS, JobOptions

    if "after_all" not in launcher.supports:
        return NO_OPTIONS
    analyse = ("--include-oversubscribed",) if spec.include_oversubscribed else ()
    # The study file is this job's output: it keeps the analysis (--store-analysis).
    report = Run(f"{spec.name}-report", 1,
                 driver=("study", "report", str(out), "--store-analysis", *analyse),
                 info={"time": REPORT_TIME})
    return JobOptions(throttle=spec.array_throttle, after_all=report)


def _check_runs(spec: StudySpec, launcher_class: Any, runs: list[Any]) -> None:
    """The launcher's refusal of a point, naming the study file it came from."""
    try:
        launcher_class.check_runs(runs)
    except UserError as exc:
        raise UserError(f"{spec.source}: {exc}") from None


def describe_study(spec: StudySpec, points: list[Point], out: Path) -> str:
    """--dry-run: each point's exact program line (a [command] study's, with {mpirun}
    filled in as the launcher will), then what the launcher would submit or run."""
    from hpc.launchers import get_launcher, mpirun_words

    out = out.resolve()
    launcher_class = get_launcher(spec.launcher)
    runs = [point_run(spec, p, out) for p in points]
    _check_runs(spec, launcher_class, runs)
    if launcher_class.sequential:  # this machine: no profile, no Slurm resources
        launcher, resources = launcher_class(), [None] * len(points)
    else:
        profile = load_study_profile(spec)
        launcher = launcher_class(profile, None)
        resources = point_resources(spec, profile, points)
    lines = []
    if spec.command is not None:
        import shlex

        from hpc.study.external import command_argv

        for point, res in zip(points, resources, strict=True):
            opts = launcher.starter_options(res)
            starter = opts[opts.index("--starter") + 1]
            mpi = opts[opts.index("--mpi") + 1] if "--mpi" in opts else None
            mpirun = opts[opts.index("--mpirun") + 1] if "--mpirun" in opts else "mpirun"
            nodes = 1 if starter == "local" else min(res.nodes, point.ranks)
            words, _ = mpirun_words(starter, point.ranks, nodes, point.threads, mpi, mpirun)
            argv = command_argv(spec, point, 0, words, nodes)
            lines.append(f"point {point.index} runs (repeat 0): {shlex.join(argv)}")
    lines.append(f"launcher {launcher.name}:")
    lines.append(launcher.describe(runs, resources, _study_options(spec, launcher, out)))
    return "\n".join(lines)


def run_study(spec: StudySpec, points: list[Point], out: Path, restart: bool = False, *,
              rerun: list[Point] | None = None, wait: bool = False,
              jobs_dir: Path | None = None,
              wait_timeout: float | None = None) -> int:
    """Run the study's pending points; 0 when every point is recorded and verified (with
    the slurm launcher: when the jobs were submitted, or with ``wait`` when they ended)."""
    from hpc.launchers import get_launcher

    out = out.resolve()
    launcher_class = get_launcher(spec.launcher)
    _check_runs(spec, launcher_class, [point_run(spec, p, out) for p in points])
    open_study_file(out, spec, restart=restart)
    if rerun:
        marked = supersede(out, spec, rerun)
        print(f"rerunning {len(rerun)} point(s); {marked} earlier record(s) kept, marked "
              "superseded", file=sys.stderr)
    todo = pending_points(spec, points, out)
    if not todo:
        print(f"every point of {spec.name} is already in {out}", file=sys.stderr)
        return 0
    runs = [point_run(spec, p, out) for p in todo]
    if spec.command is not None:
        _warn_mpi(spec, launcher_class, todo)
    if launcher_class.sequential:
        failures, stopped = run_one_by_one(spec, todo, runs)
        # A full disk or a stop request is what the study ends with; else 1 for failures.
        return stopped if stopped in (NO_SPACE, TERMINATED, INTERRUPTED) else int(bool(failures))
    profile = load_study_profile(spec)
    launcher = launcher_class(profile, jobs_dir)
    resources = point_resources(spec, profile, todo)
    if "after_all" in launcher.supports:
        launched = launcher.start(runs, resources, _study_options(spec, launcher, out))
        *points_jobs, report = launched
        ids = list(dict.fromkeys(j.extra.get("array_id", j.job_id) for j in points_jobs))
        arrays = "; ".join(
            f"{array_id}: " + ", ".join(p.describe(size_name(spec)) for p, j
                                        in zip(todo, points_jobs, strict=True)
                                        if j.extra.get("array_id", j.job_id) == array_id)
            for array_id in ids)
        folders = " ".join(dict.fromkeys(str(j.folder) for j in points_jobs))
        print(f"submitted study {spec.name}: {len(ids)} array job(s), one per allocation "
              f"shape ({len(todo)} points; {arrays}), report job {report.job_id} after "
              f"them\n  study file {out}\n  job folders {folders} {report.folder}\n"
              f"  follow with: hpc status {' '.join(ids)} {report.job_id}", flush=True)
        if not wait:
            return 0
        return _wait_all(launcher, launched, wait_timeout, out)
    launched = launcher.start(runs, resources)
    for point, item in zip(todo, launched, strict=True):
        where = f"job {item.job_id}" if item.job_id else "on this machine"
        print(f"point {point.describe(size_name(spec))}: {launcher.name} {where} "
              f"(job folder {item.folder})", file=sys.stderr, flush=True)
    # A job that cannot start (a request the partition refuses) would wait forever.
    limit = wait_timeout if wait_timeout is not None else spec.timeout * len(todo)
    finished = launcher.wait(launched, limit)
    failures = []
    for point, item in zip(todo, launched, strict=True):
        label = point.describe(size_name(spec))
        if not finished and item.exit_code == TIMED_OUT:
            failures.append(f"{label}: not finished within {limit:g} s; job cancelled")
        elif item.exit_code != 0:
            why = item.extra.get("error") or f"exit {item.exit_code}"
            failures.append(f"{label}: {why} (job folder {item.folder})")
    if failures:
        print("hpc: points that failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if failures else 0


def _wait_all(launcher: Any, launched: list[Any], timeout: float | None, out: Path) -> int:
    from hpc.slurm.report import describe, explain_node_failures, show_failures

    if not launcher.wait(launched, timeout):
        ids = " ".join(sorted({j.extra.get("array_id", j.job_id) for j in launched}))
        print(f"hpc: error: the study's jobs still run after {timeout:g} s; they go on "
              f"(hpc status {ids})", file=sys.stderr)
        return TIMED_OUT
    for item in launched:
        print(f"job {item.job_id}: {describe(item.handle)}")
    show_failures(launched[0].extra["tracker"], launched[0].extra["folders"])
    explain_node_failures(launched[0].extra["tracker"], launched[0].extra["folders"])
    if out.with_suffix(".html").exists():
        print(f"report: {out.with_suffix('.html')}")
    return max((i.exit_code for i in launched), key=lambda c: (c != 0, c == 1, c))


def _warn_mpi(spec: StudySpec, launcher_class: Any, points: list[Point]) -> None:
    """Before anything runs: does the program link the MPI that will start its ranks?"""
    from hpc.study.application import mpi_warning_before

    if launcher_class.sequential:
        options = launcher_class().starter_options(None)
    else:
        profile = load_study_profile(spec)
        launcher = launcher_class(profile, None)
        options = launcher.starter_options(point_resources(spec, profile, points)[0])
    warning = mpi_warning_before(spec, options)
    if warning:
        print(f"hpc: warning: {warning}", file=sys.stderr, flush=True)


def run_one_by_one(spec: StudySpec, points: list[Point],
                   runs: list[Run]) -> tuple[list[str], int | None]:
    """Run the points in order on this machine; returns a message per point that failed,
    and the exit code that stopped the study early (None when every point ran).

    A point whose result did not verify is recorded (the analysis leaves it out) and the
    study goes on; so does one whose run failed, since the other points stay useful.
    Ctrl-C, or bad input that every point would repeat, stops the study; the points
    already finished are in the study file either way.
    """
    from hpc.launchers.local import LocalLauncher
    from hpc.machine import available_cores

    cores = available_cores()[1]
    over = [p.cores for p in points if p.cores > cores]
    if over:
        print(f"note: this run may use {cores:g} cores; the points needing "
              f"{', '.join(map(str, over))} cores are oversubscribed: the analysis "
              "leaves them out of the fits and says so", file=sys.stderr)
    progress = StudyProgress([p.work_per_rank * (spec.repeats + spec.warmup) for p in points])
    failures, stopped = [], None
    for point, run in zip(points, runs, strict=True):
        label = f"{spec.workload or 'command'} {point.describe(size_name(spec))}"
        progress.starting(label)
        start = time.monotonic()
        code = LocalLauncher.run_one(run)
        if code in STOP_CODES:
            progress.finished_point(time.monotonic() - start, "stopped")
            failures.append(f"{label}: stopped (exit {code}); later points not run")
            stopped = code
            break
        outcome = {0: "ok", NOT_VERIFIED: "recorded, but its result did NOT verify"}.get(
            code, f"FAILED (exit {code})")
        if code != 0:
            failures.append(f"{label}: {outcome}")
        progress.finished_point(time.monotonic() - start, outcome)
    if failures:
        print("hpc: points that failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return failures, stopped
