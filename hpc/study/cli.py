"""``hpc study``: run a scaling study, report on it, compare two."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpc.errors import UserError
from hpc.launchers import STARTERS, launcher_names
from hpc.study.spec import StudySpec, load_study, shipped_studies_folder

RESULTS = Path("results")


def add_study_parsers(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser(
        "study", help="strong and weak scaling studies: run, report, compare",
        description="Scaling studies declared in TOML files (see scaling_studies/ and "
        "docs/STUDIES.md).")
    verbs = study.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    run = verbs.add_parser(
        "run", help="run every point of a study (resuming), then analyse and report",
        description="Run a study's points into one study HDF5 file. A rerun skips the points "
        "already recorded, so an interrupted study resumes where it stopped.")
    run.add_argument("study", metavar="STUDY",
                     help="a study file, or the name of a shipped one (hpc study list)")
    run.add_argument("--launcher", choices=launcher_names(),
                     help="override the study file's launcher (default: the file's, else local)")
    run.add_argument("--out", type=Path, metavar="FILE.h5",
                     help="study file (default: results/NAME.h5)")
    run.add_argument("--restart", action="store_true",
                     help="if --out holds a study from a different spec, move it aside "
                     "(never deleted) and start afresh")
    run.add_argument("--rerun", metavar="POINTS|all",
                     help="measure these points again (indexes as in the plan: 0,2 or all); "
                     "their old records stay in the file, marked superseded")
    run.add_argument("--dry-run", action="store_true",
                     help="print the planned points, each point's exact command and the job "
                     "scripts, and run nothing")
    run.add_argument("--no-report", dest="report", action="store_false",
                     help="don't analyse and write the report at the end")
    run.add_argument("--format", choices=("html", "md"), default="html",
                     help="report format (default: %(default)s)")
    run.add_argument("--include-oversubscribed", action="store_true",
                     help="fit the points measured with more ranks than cores, or while "
                     "other processes competed for them (default: shown, not fitted)")
    run.add_argument("--wait", action="store_true",
                     help="slurm launcher: wait for the array and the report job to end")
    run.add_argument("--jobs-dir", type=Path, metavar="DIR",
                     help="slurm and submitit launchers: where job folders go "
                     "(default: hpc-jobs/, or $HPC_JOBS_DIR)")
    run.set_defaults(handler=cmd_study_run)

    report = verbs.add_parser(
        "report", help="analyse a study file and write its report with plots",
        description="Fit Amdahl's and Gustafson's laws and an overhead model to a study "
        "file's points and write a report (HTML with embedded plots, or Markdown).")
    report.add_argument("file", type=Path, metavar="FILE.h5")
    report.add_argument("--format", choices=("html", "md"), default="html",
                        help="report format (default: %(default)s)")
    report.add_argument("--out", type=Path, metavar="PATH",
                        help="report file (default: beside the study file, NAME.html/.md)")
    report.add_argument("--store-analysis", action="store_true",
                        help="also cache the analysis in the study file (its 'analysis' "
                        "attribute); without it the study file is only read")
    report.add_argument("--include-oversubscribed", action="store_true",
                        help="fit the points measured oversubscribed or contended too")
    report.set_defaults(handler=cmd_study_report)

    compare = verbs.add_parser(
        "compare", help="flag a regression between two runs of a study",
        description="Compare two study files (for example before and after a change): exit "
        "1 when B's fitted serial fraction or efficiency is worse than A's beyond the noise "
        "of the repeats.")
    compare.add_argument("baseline", type=Path, metavar="A.h5")
    compare.add_argument("candidate", type=Path, metavar="B.h5")
    compare.set_defaults(handler=cmd_study_compare)

    listing = verbs.add_parser("list", help="the shipped studies in scaling_studies/")
    listing.set_defaults(handler=cmd_study_list)

    # What a launcher runs for one point of a [command] study (not for typing by hand).
    point = verbs.add_parser("point", help=argparse.SUPPRESS)
    point.add_argument("file", type=Path)
    point.add_argument("index", type=int)
    point.add_argument("--starter", choices=STARTERS, required=True)
    point.add_argument("--mpi", help="srun --mpi plugin")
    point.add_argument("--mpirun", default="mpirun", help="the job's mpirun")
    point.set_defaults(handler=cmd_study_point)


def resolve_study_path(name: str) -> Path:
    """A path as given, or the shipped study of that name."""
    path = Path(name)
    if path.exists() or path.suffix == ".toml" or "/" in name:
        return path
    return shipped_studies_folder() / f"{name}.toml"


def cmd_study_run(args: argparse.Namespace, argv: list[str]) -> int:
    from dataclasses import replace

    from hpc.study.plan import format_plan, plan_study

    spec = load_study(resolve_study_path(args.study))
    if args.launcher:
        spec = replace(spec, launcher=args.launcher)
    points = plan_study(spec)
    from hpc.study.allocation import check_points_fit

    check_points_fit(spec, points)  # the dry run too: it says whether the points fit
    out = args.out or RESULTS / f"{spec.name}.h5"
    print(format_plan(spec, points))
    if args.dry_run:
        from hpc.study.runner import describe_study

        print(describe_study(spec, points, (args.out or RESULTS / f"{spec.name}.h5")))
        return 0
    from hpc.study.lock import study_lock
    from hpc.study.runner import run_study

    rerun = _rerun_points(args.rerun, points)
    with study_lock(out):  # a second run of this study exits StudyBusy, saying who runs it
        code = run_study(spec, points, out, restart=args.restart, rerun=rerun,
                         wait=args.wait, jobs_dir=args.jobs_dir)
        # With the slurm launcher the report is the dependent job's work.
        if code == 0 and args.report and spec.launcher != "slurm":
            return _report(out, args.format, None,
                           args.include_oversubscribed or spec.include_oversubscribed,
                           store=True)  # the study's own output file
        return code


def _rerun_points(text: str | None, points: list) -> list:
    if not text:
        return []
    if text == "all":
        return list(points)
    chosen = []
    for item in text.split(","):
        if not item.strip().isdigit() or int(item) >= len(points):
            raise UserError(f"--rerun {text}: give point indexes 0 to {len(points) - 1} "
                            "separated by commas, or all")
        chosen.append(points[int(item)])
    return chosen


def _check_report_target(target: Path, given: bool) -> None:
    import os

    existing = next(p for p in (target, *target.parents) if p.exists() or p == Path("."))
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK) or (existing == target
                                                    and not os.access(target, os.W_OK)):
        hint = "" if given else "; give --out PATH for the report"
        raise UserError(f"cannot write the report {target}: {folder} is not writable{hint}")


def _report(path: Path, fmt: str, out: Path | None, include: bool = False,
            store: bool = False) -> int:
    from hpc.scaling import write_report
    from hpc.study.analyse import analyse_study_file

    target = out or path.with_suffix(f".{fmt}")
    _check_report_target(target, given=out is not None)  # before the work, not after
    spec, analysis, meta, placed = analyse_study_file(path, store=store,
                                                      include_oversubscribed=include)
    try:
        written = write_report(analysis, meta, target, fmt, placed)
    except OSError as exc:
        raise UserError(f"cannot write the report {target}: {exc.strerror or exc}") from None
    print(analysis_summary(spec, analysis))
    print(f"report: {written}")
    return 0


def analysis_summary(spec: StudySpec, analysis: object) -> str:
    summary = getattr(analysis, "summary", None)
    return summary() if callable(summary) else f"study {spec.name} analysed"


def cmd_study_report(args: argparse.Namespace, argv: list[str]) -> int:
    return _report(args.file, args.format, args.out, args.include_oversubscribed,
                   store=args.store_analysis)


def cmd_study_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.scaling import analyse, compare
    from hpc.study.analyse import scaling_points

    # Both files read and checked before either is fitted: a bad one fails at once.
    loaded = [scaling_points(path) for path in (args.baseline, args.candidate)]
    a, b = (analyse(spec.kind, points) for spec, points, _ in loaded)
    comparison = compare(a, b)
    print(comparison.text())
    return 1 if comparison.regressed else 0


def cmd_study_point(args: argparse.Namespace, argv: list[str]) -> int:
    from hpc.study.external import PointFailed, run_command_point
    from hpc.study.plan import plan_study
    from hpc.study.store import read_study_spec

    spec = read_study_spec(args.file)
    points = plan_study(spec)
    if spec.command is None or not 0 <= args.index < len(points):
        raise UserError(f"{args.file} has no [command] point {args.index}")
    try:
        best = run_command_point(spec, points[args.index], args.file, starter=args.starter,
                                 mpi=args.mpi, mpirun=args.mpirun)
    except PointFailed as exc:
        print(f"hpc: error: point {args.index}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"point {args.index}: ok, best {best:.4g} s", file=sys.stderr)
    return 0


def cmd_study_list(args: argparse.Namespace, argv: list[str]) -> int:
    folder = shipped_studies_folder()
    rows = []
    for path in sorted(folder.glob("*.toml")):
        try:
            spec = load_study(path)
            rows.append(f"  {path.stem:<18} {spec.kind:<6} {spec.description}")
        except UserError as exc:
            rows.append(f"  {path.stem:<18} (invalid: {exc})")
    if not rows:
        print(f"no studies in {folder}", file=sys.stderr)
        return 1
    print(f"studies in {folder} (run one with `hpc study run NAME`):")
    print("\n".join(rows))
    return 0
