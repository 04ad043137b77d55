"""Run a study with its launcher, resuming from what the study file already holds."""

from __future__ import annotations

import sys
from pathlib import Path

from hpc.atomic import folder_lock
from hpc.errors import UserError
from hpc.limits import HERE, available_memory, check_memory
from hpc.study.plan import Point, size_name
from hpc.study.spec import StudySpec
from hpc.study.store import open_study_file, runs_by_point
from hpc.workloads import WORKLOADS


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


def check_points_fit(spec: StudySpec, points: list[Point]) -> None:
    """Refuse, before the study file exists, a point whose memory model does not fit: this
    machine's memory (local launcher) or the allocation's [resources] mem (Slurm)."""
    if spec.workload is None:
        return  # an external command declares no memory model
    cls = WORKLOADS[spec.workload]
    if spec.launcher == "local":
        memory, where = available_memory(), HERE
        nodes_for = {p.ranks: 1 for p in points}
    else:
        from hpc.study.slurm_launcher import allocation_memory

        memory, where, nodes_for = allocation_memory(spec, points)
        if memory is None:
            return  # no mem asked: the site's default, unknown here
    for point in points:
        try:
            check_memory(cls, point.params, point.ranks, nodes_for[point.ranks], memory,
                         where)
        except UserError as exc:
            raise UserError(f"{spec.source}: the point with {point.ranks} ranks cannot run: "
                            f"{exc}") from None


def run_study(spec: StudySpec, points: list[Point], out: Path, restart: bool = False, *,
              wait: bool = False, jobs_dir: Path | None = None) -> int:
    """Run the study's pending points; 0 when every point is recorded and verified (with
    the slurm launcher: when the jobs were submitted, or with ``wait`` when they ended)."""
    open_study_file(out, spec, restart=restart)
    todo = pending_points(spec, points, out)
    if not todo:
        print(f"every point of {spec.name} is already in {out}", file=sys.stderr)
        return 0
    if spec.launcher == "local":
        from hpc.machine import available_cores
        from hpc.study.local import run_points_locally

        cores = available_cores()[1]
        over = [p.ranks for p in todo if p.ranks > cores]
        if over:
            print(f"note: this run may use {cores:g} cores; the points with "
                  f"{', '.join(map(str, over))} ranks are oversubscribed: the analysis "
                  "leaves them out of the fits and says so", file=sys.stderr)

        failures = run_points_locally(spec, todo, out)
        return 1 if failures else 0
    if spec.launcher == "submitit":
        from hpc.study.slurm_launcher import run_study_submitit

        return 1 if run_study_submitit(spec, todo, out, jobs_dir=jobs_dir) else 0
    from hpc.study.slurm_launcher import submit_study_array

    return submit_study_array(spec, todo, out, jobs_dir=jobs_dir, wait=wait)
