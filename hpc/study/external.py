"""Run a user's own program as a study point and record it like a built-in run.

This is the driver a launcher starts for a [command] point (``hpc study point FILE N``):
one process that runs the program's warm-ups and repeats, each starting its ranks with
the launcher's ``{mpirun}`` (mpiexec -n P here, srun -n P in a Slurm job).

The command line was split once, when the study was read; ``{mpirun}`` becomes the
starter's words and the other placeholders numbers, and the words are run without a
shell, so nothing in a study file can inject shell syntax. Every repeat runs in a fresh
folder under the study's (``<study>.points/point-N-.../repeat-R``, warm-ups in
``warmup-K``) with the declared inputs copied or linked in; its output stays there and,
bounded, in the record. The time of a repeat is the wall clock around the program or a
number it prints (a regular expression's first group, or a key of the last JSON line),
and so is every other figure of merit. [check] patterns must match every repeat's output,
and [check] agree values must agree with the points already recorded.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from hpc import machine, provenance
from hpc.errors import FAILED, NOT_VERIFIED
from hpc.records import RunRecord, append_run, read_runs
from hpc.runner import utc_now
from hpc.study.application import application_provenance, warn_mpi_mismatch
from hpc.study.bounded_regex import RegexTimeout, last_group
from hpc.study.formula import check_formula, evaluate
from hpc.study.plan import Point
from hpc.study.spec import MPIRUN, CommandSpec, StudySpec
from hpc.study.store import COMMAND_WORKLOAD

OUTPUT_TAIL = 2000       # characters of a failed command's output shown to the user
OUTPUT_KEPT = 16384      # characters of each repeat's output kept in the record
REGEX_TIMEOUT = 10.0  # seconds a regex may take at most, within the study's timeout
MIN_REGEX_TIMEOUT = 1.0  # even when the program used up nearly all of the point's time


class PointFailed(Exception):
    """The point did not produce a usable time; the message says why."""

    exit_code = FAILED


class ChecksFailed(PointFailed):
    """The point ran and is recorded, but a [check] failed."""

    exit_code = NOT_VERIFIED


def point_values(spec: StudySpec, point: Point, repeat: int, nodes: int = 1) -> dict[str, int]:
    """Every placeholder's number for one repeat of a point, derived ones included."""
    values = {"ranks": point.ranks, "nodes": nodes,
              "ranks_per_node": -(-point.ranks // nodes), "threads": point.threads,
              "size": point.size, "repeat": repeat}
    command = spec.command
    for name, formula in command.derived:
        where = f"{spec.source}: [command.derived] {name}"
        tree = check_formula(formula, set(values) - {"repeat"}, where)
        values[name] = evaluate(tree, values, where)
    return values


def fill(words: tuple[str, ...], values: dict[str, int], mpirun: list[str]) -> list[str]:
    """The words with ``{mpirun}`` replaced by the starter's and the rest by numbers."""
    argv: list[str] = []
    for word in words:
        argv += mpirun if word == MPIRUN else [word.format(**values)]
    return argv


def command_argv(spec: StudySpec, point: Point, repeat: int, mpirun: list[str],
                 nodes: int = 1) -> list[str]:
    return fill(spec.command.argv, point_values(spec, point, repeat, nodes), mpirun)


def _lookup(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            raise KeyError(dotted)
        data = data[key]
    return data


def extract_number(name: str, stdout: str, *, regex: str | None = None,
                   json_key: str | None = None,
                   regex_timeout: float = REGEX_TIMEOUT) -> float:
    """A number the program printed: a regex's first group (last match; it gets
    ``regex_timeout`` seconds, hpc.study.bounded_regex), or a key of the last JSON line
    that has it."""
    if regex is not None:
        try:
            text = last_group(regex, stdout, regex_timeout)
        except RegexTimeout as exc:
            raise PointFailed(f"{name}: {regex!r} on {len(stdout)} characters of output: "
                              f"{exc} (catastrophic backtracking?); write a simpler pattern, "
                              "e.g. anchored, without nested repeats") from None
        if text is None:
            raise PointFailed(f"{name}: {regex!r} matched nothing in the output:\n"
                              f"{stdout[-OUTPUT_TAIL:]}")
    else:
        text = None
        for line in reversed(stdout.splitlines()):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                text = _lookup(json.loads(line), json_key)
                break
            except (ValueError, KeyError):
                continue
        if text is None:
            raise PointFailed(f"{name}: no JSON line of the output has the key "
                              f"{json_key!r}:\n{stdout[-OUTPUT_TAIL:]}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PointFailed(f"{name}: the value found in the output, {text!r}, is not a "
                          "number") from None
    if not np.isfinite(value):
        raise PointFailed(f"{name}: the program reported {value!r}")
    return value


def extract_seconds(command: CommandSpec, stdout: str, wall: float,
                    regex_timeout: float = REGEX_TIMEOUT) -> float:
    """The repeat's time in seconds, from the clock or the program's own output."""
    if command.time_source == "wall":
        return wall
    seconds = extract_number("time", stdout, regex=command.time_regex,
                             json_key=command.time_json_key, regex_timeout=regex_timeout)
    if seconds <= 0:
        raise PointFailed(f"the program reported {seconds!r} s; times must be positive")
    return seconds


def _prepare_folder(folder: Path, command: CommandSpec) -> None:
    folder.mkdir(parents=True)
    for source in command.inputs:
        path = Path(source)
        if path.is_dir():
            shutil.copytree(path, folder / path.name)
        else:
            shutil.copy2(path, folder / path.name)
    for source in command.links:
        (folder / Path(source).name).symlink_to(source)


def _keep_output(folder: Path, out: str, err: str) -> None:
    """The program's output beside what it wrote; on a full disk the record (written
    elsewhere if need be, hpc.atomic) still keeps its tail."""
    try:
        (folder / "stdout.txt").write_text(out)
        (folder / "stderr.txt").write_text(err)
    except OSError as exc:
        print(f"hpc: warning: could not keep the output in {folder}: {exc.strerror}",
              file=sys.stderr)


def _run_once(argv: list[str], folder: Path, env: dict[str, str],
              timeout: float) -> tuple[str, float]:
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True,
                                cwd=folder, env=env)
    except OSError as exc:
        raise PointFailed(f"cannot start {argv[0]!r}: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        _keep_output(folder, out, err)
        raise PointFailed(f"stopped after the study's timeout of {timeout:g} s") from None
    wall = time.perf_counter() - start
    _keep_output(folder, out, err)
    if proc.returncode != 0:
        raise PointFailed(f"{shlex.join(argv)} exited with status {proc.returncode} (in "
                          f"{folder}):\n{(out + err)[-OUTPUT_TAIL:]}")
    return out, wall


def _check_matches(spec: StudySpec, stdout: str, values: dict[str, int]) -> list[str]:
    failed = []
    for pattern in spec.checks.get("match", []):
        filled = pattern.format(**values)
        try:  # under a time limit, as every user pattern (hpc.study.bounded_regex)
            found = last_group(f"({filled})", stdout, REGEX_TIMEOUT)
        except RegexTimeout as exc:
            raise PointFailed(f"[check] match {filled!r}: {exc}") from None
        if found is None:
            failed.append(f"[check] match {filled!r} not found in the output")
    return failed


def _check_agreement(spec: StudySpec, out: Path, point: Point,
                     metrics: dict[str, list[float]]) -> list[str]:
    """Each [check] agree value against the same value of the points already recorded."""
    failed = []
    agree = spec.checks.get("agree", {})
    if not agree or not out.exists():
        return failed
    for run in read_runs(out):
        if run["workload"] != COMMAND_WORKLOAD or run["status"] != "ok" or \
                int(run["ranks"]) == point.ranks:
            continue
        theirs = run.get("result", {}).get("metrics", {})
        for name, tolerance in agree.items():
            if name not in theirs or not metrics.get(name):
                continue
            a, b = metrics[name][-1], float(np.asarray(theirs[name]["values"])[-1])
            if abs(a - b) > tolerance * max(abs(a), abs(b)):
                failed.append(f"[check] agree {name}: {a!r} here, {b!r} at ranks="
                              f"{run['ranks']} (relative tolerance {tolerance:g})")
    return failed


def run_command_point(spec: StudySpec, point: Point, out: Path, *, starter: str = "local",
                      mpi: str | None = None, mpirun: str = "mpirun") -> float:
    """Run the point's warm-ups and repeats, append its record; returns the best time.

    A point whose checks fail is recorded with status ``verification_failed`` and the
    values named, and PointFailed says why.
    """
    from hpc.launchers import mpirun_words

    command = spec.command
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1")) if starter != "local" else 1
    nodes = max(1, min(nodes, point.ranks))
    words, env = mpirun_words(starter, point.ranks, nodes, point.threads, mpi, mpirun)
    env.update(spec.env)
    run_id = uuid.uuid4().hex
    base = (out.parent / (command.workdir or f"{out.stem}.points") /
            f"point-{point.index}-ranks{point.ranks}-{run_id[:8]}")
    deadline = time.monotonic() + spec.timeout
    start = utc_now()
    seconds: list[float] = []
    metrics: dict[str, list[float]] = {name: [] for name in command.metrics}
    outputs: list[str] = []
    failed: list[str] = []
    first_argv: list[str] = []
    app: dict[str, Any] = {}
    # The probe reads the threads per rank from this process's environment.
    os.environ["OMP_NUM_THREADS"] = str(point.threads)
    probe = machine.Probe(children=True)  # the program's CPU time: its rusage as a child
    for repeat in range(-spec.warmup, spec.repeats):
        values = point_values(spec, point, repeat, nodes)
        argv = fill(command.argv, values, words)
        folder = base / (f"repeat-{repeat}" if repeat >= 0 else f"warmup-{-repeat}")
        try:
            _prepare_folder(folder, command)
        except OSError as exc:
            raise PointFailed(f"cannot prepare the folder {folder}: {exc.strerror}") from None
        if not first_argv:
            first_argv = argv
            app = application_provenance(command, argv, env, folder,
                                         fill(command.version, values, []))
            # Said again in the job's log (hpc study run said it before submitting).
            warning = warn_mpi_mismatch(app.get("linked_mpi"), starter, mpi) \
                if starter != "local" else None
            if warning:
                print(f"hpc: warning: {warning}", file=sys.stderr, flush=True)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PointFailed(f"stopped after the study's timeout of {spec.timeout:g} s")
        stdout, wall = _run_once(argv, folder, env, remaining)
        if repeat < 0:
            continue
        budget = min(max(deadline - time.monotonic(), MIN_REGEX_TIMEOUT), REGEX_TIMEOUT)
        seconds.append(extract_seconds(command, stdout, wall, budget))
        for name, metric in command.metrics.items():
            metrics[name].append(extract_number(name, stdout, regex=metric.get("regex"),
                                                json_key=metric.get("json_key"),
                                                regex_timeout=budget))
        outputs.append(stdout[-OUTPUT_KEPT:])
        failed += [f"repeat {repeat}: {f}" for f in _check_matches(spec, stdout, values)]
    failed += _check_agreement(spec, out, point, metrics)
    timings = np.array(seconds, dtype=float).reshape(spec.repeats, 1, 1)
    # One usage stands for all the program's ranks: their CPU time is summed in it. Only
    # mpiexec's ranks are this process's children; srun's run under slurmstepd.
    usage = machine.summarise([probe.stop()], ranks=point.ranks) if starter == "local" \
        else {}
    record = RunRecord(
        workload=COMMAND_WORKLOAD, backend="external", ranks=point.ranks, nodes=nodes,
        size=point.size, size_parameter="size",
        parameters={"command": shlex.join(command.argv), "threads": point.threads},
        repeats=spec.repeats, warmup=spec.warmup, start_utc=start, end_utc=utc_now(),
        status="verification_failed" if failed else "ok", verified=not failed,
        verification_method="exit status and [check]" if spec.checks else "exit status",
        verification_detail="; ".join(failed) or (
            "external command: exited 0" + (", every [check] passed" if spec.checks
                                            else " (its results are not checked)")),
        phases=["total"], timings=timings,
        result={"time_source": command.time_source, "time_unit": command.time_unit,
                "folder": str(base), "output": outputs,
                "metrics": {name: {"unit": command.metrics[name].get("unit", ""),
                                   "values": values_}
                            for name, values_ in metrics.items()}},
        provenance={**provenance.collect_local(shlex.join(first_argv)),
                    "application": app, "starter": starter},
        run_id=run_id, machine=usage)
    append_run(out, record)
    if failed:
        raise ChecksFailed("its checks failed (recorded as verification_failed):\n  " +
                          "\n  ".join(failed))
    return min(seconds)
