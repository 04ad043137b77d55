"""``hpc show``: a table of the runs recorded in HDF5 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hpc.records import read_runs

COLUMNS = ("run", "workload", "backend", "ranks", "size", "best s", "median s", "comm %",
           "verified")


def run_row(path: Path, run: dict) -> tuple[str, ...]:
    timings = np.asarray(run["timings"])  # [repeat, rank, phase]
    per_repeat = timings[:, :, 0].max(axis=1)
    phases = run["phases"]
    comm_share = ""
    if "communication" in phases:
        comm = timings[:, :, phases.index("communication")].mean()
        comm_share = f"{100 * comm / timings[:, :, 0].mean():.1f}"
    return (f"{path.name}:{run['group'].rsplit('/', 1)[-1]}", run["workload"], run["backend"],
            str(run["ranks"]), f"{run['size_parameter']}={run['size']}",
            f"{per_repeat.min():.4f}", f"{np.median(per_repeat):.4f}", comm_share,
            "yes" if run["verified"] else "NO")


def format_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = COLUMNS) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def cmd_show(files: list[Path]) -> int:
    rows = [run_row(path, run) for path in files for run in read_runs(path)]
    print(format_table(rows))
    return 0
