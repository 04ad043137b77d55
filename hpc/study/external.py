"""Run a user's own program as a study point and record it like a built-in run.

The command line is split once, when the study is read; the placeholders ({ranks},
{size}, {repeat}) are then filled into the words with numbers, and the words are run
without a shell, so nothing in a study file can inject shell syntax. The time of a repeat
is the wall clock around the program, or what it prints: a regular expression's first
group, or a key of the last JSON object on its standard output.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from hpc import machine, provenance
from hpc.records import RunRecord, append_run
from hpc.runner import utc_now
from hpc.study.bounded_regex import RegexTimeout, last_group
from hpc.study.plan import Point
from hpc.study.spec import CommandSpec, StudySpec
from hpc.study.store import COMMAND_WORKLOAD

OUTPUT_TAIL = 2000  # characters of a failed command's output shown to the user
REGEX_TIMEOUT = 10.0  # seconds a time_regex may take at most, within the study's timeout
MIN_REGEX_TIMEOUT = 1.0  # even when the program used up nearly all of the point's time


class PointFailed(Exception):
    """The point did not produce a usable time; the message says why."""


def command_argv(command: CommandSpec, point: Point, repeat: int) -> list[str]:
    values = {"ranks": point.ranks, "size": point.size, "repeat": repeat}
    return [word.format(**values) for word in command.argv]


def _lookup(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            raise KeyError(dotted)
        data = data[key]
    return data


def extract_seconds(command: CommandSpec, stdout: str, wall: float,
                    regex_timeout: float = REGEX_TIMEOUT) -> float:
    """The repeat's time in seconds, from the clock or the program's own output. A
    ``time_regex`` gets ``regex_timeout`` seconds to match (hpc.study.bounded_regex)."""
    if command.time_source == "wall":
        return wall
    if command.time_source == "regex":
        try:
            text = last_group(command.time_regex, stdout, regex_timeout)
        except RegexTimeout as exc:
            raise PointFailed(f"time_regex {command.time_regex!r} on {len(stdout)} characters "
                              f"of output: {exc} (catastrophic backtracking?); write a simpler "
                              "pattern, e.g. anchored, without nested repeats") from None
        if text is None:
            raise PointFailed(f"time_regex {command.time_regex!r} matched nothing in the "
                              f"output:\n{stdout[-OUTPUT_TAIL:]}")
    else:
        text = None
        for line in reversed(stdout.splitlines()):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                text = _lookup(json.loads(line), command.time_json_key)
                break
            except (ValueError, KeyError):
                continue
        if text is None:
            raise PointFailed(f"no JSON line of the output has the key "
                              f"{command.time_json_key!r}:\n{stdout[-OUTPUT_TAIL:]}")
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise PointFailed(f"the time found in the output, {text!r}, is not a number") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise PointFailed(f"the program reported {seconds!r} s; times must be positive")
    return seconds


def _run_once(argv: list[str], timeout: float) -> tuple[str, float]:
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    except OSError as exc:
        raise PointFailed(f"cannot start {argv[0]!r}: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PointFailed(f"stopped after the study's timeout of {timeout:g} s") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise PointFailed(f"{shlex.join(argv)} exited with status {proc.returncode}:\n"
                          f"{(out + err)[-OUTPUT_TAIL:]}")
    return out, wall


def run_command_point(spec: StudySpec, point: Point, out: Path) -> float:
    """Run the point's warm-ups and repeats, append its record; returns the best time."""
    command = spec.command
    deadline = time.monotonic() + spec.timeout
    start = utc_now()
    seconds = []
    probe = machine.Probe(children=True)  # the program's CPU time: its rusage as a child
    for repeat in range(-spec.warmup, spec.repeats):
        argv = command_argv(command, point, max(repeat, 0))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PointFailed(f"stopped after the study's timeout of {spec.timeout:g} s")
        stdout, wall = _run_once(argv, remaining)
        if repeat >= 0:
            left = max(deadline - time.monotonic(), MIN_REGEX_TIMEOUT)
            seconds.append(extract_seconds(command, stdout, wall, min(left, REGEX_TIMEOUT)))
    timings = np.array(seconds, dtype=float).reshape(spec.repeats, 1, 1)
    # One usage stands for all the program's ranks: their CPU time is summed in it.
    usage = machine.summarise([probe.stop()], ranks=point.ranks)
    template = shlex.join(command.argv)
    record = RunRecord(
        workload=COMMAND_WORKLOAD, backend="external", ranks=point.ranks, nodes=1,
        size=point.size, size_parameter="size", parameters={"command": template},
        repeats=spec.repeats, warmup=spec.warmup, start_utc=start, end_utc=utc_now(),
        status="ok", verified=True, verification_method="exit status",
        verification_detail="external command: exited 0 (its results are not checked)",
        phases=["total"], timings=timings,
        result={"time_source": command.time_source},
        provenance=provenance.collect_local(shlex.join(command_argv(command, point, 0))),
        run_id=uuid.uuid4().hex, machine=usage)
    append_run(out, record)
    return min(seconds)
