"""``hpc submit WORKLOAD``: one workload run as a job of a launcher (slurm, submitit or
local), described by one ``Resources``, optionally waited for, ending with its record."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hpc.errors import TIMED_OUT, UserError
from hpc.limits import seconds
from hpc.runs import Run, RunSpec, add_run_options, run_spec_from_args
from hpc.slurm.cli import jobs_dir_option
from hpc.workloads import WORKLOADS

SUBMIT_LAUNCHERS = ("slurm", "submitit", "local")
# The spelling before "launcher" meant one thing only; each old word, and what it is now.
_OLD_ENGINES = {"sbatch": "--launcher slurm", "submitit": "--launcher submitit",
                "submitit-local": "--launcher submitit with HPC_SUBMITIT_ENGINE=local"}

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
    ("--starter", str, "srun|mpirun", "what starts the ranks inside the job"),
    ("--mpi", str, "PLUGIN", "srun --mpi plugin: pmix, pmi2, ... or auto (matches the "
     "local MPI)"),
]


class _OldEngine(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        now = _OLD_ENGINES.get(value, f"--launcher {'|'.join(SUBMIT_LAUNCHERS)}")
        parser.error(f"--engine is now --launcher: use {now}")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    submit = commands.add_parser(
        "submit", help="submit a workload as a job: Slurm (sbatch), submitit, or local",
        description="Run a workload as a job of a launcher: slurm renders a job script into "
        "its own job folder and submits it with sbatch; submitit runs the runner on every "
        "rank through submitit; local starts the ranks here with mpiexec. Resource options "
        "override the profile's defaults. `hpc submit NAME --help` lists a workload's "
        "options.")
    names = submit.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    for cls in WORKLOADS.values():
        p = names.add_parser(cls.name, help=cls.summary, description=cls.summary)
        add_run_options(p, cls, local=False)
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
        how.add_argument("--launcher", choices=SUBMIT_LAUNCHERS, default="slurm",
                         help="slurm: a rendered job script, sbatch (default); submitit: the "
                         "runner on every rank through submitit (on this machine when "
                         "Slurm is absent); local: ranks started here by mpiexec")
        how.add_argument("--engine", action=_OldEngine, help=argparse.SUPPRESS)
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
                         help="print the job script (or command) and submit nothing")
        how.add_argument("--wait", action="store_true",
                         help="wait for the job to end; exit with its outcome")
        how.add_argument("--wait-timeout", type=seconds, metavar="SECONDS",
                         help="with --wait: give up waiting after this long (exit 124)")
        how.add_argument("--parsable", action="store_true",
                         help="print only the job id (for scripts)")
        jobs_dir_option(how)
        p.set_defaults(handler=_cmd_submit, np=None, timeout=None)


def _resources(args: argparse.Namespace, profile: Any) -> Any:
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


def _checkpoint_signal(args: argparse.Namespace, resources: Any) -> int | None:
    given = getattr(args, "checkpoint_signal", None)
    if getattr(args, "checkpoint", None) is None:  # only heat2d and nbody checkpoint
        if given is not None:
            raise UserError("--checkpoint-signal needs --checkpoint FILE.h5")
        return None
    from hpc.slurm.render import CHECKPOINT_MARGIN

    return given if given is not None else max(1, min(60, resources.time_seconds -
                                                      CHECKPOINT_MARGIN))


def _cmd_submit(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.launchers import JobOptions, get_launcher
    from hpc.limits import slurm_mem_bytes
    from hpc.runner import validate
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
    command = shlex.join(["hpc", *argv])
    # The job inherits this environment (sbatch's default --export=ALL), so the record's
    # provenance says what the user typed rather than what each rank ran.
    os.environ["HPC_LAUNCH_COMMAND"] = command
    options = JobOptions(
        dependency=Dependency.parse(args.dependency) if args.dependency else None,
        hold=args.hold, checkpoint_signal=_checkpoint_signal(args, resources))
    run = Run(resources.job_name, resources.ntasks, spec=spec,
              timeout=resources.time_seconds,
              info={"command": command, "workload": spec.workload, "out": str(spec.out)})
    launcher = get_launcher(args.launcher)(profile, args.jobs_dir)
    if args.dry_run:
        sys.stdout.write(launcher.describe([run], [resources], options).rstrip("\n") + "\n")
        print("hpc: dry run: nothing was submitted", file=sys.stderr)
        return 0
    launched = launcher.start([run], [resources], options)[0]
    if launched.job_id is not None:
        print(launched.job_id if args.parsable else
              f"submitted job {launched.job_id} ({args.launcher}); job folder "
              f"{launched.folder}", flush=True)
        if not args.wait:
            return 0
    elif launched.folder is not None:
        print(f"hpc: running on {resources.ntasks} local rank(s) of this machine (job "
              f"folder {launched.folder})", file=sys.stderr, flush=True)
    return _wait_and_report(launcher, launched, spec, args.wait_timeout)


def _wait_and_report(launcher: Any, launched: Any, spec: RunSpec,
                     timeout: float | None) -> int:
    from hpc.slurm.report import describe, explain_node_failures, show_failure_logs

    if not launcher.wait([launched], timeout):
        print(f"hpc: error: job {launched.job_id} still running after --wait-timeout "
              f"{timeout:g} s (it keeps running: hpc wait {launched.job_id})",
              file=sys.stderr)
        return TIMED_OUT
    code = launched.exit_code
    if launched.job_id is not None and launcher.name == "slurm":
        print(f"job {launched.job_id}: {describe(launched.handle)}", flush=True)
    if "error" in launched.extra:
        print(f"hpc: error: the job failed: {launched.extra['error']}; the ranks' messages "
              f"are in {launched.extra['log']}", file=sys.stderr)
    outcome = launched.extra.get("outcome")
    if isinstance(outcome, dict) and "ranks" in outcome:
        print(f"{launcher.name} run: exit code {code} on {outcome['ranks']} ranks", flush=True)
    if code != 0:
        show_failure_logs(launched.folder, launched.job_id or "")
        if "tracker" in launched.extra:  # the slurm launcher's: which node failed, if one did
            explain_node_failures(launched.extra["tracker"], launched.extra["folders"])
    _show_record(spec, launched.job_id)
    return code


def _show_record(spec: RunSpec, job_id: str | None) -> None:
    """The record the run appended: the last one, or the one of its Slurm job."""
    from hpc.records import read_runs

    if spec.out is None or not Path(spec.out).exists():
        print(f"hpc: warning: the job ended but {spec.out} does not exist", file=sys.stderr)
        return
    runs = [r for r in read_runs(spec.out) if job_id is None or
            str(r.get("provenance", {}).get("slurm", {}).get("SLURM_JOB_ID")) == job_id]
    if not runs:
        print(f"hpc: warning: {spec.out} holds no run of job {job_id}", file=sys.stderr)
        return
    run = runs[-1]
    print(f"record {spec.out}:{run['group']}: {run['workload']} ranks={run['ranks']} "
          f"status={run['status']} verified={'yes' if run['verified'] else 'NO'}", flush=True)
