"""The ``hpc`` command: run workloads, show records, describe the installation, benchmark."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from hpc import __version__
from hpc.errors import HpcError
from hpc.limits import rank_count
from hpc.runs import Run, add_run_options, run_spec_from_args
from hpc.workloads import WORKLOADS


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run a workload on MPI ranks and append its record to an HDF5 file",
        description="Run a workload. Outside an MPI job, --np N starts N local ranks with "
        "mpiexec; inside one (mpiexec -n N hpc run ..., srun hpc run ...) it runs in place. "
        "`hpc run NAME --help` lists a workload's own options.")
    names = run.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    for cls in WORKLOADS.values():
        p = names.add_parser(cls.name, help=cls.summary, description=cls.summary)
        add_run_options(p, cls)
        p.set_defaults(handler=cmd_run)


def build_parser(builders: list[Callable[..., None]] | None = None) -> argparse.ArgumentParser:
    """The parser of ``hpc``, with every command (or only those ``builders`` add)."""
    parser = argparse.ArgumentParser(
        prog="hpc", description="HPC job suite: MPI workloads with numpy, Cython and CUDA "
        "kernels, HDF5 run records, Slurm submission, strong and weak scaling studies.")
    parser.add_argument("--version", action="version", version=f"hpc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parsers in parser_builders() if builders is None else builders:
        add_parsers(commands)
    return parser


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.mpi_env import inside_mpi_job

    spec = run_spec_from_args(args)
    if inside_mpi_job():
        from hpc.runner import run_ranks

        return run_ranks(spec)
    from hpc.limits import available_memory
    from hpc.runner import validate

    # Fail here, before mpiexec, with one clear message; every rank runs on this machine.
    validate(spec, args.np or 1, node_memory=available_memory(), launching=args.np is not None)
    if args.np is None:
        from hpc.runner import run_ranks

        return run_ranks(spec)  # a single rank, in this process
    from hpc.launchers.local import LocalLauncher

    run = Run(args.workload, args.np, spec=spec, timeout=args.timeout,
              info={"command": shlex.join(["hpc", *argv])})
    return LocalLauncher.run_one(run)


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


def parser_builders() -> list[Callable[..., None]]:
    """Each entry adds its subcommands to the parser and sets `handler` (args, argv) -> exit
    code. Feature modules register here with one line, keeping this file free of their
    details; they are imported here, not by `hpc run` (see main)."""
    from hpc import cuda_cli, submit_cli
    from hpc.slurm.cli import add_parsers as add_slurm_parsers
    from hpc.study.cli import add_study_parsers

    return [_add_run_parser, _add_tool_parsers, add_study_parsers, cuda_cli.add_parsers,
            submit_cli.add_parsers, add_slurm_parsers]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `hpc run`, which every rank of every run starts with, parses with its own parser
    # only: importing the other commands' modules cost each process tens of ms.
    builders = [_add_run_parser] if argv[:1] == ["run"] else None
    args = build_parser(builders).parse_args(argv)
    try:
        return args.handler(args, argv)
    except HpcError as exc:
        print(f"hpc: error: {exc}", file=sys.stderr)
        return exc.exit_code
