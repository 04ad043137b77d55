"""``hpc submit``, ``hpc status``, ``hpc wait``, ``hpc cancel`` and ``hpc logs``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from hpc.errors import UserError
from hpc.limits import seconds
from hpc.workloads import WORKLOADS

ENGINES = ("sbatch", "submitit", "submitit-local")

# Resource options of hpc submit: (option, type, metavar, help). Each sets the Resources
# field of the same name (dashes as underscores) over the profile's default.
_RESOURCE_OPTIONS = [
    ("--nodes", int, "N", "nodes to allocate"),
    ("--ntasks-per-node", int, "T", "MPI ranks per node"),
    ("--cpus-per-task", int, "C", "cores per rank"),
    ("--gpus-per-node", int, "G", "GPUs per node"),
    ("--mem", str, "MEM", "memory per node, e.g. 4G"),
    ("--time", str, "HH:MM:SS", "time limit (also MM, D-HH:MM:SS, ...)"),
    ("--partition", str, "NAME", "partition (queue)"),
    ("--account", str, "NAME", "account to charge"),
    ("--qos", str, "NAME", "quality of service"),
    ("--constraint", str, "FEATURES", "node features, e.g. gpu&a100"),
    ("--job-name", str, "NAME", "job name (default: the workload's name)"),
    ("--launcher", str, "srun|mpirun", "what starts the ranks in the job"),
    ("--mpi", str, "PLUGIN", "srun --mpi plugin: pmix, pmi2, ... or auto (matches the "
     "local MPI)"),
]


def _jobs_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs-dir", type=Path, metavar="DIR",
                   help="where job folders are (default: $HPC_JOBS_DIR or ./hpc-jobs)")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    from hpc.cli import add_workload_options

    submit = commands.add_parser(
        "submit", help="submit a workload to Slurm (sbatch or submitit)",
        description="Render a job script for a workload into its own job folder and submit "
        "it with sbatch (or run it through submitit). Resource options override the "
        "profile's defaults. `hpc submit NAME --help` lists a workload's options.")
    names = submit.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    for cls in WORKLOADS.values():
        p = names.add_parser(cls.name, help=cls.summary, description=cls.summary)
        add_workload_options(p, cls, local=False)
        res = p.add_argument_group("resources (override the profile)")
        for option, kind, metavar, text in _RESOURCE_OPTIONS:
            res.add_argument(option, type=kind, metavar=metavar, help=text)
        res.add_argument("--module", action="append", metavar="NAME", dest="modules",
                         help="module to load (repeatable; adds to the profile's)")
        res.add_argument("--env", action="append", metavar="NAME=VALUE", dest="env",
                         help="environment variable for the job (repeatable)")
        res.add_argument("--directive", action="append", metavar="=--OPTION[=VALUE]",
                         dest="directives", help="extra #SBATCH option, written with an "
                         "equals sign: --directive=--exclusive (repeatable)")
        how = p.add_argument_group("submission")
        how.add_argument("--profile", metavar="SITE|FILE.toml",
                         help="site profile (default: $HPC_PROFILE or 'default'); see "
                         "slurm/profiles/")
        how.add_argument("--engine", choices=ENGINES, default="sbatch",
                         help="sbatch: a rendered job script (default); submitit: a Python "
                         "function on every rank (runs locally when Slurm is absent); "
                         "submitit-local: that, on this machine")
        how.add_argument("--dependency", metavar="TYPE:ID[:ID]",
                         help="start after other jobs, e.g. afterok:12:13")
        if cls.checkpoint_every:
            how.add_argument("--checkpoint-signal", type=int, metavar="SECONDS",
                             help="with --checkpoint: Slurm signals the ranks this long before "
                             "the time limit; they save, and the job is requeued and resumes "
                             "(default: 60, or the limit less 10 s if shorter)")
        how.add_argument("--hold", action="store_true", help="submit held (release with "
                         "scontrol release ID)")
        how.add_argument("--dry-run", action="store_true",
                         help="print the job script and submit nothing")
        how.add_argument("--wait", action="store_true",
                         help="wait for the job to end; exit with its outcome")
        how.add_argument("--wait-timeout", type=seconds, metavar="SECONDS",
                         help="with --wait: give up waiting after this long (exit 124)")
        how.add_argument("--parsable", action="store_true",
                         help="print only the job id (for scripts)")
        _jobs_dir_option(how)
        p.set_defaults(handler=_cmd_submit, np=None, timeout=None)

    status = commands.add_parser("status", help="state of submitted jobs (sacct, or squeue)",
                                 description="State of jobs: the ones named (job ids or job "
                                 "folders), else every job folder under the jobs dir.")
    status.add_argument("jobs", nargs="*", metavar="JOB", help="job id (123, 123_4) or folder")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    _jobs_dir_option(status)
    status.set_defaults(handler=_cmd_status)

    wait = commands.add_parser("wait", help="wait until jobs end; exit with their outcome",
                               description="Poll Slurm (one call for all jobs, backing off) "
                               "until every job has ended. Exit 0 when all COMPLETED, a "
                               "failed job's exit code, 124 on a time limit, else 1.")
    wait.add_argument("jobs", nargs="+", metavar="JOB", help="job id (123, 123_4) or folder")
    wait.add_argument("--timeout", type=seconds, metavar="SECONDS",
                      help="give up after this long (exit 124; the jobs keep running)")
    _jobs_dir_option(wait)
    wait.set_defaults(handler=_cmd_wait)

    cancel = commands.add_parser("cancel", help="cancel jobs (scancel)")
    cancel.add_argument("jobs", nargs="+", metavar="JOB", help="job id (123, 123_4) or folder")
    _jobs_dir_option(cancel)
    cancel.set_defaults(handler=_cmd_cancel)

    logs = commands.add_parser("logs", help="print a job's stdout and stderr files")
    logs.add_argument("job", metavar="JOB", help="job id (123, 123_4) or folder")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each")
    _jobs_dir_option(logs)
    logs.set_defaults(handler=_cmd_logs)


# -- submit ------------------------------------------------------------------------------
def _resources(args: argparse.Namespace, profile):
    values = {option[2:].replace("-", "_"): getattr(args, option[2:].replace("-", "_"))
              for option, *_ in _RESOURCE_OPTIONS}
    values["job_name"] = values["job_name"] or args.workload
    if args.modules:
        values["modules"] = [*profile.resources.modules, *args.modules]
    if args.env:
        env = dict(profile.resources.environment)
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"--env {item!r}: give NAME=VALUE")
            env[name] = value
        values["environment"] = env
    if args.directives:
        values["extra_directives"] = [*profile.resources.extra_directives, *args.directives]
    return profile.resources.updated(values)


def _cmd_submit(args: argparse.Namespace, argv: list[str]) -> int:
    import os

    from hpc.cli import run_spec_from_args
    from hpc.limits import slurm_mem_bytes
    from hpc.runner import validate
    from hpc.slurm.jobdir import jobs_root
    from hpc.slurm.profiles import load_profile
    from hpc.slurm.sbatch import Dependency

    profile = load_profile(args.profile or os.environ.get("HPC_PROFILE"))
    resources = _resources(args, profile)
    spec = run_spec_from_args(args)
    spec.out = spec.out.expanduser().resolve()
    if spec.checkpoint is not None:
        spec.checkpoint = spec.checkpoint.expanduser().resolve()
    # Bad workload input fails here, before Slurm; so does a size beyond the --mem asked.
    memory = slurm_mem_bytes(resources.mem) if resources.mem else None
    validate(spec, resources.ntasks, resources.nodes, memory,
             f"per node with --mem {resources.mem}")
    dependency = Dependency.parse(args.dependency) if args.dependency else None
    command = shlex.join(["hpc", *argv])
    # The job inherits this environment (sbatch's default --export=ALL), so the record's
    # provenance says what the user typed rather than what each rank ran.
    os.environ["HPC_LAUNCH_COMMAND"] = command
    if args.engine == "sbatch":
        from hpc.slurm.submit_workload import submit_workload

        return submit_workload(spec, resources, profile, jobs_dir=jobs_root(args.jobs_dir),
                               command=command, dependency=dependency, hold=args.hold,
                               dry_run=args.dry_run, wait=args.wait,
                               wait_timeout=args.wait_timeout, parsable=args.parsable,
                               checkpoint_signal=_checkpoint_signal(args, resources))
    if args.dry_run or args.hold or dependency or spec.checkpoint is not None:
        raise UserError("--dry-run, --hold, --dependency and --checkpoint go with "
                        "--engine sbatch")
    from hpc.slurm.submit_workload import submit_workload_function

    return submit_workload_function(spec, resources, profile,
                                    jobs_dir=jobs_root(args.jobs_dir), command=command,
                                    local=args.engine == "submitit-local", wait=args.wait,
                                    wait_timeout=args.wait_timeout, parsable=args.parsable)


def _checkpoint_signal(args: argparse.Namespace, resources) -> int | None:
    given = getattr(args, "checkpoint_signal", None)
    if getattr(args, "checkpoint", None) is None:  # only heat2d and nbody checkpoint
        if given is not None:
            raise UserError("--checkpoint-signal needs --checkpoint FILE.h5")
        return None
    from hpc.slurm.render import CHECKPOINT_MARGIN

    return given if given is not None else max(1, min(60, resources.time_seconds -
                                                      CHECKPOINT_MARGIN))


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
    from hpc.slurm.report import (
        TIMEOUT_EXIT,
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
        return TIMEOUT_EXIT
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
