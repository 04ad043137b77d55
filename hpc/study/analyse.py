"""From a study file to its analysis and report: the glue to hpc.scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpc.machine import conditions
from hpc.study.plan import plan_study, size_name
from hpc.study.spec import StudySpec
from hpc.study.store import (
    rank_phase,
    read_study_spec,
    run_times,
    runs_by_point,
    write_analysis,
)


def scaling_points(path: Path) -> tuple[StudySpec, list[Any], list[str]]:
    """The spec, one ScalingPoint per point that has a run, and notes on points without."""
    spec, points, notes, _ = _measured(path)
    return spec, points, notes


def _measured(path: Path) -> tuple[StudySpec, list[Any], list[str], dict[int, Any]]:
    """scaling_points, and for a node ladder where each point's ranks ran (hpc.scaling.
    Placement), by its rank count as the analysis counts them; {} for a ladder of ranks."""
    from hpc.scaling import Placement, ScalingPoint

    spec = read_study_spec(path)
    points, notes, placed = [], [], {}
    for group in runs_by_point(path, spec, plan_study(spec)):
        point = group.point
        if not group.runs:
            notes.append(f"point {point.describe(size_name(spec))} has not run yet")
            continue
        run = group.latest_ok or group.runs[-1]
        times, phases = run_times(run)
        machine = run.get("machine", {})  # absent before schema 1.2
        # A study over threads too scales over cores: ranks x threads.
        points.append(ScalingPoint(ranks=point.cores, size=point.size, times=times,
                                   phase_times=phases, ok=run["status"] == "ok",
                                   label=f"{path.name}:{run['group']}",
                                   rank_compute=rank_phase(run, "compute"),
                                   conditions=conditions(machine),
                                   cores=machine.get("cores_available")))
        hosts = run.get("provenance", {}).get("hostnames")
        if spec.nodes and hosts:  # the recorded hosts, not the nodes the study asked for
            placed[point.cores] = Placement.from_hosts(list(hosts))
    return spec, points, notes, placed


def report_meta(spec: StudySpec, path: Path, notes: list[str]) -> dict[str, str]:
    """What the report says about the study besides the numbers."""
    from hpc.records import read_runs

    runs = read_runs(path)
    first = runs[0]["provenance"] if runs else {}
    rule = (f"{size_name(spec)} fixed" if spec.kind == "strong" else
            f"{size_name(spec)} grown with the ranks so that work per rank stays constant")
    meta = {
        "study": spec.name,
        "subject": spec.subject,
        "backend": spec.backend if spec.workload else "external",
        "kind": spec.kind,
        "size rule": rule,
        "ranks": ", ".join(map(str, spec.ranks)),
        "threads per rank": ", ".join(map(str, spec.threads)) if spec.threads != (1,) else "",
        "repeats": f"{spec.repeats} timed + {spec.warmup} warm-up per point",
        "study file": str(path),
        "host": ", ".join(sorted(set(first.get("hostnames", [])))),
        "MPI": (str(first.get("mpi_library_version", "")).splitlines() or [""])[0],
        "git": f"{first.get('git_commit', '')}{' (dirty)' if first.get('git_dirty') else ''}",
        "first run": runs[0]["start_utc"] if runs else "",
        "last run": runs[-1]["end_utc"] if runs else "",
    }
    if notes:
        meta["missing points"] = "; ".join(notes)
    return {k: v for k, v in meta.items() if v}


def analyse_study_file(path: Path, store: bool = False, include_oversubscribed: bool = False
                       ) -> tuple[StudySpec, Any, dict[str, str], dict[int, Any]]:
    """Analyse a study file; returns (spec, analysis, meta, placements: where a node
    ladder's points ran, see ``_measured``). The file is only read, unless ``store``
    caches the analysis in it (for the study's own run, or when asked).

    Points measured oversubscribed or contended are kept out of the fits unless
    ``include_oversubscribed``."""
    from hpc.scaling import analyse

    spec, points, notes, placed = _measured(path)
    analysis = analyse(spec.kind, points, include_flagged=include_oversubscribed)
    if store:
        write_analysis(path, analysis.to_dict())
    meta = report_meta(spec, path, notes)
    moved = [f"{p.ranks} ranks asked for {p.nodes} node{'s' if p.nodes > 1 else ''}, ran "
             f"on {placed[p.cores].nodes}" for p in plan_study(spec)
             if p.cores in placed and placed[p.cores].nodes != p.nodes]
    if moved:  # e.g. srun spread a small point over a larger shared allocation
        meta["nodes not as asked"] = "; ".join(moved)
    return spec, analysis, meta, placed
