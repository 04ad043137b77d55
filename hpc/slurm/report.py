"""Tell the user about tracked jobs: state tables, progress while waiting, exit codes."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from hpc.errors import FAILED, TIMED_OUT
from hpc.slurm.commands import SlurmError, run_slurm
from hpc.slurm.jobdir import log_files, read_info, write_info
from hpc.slurm.states import JobState, Tracked
from hpc.slurm.tracker import Tracker

# Exit codes of hpc wait / hpc submit --wait: 0 every job COMPLETED; a failed job's own
# exit code (3: its result did not verify); 124 its time limit (as hpc run --timeout);
# 1 anything else (cancelled, preempted, node failure, out of memory, outcome unknown).


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def exit_code(jobs: Iterable[Tracked]) -> int:
    """One exit code for the outcome of every job (the worst one wins)."""
    codes = [0]
    for job in jobs:
        if job.state is JobState.COMPLETED:
            continue
        if job.state is JobState.TIMEOUT:
            codes.append(TIMED_OUT)
        elif job.state is JobState.FAILED and job.row is not None and job.row.return_code:
            codes.append(job.row.return_code)
        else:
            codes.append(FAILED)
    return max(codes, key=lambda c: (c != 0, c == 1, c))


def describe(job: Tracked) -> str:
    row = job.row
    parts = [job.state.value]
    if row is not None and row.state_text and row.state_text != job.state.value:
        parts.append(f"({row.state_text})")
    if row is not None and row.exit_code and job.state.terminal:
        parts.append(f"exit={row.exit_code}")
    if job.restarts:
        parts.append(f"requeued={job.restarts}")
    if job.note:
        parts.append(f"- {job.note}")
    return " ".join(parts)


def table(tracker: Tracker, folders: dict[str, Path | None]) -> str:
    """One line per job or array task: id, state, exit code, elapsed, nodes, folder."""
    header = f"{'JOB':<14} {'STATE':<14} {'EXIT':<6} {'ELAPSED':<10} {'NODES/REASON':<16} FOLDER"
    lines = [header]
    for key, job in sorted(tracker.jobs.items(), key=lambda kv: _sort_key(kv[0])):
        row = job.row
        folder = folders.get(key.split("_", 1)[0])
        state = job.state.value + (f" (requeued {job.restarts}x)" if job.restarts else "")
        lines.append(f"{key:<14} {state:<14} {row.exit_code if row else '':<6} "
                     f"{row.elapsed if row else '':<10} {row.nodes if row else '':<16} "
                     f"{folder or '-'}")
        if job.note:
            lines.append(f"{'':<14} note: {job.note}")
    return "\n".join(lines)


def as_json(tracker: Tracker, folders: dict[str, Path | None]) -> dict[str, dict]:
    """``hpc status --json``: per job or array task, its state and what else is known."""
    out = {}
    for key, job in tracker.jobs.items():
        folder = folders.get(key.split("_", 1)[0])
        out[key] = {"state": job.state.value, "state_text": job.row.state_text if job.row
                    else None, "exit_code": job.row.exit_code if job.row else None,
                    "elapsed": job.row.elapsed if job.row else None,
                    "restarts": job.restarts, "note": job.note or None,
                    "folder": str(folder) if folder else None}
    return out


def _sort_key(job_id: str) -> tuple[int, int]:
    base, _, task = job_id.partition("_")
    return (int(base) if base.isdigit() else 0, int(task) if task.isdigit() else -1)


def remember_states(tracker: Tracker, folders: dict[str, Path | None]) -> None:
    """Keep the last state seen in each job folder's job.json (for when Slurm forgets)."""
    for base, folder in folders.items():
        if folder is None:
            continue
        states = {k: t.state.value for k, t in tracker.jobs.items()
                  if k.split("_", 1)[0] == base}
        if states:
            info = read_info(folder)
            info["last_state"] = states
            write_info(folder, info)


def wait_for(tracker: Tracker, timeout: float | None) -> bool:
    """Wait with a line of progress per state change; False on timeout."""
    started = time.monotonic()

    def on_change(key: str, before: JobState, now: Tracked) -> None:
        say(f"hpc: job {key}: {before.value} -> {describe(now)} "
            f"({time.monotonic() - started:.0f} s)")

    return tracker.wait(timeout=timeout, on_change=on_change)


# A line that says something went wrong. The failing rank's own words (hpc: error, rank
# failed, a Python traceback) are what the user needs; srun's and slurmstepd's follow-up
# complaints ("task 0: Killed") are shown only when a log has nothing else.
_ERROR_LINE = re.compile(r"error|failed|traceback|abort|killed|exception", re.IGNORECASE)
_LAUNCHER_LINE = re.compile(r"^(srun|slurmstepd\S*|mpiexec|\[mpiexec@\S+\]):")
MAX_LOGS_SHOWN = 4


def first_error_lines(text: str, lines: int = 20) -> tuple[int, list[str]]:
    """``lines`` lines from the first line that reports an error, preferring the program's
    own over the launcher's; with a rank: 0 (the program's), 1 (the launcher's) or 2 (no
    error line: the last ``lines`` lines)."""
    all_lines = text.splitlines()
    errors = [i for i, line in enumerate(all_lines) if _ERROR_LINE.search(line)]
    own = [i for i in errors if not _LAUNCHER_LINE.match(all_lines[i])]
    if own:
        return 0, all_lines[own[0]:own[0] + lines]
    if errors:
        return 1, all_lines[errors[0]:errors[0] + lines]
    return 2, all_lines[-lines:]


def show_failure_logs(folder: Path | None, job_id: str, lines: int = 20) -> None:
    """The first error lines of a failed job's error logs (one per rank with submitit),
    the failing program's own first, so the reason is on screen."""
    if folder is None:
        return
    excerpts = []
    for path in log_files(folder, job_id):
        if path.suffix != ".err" or not path.stat().st_size:
            continue
        rank, excerpt = first_error_lines(path.read_text(errors="replace"), lines)
        excerpts.append((rank, path, excerpt))
    for rank, path, excerpt in sorted(excerpts, key=lambda e: e[0])[:MAX_LOGS_SHOWN]:
        where = "its last lines" if rank == 2 else "from its first error line"
        say(f"==> {path} ({where}) <==\n" + "\n".join(excerpt))


def show_failures(tracker: Tracker, folders: dict[str, Path | None]) -> None:
    """``show_failure_logs`` for every job or array task that did not complete."""
    for key, job in sorted(tracker.jobs.items()):
        if job.state.terminal and exit_code([job]) != 0:
            say(f"hpc: job {key} ended {describe(job)}")
            show_failure_logs(folders.get(key.split("_", 1)[0]), key)


_NODE_FAILURE = re.compile(r"Node failure on (\S+)")


def failed_nodes(job_id: str, nodelist: str, folder: Path | None) -> list[str]:
    """The nodes whose failure ended a NODE_FAIL job: srun names them in the job's error
    log; else (the batch host itself failed) the job's nodes Slurm now holds down or not
    responding, which stops being true once the node is back."""
    named: dict[str, None] = {}
    for path in log_files(folder, job_id) if folder is not None else []:
        for node in _NODE_FAILURE.findall(path.read_text(errors="replace")):
            named[node] = None
    if named or not nodelist:
        return list(named)
    try:
        proc = run_slurm(["sinfo", "--noheader", "--Node", f"--nodes={nodelist}",
                          "--format=%N|%T"], timeout=30)
    except SlurmError:
        return []
    down = ("down", "drain", "fail", "unknown", "no_respond")
    for line in proc.stdout.splitlines():
        node, _, state = line.partition("|")
        if state.endswith("*") or state.startswith(down):
            named[node] = None
    return list(named)


def explain_node_failures(tracker: Tracker, folders: dict[str, Path | None]) -> None:
    """One line per NODE_FAIL job naming the node that failed."""
    for key, job in tracker.jobs.items():
        if job.state is not JobState.NODE_FAIL:
            continue
        nodes = failed_nodes(key, job.row.nodes if job.row else "",
                             folders.get(key.split("_", 1)[0]))
        say(f"hpc: job {key} ended NODE_FAIL: node failure on "
            f"{', '.join(nodes) if nodes else 'a node Slurm no longer reports down'} "
            f"(job nodes {job.row.nodes if job.row else '?'})")
