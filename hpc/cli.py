"""The ``hpc`` command: run workloads, show records, describe the installation, benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpc import __version__, cuda_cli
from hpc.errors import HpcError, UserError
from hpc.limits import rank_count, seconds
from hpc.slurm.cli import add_parsers as add_slurm_parsers
from hpc.study.cli import add_study_parsers
from hpc.workloads import WORKLOADS
from kernels import BACKENDS

DEFAULT_OUT = Path("results/runs.h5")


def add_workload_options(p: argparse.ArgumentParser, cls: type, local: bool = True) -> None:
    """The options of `hpc run NAME`, shared with `hpc submit NAME`, which leaves out the
    local launch options (--np, --timeout: Slurm's resources say that there)."""
    common = p.add_argument_group("run options")
    if local:
        common.add_argument("--np", type=rank_count, metavar="P",
                            help="number of MPI ranks to start with mpiexec (outside an MPI "
                            "job; inside one, the job's ranks are used); default: 1 rank")
    common.add_argument("--backend", choices=BACKENDS, default="cython",
                        help="kernel implementation (default: %(default)s)")
    common.add_argument("--size", type=int, metavar="S",
                        help=f"problem size: sets --{cls.size_param.replace('_', '-')}")
    common.add_argument("--repeats", type=int, default=3,
                        help="timed repeats (default: %(default)s)")
    common.add_argument("--warmup", type=int, default=1,
                        help="untimed repeats before them (default: %(default)s)")
    common.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE.h5",
                        help="HDF5 file the run record is appended to "
                        "(default: %(default)s)")
    if local:
        common.add_argument("--timeout", type=seconds, metavar="SECONDS",
                            help="stop the job after this long (with --np)")
    common.add_argument("--quiet", action="store_true", help="print nothing on success")
    if cls.checkpoint_every:
        common.add_argument(
            "--checkpoint", type=Path, metavar="FILE.h5",
            help="on SIGUSR1 (Slurm: --signal=USR1@SECONDS) save the state here and exit "
            "75; started again, resume from it; removed once the run is recorded "
            "(docs/CHECKPOINT.md)")
    own = p.add_argument_group(f"{cls.name} options")
    for param in cls.params:
        own.add_argument(f"--{param.option}", dest=f"param_{param.name}", type=param.type,
                         default=None, choices=param.choices,
                         metavar=None if param.choices else param.type.__name__.upper(),
                         help=f"{param.help} (default: {param.default})")


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run a workload on MPI ranks and append its record to an HDF5 file",
        description="Run a workload. Outside an MPI job, --np N starts N local ranks with "
        "mpiexec; inside one (mpiexec -n N hpc run ..., srun hpc run ...) it runs in place. "
        "`hpc run NAME --help` lists a workload's own options.")
    names = run.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    for cls in WORKLOADS.values():
        p = names.add_parser(cls.name, help=cls.summary, description=cls.summary)
        add_workload_options(p, cls)
        p.set_defaults(handler=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpc", description="HPC job suite: MPI workloads with numpy, Cython and CUDA "
        "kernels, HDF5 run records, Slurm submission, strong and weak scaling studies.")
    parser.add_argument("--version", action="version", version=f"hpc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parsers in PARSER_BUILDERS:
        add_parsers(commands)
    return parser


def run_spec_from_args(args: argparse.Namespace):
    from hpc.runner import RunSpec

    cls = WORKLOADS[args.workload]
    params = {k[len("param_"):]: v for k, v in vars(args).items()
              if k.startswith("param_") and v is not None}
    if args.size is not None:
        named = params.get(cls.size_param)
        if named is not None and named != args.size:
            raise UserError(f"--size {args.size} and --{cls.size_param} {named} disagree; "
                            "give one of them")
        params[cls.size_param] = args.size
    return RunSpec(workload=args.workload, backend=args.backend, params=params,
                   repeats=args.repeats, warmup=args.warmup, out=args.out, quiet=args.quiet,
                   np=args.np, checkpoint=getattr(args, "checkpoint", None))


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.mpi_env import inside_mpi_job

    spec = run_spec_from_args(args)
    if inside_mpi_job():
        from hpc.runner import run_ranks

        return run_ranks(spec)
    from hpc.limits import available_memory
    from hpc.runner import validate

    # Fail here, before mpiexec, with one clear message; every rank runs on this machine.
    validate(spec, args.np or 1, node_memory=available_memory())
    if args.np is None:
        from hpc.runner import run_ranks

        return run_ranks(spec)  # a single rank, in this process
    from hpc.launch import launch_local

    return launch_local(args.np, argv, timeout=args.timeout)


def _add_tool_parsers(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="what this installation has (MPI, kernels, CUDA, "
                               "HDF5, Slurm)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_cmd_info)
    bench = commands.add_parser("bench", help="kernel throughput as a fraction of this "
                                "machine's limits, plain C, and MPI's communication limits")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    bench.add_argument("--no-c", dest="c_reference", action="store_false",
                       help="skip compiling and running the plain C reference")
    which = bench.add_mutually_exclusive_group()
    which.add_argument("--mpi", dest="sections", action="store_const", const="mpi",
                       default="all", help="only the MPI section: ping-pong, Allreduce and "
                       "heat2d's halo exchange against ping-pong")
    which.add_argument("--no-mpi", dest="sections", action="store_const", const="kernels",
                       help="skip the MPI section")
    bench.add_argument("--np", type=rank_count, default=2, metavar="P",
                       help="ranks of the MPI section (default: %(default)s)")
    bench.set_defaults(handler=_cmd_bench)
    show = commands.add_parser("show", help="table of the runs in HDF5 record files")
    show.add_argument("files", nargs="+", type=Path, metavar="FILE.h5")
    show.set_defaults(handler=_cmd_show)


def _cmd_info(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.info import cmd_info

    return cmd_info(args.json)


def _cmd_bench(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.bench import cmd_bench

    return cmd_bench(as_json=args.json, quick=args.quick, c_reference=args.c_reference,
                     sections=args.sections, nranks=args.np)


def _cmd_show(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.show import cmd_show

    return cmd_show(args.files)


# Each entry adds its subcommands to the parser and sets `handler` (args, argv) -> exit code.
# Feature modules register here with one line, keeping this file free of their details.
PARSER_BUILDERS = [_add_run_parser, _add_tool_parsers, add_study_parsers, cuda_cli.add_parsers,
                   add_slurm_parsers]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, argv)
    except HpcError as exc:
        print(f"hpc: error: {exc}", file=sys.stderr)
        return exc.exit_code
