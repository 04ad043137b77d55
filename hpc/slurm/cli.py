"""``hpc status``, ``hpc wait``, ``hpc cancel`` and ``hpc logs``: every job that has a job
folder (hpc.slurm.jobdir), whichever command or launcher submitted it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hpc.errors import UserError
from hpc.limits import seconds


def jobs_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs-dir", type=Path, metavar="DIR",
                   help="where job folders are (default: $HPC_JOBS_DIR or ./hpc-jobs)")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="state of submitted jobs (sacct, or squeue)",
                                 description="State of jobs: the ones named (job ids or job "
                                 "folders), else every job folder under the jobs dir.")
    status.add_argument("jobs", nargs="*", metavar="JOB", help="job id (123, 123_4) or folder")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    jobs_dir_option(status)
    status.set_defaults(handler=_cmd_status)

    wait = commands.add_parser("wait", help="wait until jobs end; exit with their outcome",
                               description="Poll Slurm (one call for all jobs, backing off) "
                               "until every job has ended. Exit 0 when all COMPLETED, a "
                               "failed job's exit code, 124 on a time limit, else 1.")
    wait.add_argument("jobs", nargs="+", metavar="JOB", help="job id (123, 123_4) or folder")
    wait.add_argument("--timeout", type=seconds, metavar="SECONDS",
                      help="give up after this long (exit 124; the jobs keep running)")
    jobs_dir_option(wait)
    wait.set_defaults(handler=_cmd_wait)

    cancel = commands.add_parser("cancel", help="cancel jobs (scancel)")
    cancel.add_argument("jobs", nargs="+", metavar="JOB", help="job id (123, 123_4) or folder")
    jobs_dir_option(cancel)
    cancel.set_defaults(handler=_cmd_cancel)

    logs = commands.add_parser("logs", help="print a job's stdout and stderr files")
    logs.add_argument("job", metavar="JOB", help="job id (123, 123_4) or folder")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each")
    jobs_dir_option(logs)
    logs.set_defaults(handler=_cmd_logs)


# -- status, wait, cancel, logs ---------------------------------------------------------
def _tracked(jobs: list[str], jobs_dir: Path | None):
    """A Tracker for the named jobs (or every job folder), and each job's folder."""
    from hpc.slurm.jobdir import find_job, job_folders, jobs_root, read_info
    from hpc.slurm.tracker import Tracker

    root = jobs_root(jobs_dir)
    tracker, folders = Tracker(), {}
    if not jobs:
        jobs = [str(f) for f in job_folders(root) if read_info(f).get("job_id")]
        if not jobs:
            raise UserError(f"no submitted jobs under {root}; name job ids or folders")
    for arg in jobs:
        job_id, folder = find_job(arg, root)
        info = read_info(folder) if folder else {}
        whole = folder is not None and "_" not in job_id
        # A bare id with no folder was submitted at some unknown earlier time.
        tracker.add(job_id, submitted_at=info.get("submitted_at", 0.0),
                    array_size=info.get("array_size") if whole else None)
        folders[job_id.split("_", 1)[0]] = folder
    return tracker, folders


def _cmd_status(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.slurm.report import as_json, remember_states, table

    tracker, folders = _tracked(args.jobs, args.jobs_dir)
    tracker.poll()
    remember_states(tracker, folders)
    if args.json:
        print(json.dumps(as_json(tracker, folders), indent=2))
    else:
        print(table(tracker, folders))
    return 0


def _cmd_wait(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.errors import TIMED_OUT
    from hpc.slurm.report import (
        exit_code,
        explain_node_failures,
        remember_states,
        say,
        show_failures,
        table,
        wait_for,
    )

    tracker, folders = _tracked(args.jobs, args.jobs_dir)
    finished = wait_for(tracker, args.timeout)
    remember_states(tracker, folders)
    print(table(tracker, folders))
    show_failures(tracker, folders)  # with the failing rank's first error lines
    explain_node_failures(tracker, folders)
    if not finished:
        say(f"hpc: error: jobs still running after --timeout {args.timeout:g} s")
        return TIMED_OUT
    return exit_code(tracker.jobs.values())


def _cmd_cancel(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.slurm.jobdir import find_job, jobs_root
    from hpc.slurm.sbatch import scancel

    root = jobs_root(args.jobs_dir)
    ids = [find_job(arg, root)[0] for arg in args.jobs]
    scancel(ids)
    print(f"cancel requested for {' '.join(ids)}; `hpc wait {' '.join(ids)}` to see them end")
    return 0


def _cmd_logs(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.slurm.jobdir import find_job, jobs_root, log_files

    job_id, folder = find_job(args.job, jobs_root(args.jobs_dir))
    if folder is None:
        raise UserError(f"no job folder for job {job_id} under {jobs_root(args.jobs_dir)}; "
                        "give the job folder (or --jobs-dir)")
    paths = log_files(folder, job_id)
    if not paths:
        print(f"job {job_id} has written no log files yet in {folder}", file=sys.stderr)
        return 0
    for path in paths:
        lines = path.read_text(errors="replace").splitlines()
        if args.tail is not None:
            lines = lines[-args.tail:] if args.tail > 0 else []
        print(f"==> {path} <==")
        print("\n".join(lines))
    return 0
