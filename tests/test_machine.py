"""The machine during a point, measured for real (hpc.machine): a busy process competing
for the run's core makes the point contended; a study with more ranks than cores has
those points left out of the fits, with the reason in its report. Cores are limited with
the CPU affinity, which the ranks inherit, so that the tests mean the same on any
machine with 2 or more cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.test_study_run import write_study

pytestmark = pytest.mark.slow

CORES = sorted(os.sched_getaffinity(0))
# Runs the rest of the command line on the listed cores only.
PINNED = "import os, sys; os.sched_setaffinity(0, {%s}); os.execv(sys.argv[1], sys.argv[1:])"
BUSY = "while True: pass"


def _pinned(cores: list[int], *argv: str) -> list[str]:
    return [sys.executable, "-c", PINNED % ", ".join(map(str, cores)), *argv]


def test_a_point_run_beside_a_busy_process_is_flagged_contended(tmp_path):
    core = CORES[:1]
    busy = [subprocess.Popen(_pinned(core, sys.executable, "-c", BUSY)) for _ in range(2)]
    try:
        out = tmp_path / "runs.h5"
        proc = subprocess.run(
            _pinned(core, sys.executable, "-m", "hpc", "run", "heat2d", "--np", "1",
                    "--size", "1024", "--steps", "100", "--repeats", "3", "--out", str(out),
                    "--quiet"), capture_output=True, text=True, timeout=300, check=False)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert_ok(proc)
    machine = read_runs(out)[0]["machine"]
    assert machine["cores_available"] == 1 and not machine["oversubscribed"]
    assert machine["contended"], {k: v for k, v in machine.items() if "rank" not in k} | {
        "cpu": machine["rank_cpu_seconds"], "wall": machine["rank_wall_seconds"]}
    # two busy loops on the one core: the rank got well under its wall time as CPU
    cpu, wall = machine["rank_cpu_seconds"][0], machine["rank_wall_seconds"][0]
    assert wall >= 0.2 and cpu < 0.7 * wall
    assert machine["other_busy_cores"] >= 0.25


@pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores to run 3 ranks on 2")
def test_a_study_with_more_ranks_than_cores_leaves_those_points_out(tmp_path):
    study = write_study(tmp_path, """
        name = "over"
        workload = "heat2d"
        kind = "strong"
        ranks = [1, 2, 3]
        size = 96
        repeats = 3
        warmup = 0
        [params]
        steps = 10
        """, name="over")
    out = tmp_path / "over.h5"
    proc = subprocess.run(
        _pinned(CORES[:2], sys.executable, "-m", "hpc", "study", "run", str(study), "--out",
                str(out), "--format", "md"), capture_output=True, text=True, timeout=600,
        check=False)
    assert_ok(proc)
    runs = {r["ranks"]: r["machine"] for r in read_runs(out)}
    assert [runs[r]["oversubscribed"] for r in (1, 2, 3)] == [False, False, True]
    assert runs[3]["cores_available"] == 2 and runs[3]["ranks_times_threads_per_node"] == 3
    report = out.with_suffix(".md").read_text()
    assert "Verdict: oversubscription" in report
    assert "oversubscribed: 3 ranks on 2 cores, so ranks took turns on the cores; a rank " \
        "waited" in report
    assert len(runs[3]["rank_wait_seconds"]) == 3
    assert "| 3* |" in report  # the POP table shows it, marked as not fitted
    with h5py.File(out, "r") as f:
        analysis = json.loads(f.attrs["analysis"])
    assert [p["ranks"] for p in analysis["points"]] == [1, 2]
    assert [p["ranks"] for p in analysis["flagged_points"]] == [3]
    # asked for, the point is fitted after all, and the report says so
    again = run_hpc("study", "report", str(out), "--format", "md", "--include-oversubscribed")
    assert_ok(again)
    assert "--include-oversubscribed" in out.with_suffix(".md").read_text()
