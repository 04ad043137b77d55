"""The study file: the run records of every point plus what the study was.

A study file is a run-record file (docs/SCHEMA.md) whose root also carries the study:
``study_name``, ``study_kind`` and ``study_spec`` (JSON: everything that decides which
points run and how), and after analysis ``analysis`` (JSON, see hpc.scaling). Points
are appended one run at a time with the records' atomic append, so a study killed at
any moment keeps every point it finished, and a rerun skips them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpc.errors import UserError
from hpc.records import edit_file, open_for_reading, read_runs
from hpc.study.plan import Point
from hpc.study.spec import StudySpec

COMMAND_WORKLOAD = "command"  # the ``workload`` attribute of an external command's runs


def open_study_file(path: Path, spec: StudySpec, restart: bool = False) -> None:
    """Create the study file, or check that an existing one belongs to this spec."""
    if path.exists() and h5py.is_hdf5(path):
        stored = _root_text(path, "study_spec")
        if stored is not None and _same_spec(stored, spec):
            return  # this study's file already; an edit would copy the whole file for nothing
        if stored is not None:
            if not restart:
                raise UserError(
                    f"{path} holds a study run from a different spec (its ladder, sizes, "
                    "repeats or parameters differ), so its points cannot be reused. Give "
                    "--out NEW.h5 for a separate study, or --restart to move the old file "
                    "aside and start afresh.")
            aside = path.with_name(f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
            path.rename(aside)
            print(f"hpc: moved the old study file to {aside}")
    with edit_file(path) as f:
        f.attrs["study_name"] = spec.name
        f.attrs["study_kind"] = spec.kind
        f.attrs["study_spec"] = spec.to_json()


def _same_spec(stored: str, spec: StudySpec) -> bool:
    try:
        return json.loads(stored) == json.loads(spec.to_json())
    except ValueError:  # a damaged study_spec: a different study, as far as reuse goes
        return False


def _same_params(run_params: dict[str, Any], point_params: dict[str, Any]) -> bool:
    # Parameters went through JSON: compare as JSON so 1 and 1.0 don't split a point.
    return json.dumps(run_params, sort_keys=True) == json.dumps(point_params, sort_keys=True)


def _matches(run: dict[str, Any], spec: StudySpec, point: Point) -> bool:
    if int(run["ranks"]) != point.ranks or int(run["size"]) != point.size:
        return False
    if spec.workload is None:
        return run["workload"] == COMMAND_WORKLOAD
    return (run["workload"] == spec.workload and run["backend"] == spec.backend
            and _same_params(run["parameters"], point.params))


@dataclass
class PointRuns:
    point: Point
    runs: list[dict[str, Any]]  # oldest first

    @property
    def latest_ok(self) -> dict[str, Any] | None:
        ok = [r for r in self.runs if r["status"] == "ok"]
        return ok[-1] if ok else None


def runs_by_point(path: Path, spec: StudySpec, points: list[Point]) -> list[PointRuns]:
    runs = read_runs(path) if path.exists() else []
    return [PointRuns(p, [r for r in runs if _matches(r, spec, p)]) for p in points]


def _root_text(path: Path, name: str) -> str | None:
    """A string attribute of the file's root, None when absent; read-only."""
    with open_for_reading(path) as f:
        try:
            value = f.attrs.get(name)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{path}: its {name} attribute cannot be read: {exc}") from None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is not None and not isinstance(value, str):
        raise UserError(f"{path}: its {name} attribute is not text")
    return value


def read_study_spec(path: Path) -> StudySpec:
    """The spec stored in a study file, or a clear error if it is not one."""
    stored = _root_text(path, "study_spec")
    if stored is None:
        raise UserError(f"{path} is not a study file (it has no study_spec); make one with "
                        "`hpc study run STUDY.toml`")
    return StudySpec.from_json(stored, source=str(path))


def run_times(run: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Seconds per repeat (the slowest rank's total) and per phase (the slowest rank's)."""
    timings = np.asarray(run["timings"], dtype=float)  # [repeat, rank, phase]
    phases = list(run["phases"])
    per_phase = {name: timings[:, :, i].max(axis=1) for i, name in enumerate(phases)
                 if name != "total"}
    return timings[:, :, phases.index("total")].max(axis=1), per_phase


def rank_phase(run: dict[str, Any], name: str) -> np.ndarray | None:
    """Seconds per repeat and rank [repeat, rank] of one phase; None if not recorded."""
    phases = list(run["phases"])
    if name not in phases:
        return None
    return np.asarray(run["timings"], dtype=float)[:, :, phases.index(name)]


def write_analysis(path: Path, analysis: dict[str, Any]) -> None:
    """Cache the analysis in the study file: only for ``hpc study run`` (the file is its
    output) or ``hpc study report --store-analysis``; reading commands never write."""
    with edit_file(path) as f:
        f.attrs["analysis"] = json.dumps(analysis, sort_keys=True)


def read_analysis(path: Path) -> dict[str, Any] | None:
    stored = _root_text(path, "analysis")
    return None if stored is None else json.loads(stored)
