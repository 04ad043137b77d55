"""Faults caused for real on the multi-node cluster (SlurmdTimeout=5, MessageTimeout=2, so
a dead node is declared in about 10 s): a node's slurmd killed and a node's link cut
while a 2-node run goes on, a checkpointing run preempted by an urgent job, a study
point whose node dies, and a job asking for more nodes than the cluster has.

Every test leaves the cluster as it found it: jobs cancelled, links up, slurmd running.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hpc.records import read_runs
from tests.conftest import MNODE_DIR, MNODE_SCRIPT, ROOT, assert_ok, run_hpc
from tests.slurm.jobs import sacct

pytestmark = pytest.mark.mnode

TWO_NODES = ("--nodes", "2", "--ntasks-per-node", "2", "--profile", "local-nodes")
# A heat2d run that goes on for minutes unless something stops it.
ENDLESS = ("--size", "128", "--steps", "10000000", "--repeats", "1", "--warmup", "0")


def cluster(*args: str, env: dict[str, str], timeout: float = 60) -> str:
    proc = subprocess.run(["bash", str(MNODE_SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"slurm-nodes.sh {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def slurm(*argv: str, env: dict[str, str]) -> str:
    """A Slurm client command (through the cluster's wrappers on PATH)."""
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc.stdout.strip()


def wait_until(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.3)


def job_state(job: str, env: dict[str, str]) -> str:
    return slurm("squeue", "-h", "-j", job, "-o", "%T|%r", env=env)


def node_state(node: str, env: dict[str, str]) -> str:
    return slurm("sinfo", "-h", "-N", "-n", node, "-p", "batch", "-o", "%T", env=env)


@contextlib.contextmanager
def submitted(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """``hpc submit ... --parsable``; the job is cancelled when the test leaves."""
    proc = run_hpc("submit", "heat2d", *TWO_NODES, *args, "--jobs-dir", str(tmp_path / "jobs"),
                   "--parsable", env=env)
    assert_ok(proc)
    job = proc.stdout.strip()
    try:
        yield job
    finally:
        subprocess.run(["scancel", job], env=env, timeout=60, check=False)


def hpc_wait(job: str, tmp_path: Path, env: dict[str, str], timeout: int) -> subprocess.Popen:
    """`hpc wait JOB` running in the background, as a user would leave it."""
    return subprocess.Popen([sys.executable, "-m", "hpc", "wait", job, "--timeout",
                             str(timeout), "--jobs-dir", str(tmp_path / "jobs")], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def slurmd_pid(node: str) -> int:
    return int((MNODE_DIR / "run" / f"slurmd-{node}.pid").read_text())


def leftover_ranks(node: str) -> list[int]:
    """Processes of this suite still running on ``node`` (its network namespace)."""
    pids = subprocess.run(["ip", "netns", "pids", f"hpcmn-{node}"], capture_output=True,
                          text=True, timeout=30, check=False).stdout.split()
    found = []
    for pid in pids:
        try:
            if b"hpc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def node_restored(node: str, env: dict[str, str]) -> Iterator[None]:
    """Whatever the test did to ``node``: its link up and its slurmd running afterwards."""
    try:
        yield
    finally:
        cluster("link", node, "up", env=env)
        try:
            alive = Path(f"/proc/{slurmd_pid(node)}").exists()
        except (OSError, ValueError):
            alive = False
        if not alive:
            cluster("run-on", node, "slurmd", env=env)


@pytest.mark.parametrize("fault", ["slurmd-killed", "link-cut"])
def test_node_failure_mid_run_is_reported_and_the_node_comes_back(mnode_env, tmp_path,
                                                                  fault):
    env = mnode_env
    out = tmp_path / "runs.h5"
    assert_ok(run_hpc("run", "pi", "--samples", "1000", "--out", str(out)))
    before = out.read_bytes()
    with submitted(tmp_path, env, *ENDLESS, "--out", str(out)) as job, \
            node_restored("node2", env):
        wait_until("job running", lambda: job_state(job, env).startswith("RUNNING"), 60)
        time.sleep(2)  # the ranks are past their start on both nodes
        waiter = hpc_wait(job, tmp_path, env, timeout=90)
        started = time.monotonic()
        if fault == "slurmd-killed":
            subprocess.run(["kill", "-9", str(slurmd_pid("node2"))], check=True, timeout=10)
        else:
            cluster("link", "node2", "down", env=env)
        stdout, stderr = waiter.communicate(timeout=120)
        seconds = time.monotonic() - started
        print(f"{fault}: hpc wait saw NODE_FAIL after {seconds:.1f} s")
        assert waiter.returncode == 1, stdout + stderr
        assert "NODE_FAIL" in stdout, stdout + stderr
        assert "node failure on node2" in stderr, stderr
        assert seconds < 60, f"NODE_FAIL took {seconds:.0f} s"
        # No second attempt: the run was not requeued from scratch behind our back.
        assert [row[1] for row in sacct(job, env, "-X", "-D")] == ["NODE_FAIL"]
    # The node is back in service (ReturnToService=2) and its orphaned ranks are gone.
    wait_until("node2 back in service", lambda: node_state("node2", env) == "idle", 60)
    wait_until("node2's ranks killed", lambda: not leftover_ranks("node2"), 60)
    assert out.read_bytes() == before, "the earlier record was touched"


def test_preempted_checkpointing_run_resumes_bit_for_bit(mnode_env, tmp_path):
    env = mnode_env
    out, ckpt = tmp_path / "runs.h5", tmp_path / "heat.ckpt.h5"
    # 0.3-1 ms a step on 4 ranks over TCP, so 30-100 s in all: long enough to be running
    # when the urgent job comes (30000 steps once ended first on an idle machine), short
    # enough to finish after the resume (on 1 rank these steps take a few seconds)
    run = ("--size", "192", "--steps", "100000", "--repeats", "1", "--warmup", "0")
    with submitted(tmp_path, env, *run, "--out", str(out), "--checkpoint", str(ckpt)) as job:
        waiter = hpc_wait(job, tmp_path, env, timeout=240)
        wait_until("ranks started on node2", lambda: bool(leftover_ranks("node2")), 60)
        time.sleep(3)  # past Python's start: the ranks handle SIGTERM from here on
        urgent = slurm("sbatch", "--parsable", "--partition=urgent", "--nodes=2",
                       "--ntasks-per-node=2", f"--output={tmp_path}/urgent.out",
                       "--wrap", "sleep 1", env=env)
        try:
            # Requeued; Slurm holds it back ~120 s (BeginTime): release it now.
            wait_until("job requeued", lambda: job_state(job, env).startswith("PENDING"), 60)
            assert ckpt.exists(), "the preempted ranks saved no checkpoint"
            slurm("scontrol", "update", f"JobId={job}", "StartTime=now", env=env)
            stdout, stderr = waiter.communicate(timeout=300)
        finally:
            waiter.kill()
            subprocess.run(["scancel", urgent], env=env, timeout=60, check=False)
    assert waiter.returncode == 0, stdout + stderr
    assert "requeued=1" in stderr, stderr  # hpc wait followed it through its restart
    assert [row[1] for row in sacct(job, env, "-X", "-D")] == ["PREEMPTED", "COMPLETED"]
    assert [row[1] for row in sacct(urgent, env, "-X")] == ["COMPLETED"]
    [record] = read_runs(out)
    assert record["resumed"] and record["segments"] == 2 and record["nodes"] == 2
    assert not ckpt.exists()
    reference = tmp_path / "reference.h5"
    assert_ok(run_hpc("run", "heat2d", *run, "--out", str(reference)))
    [expected] = read_runs(reference)
    for key in ("field", "checksum"):
        assert np.array_equal(record["result"][key], expected["result"][key]), key


STUDY = """
    name = "nodes-fault"
    workload = "heat2d"
    kind = "strong"
    ranks = [1, 2, 4]
    size = 96
    repeats = 2
    profile = "local-nodes"
    array_throttle = 1
    [params]
    steps = 3000
    [resources]
    ntasks_per_node = 2
    time = "00:05:00"
    """


def test_study_point_whose_node_dies_fails_alone_and_reruns_alone(mnode_env, tmp_path):
    env = mnode_env
    study, out = tmp_path / "study.toml", tmp_path / "study.h5"
    study.write_text(textwrap.dedent(STUDY))
    argv = [sys.executable, "-m", "hpc", "study", "run", str(study), "--launcher", "slurm",
            "--out", str(out), "--wait", "--jobs-dir", str(tmp_path / "jobs")]
    runner = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        with node_restored("node2", env):
            # The points run one at a time (array_throttle = 1 chains their arrays), 1, 2
            # then 4 ranks, each in its own allocation: cut node2 under the last, the only
            # one on two nodes.
            def last_point_running() -> bool:
                assert runner.poll() is None, runner.communicate()
                # Only this study's jobs: another job on two nodes is not ours to cut.
                lines = slurm("squeue", "-h", "-t", "RUNNING", "--name=nodes-fault", "-o",
                              "%i %D", env=env).splitlines()
                # Its ranks started on node2: a cut before that is a failed launch
                # (FAILED 105), not a node failure under a running point.
                return any(line.split()[1:] == ["2"] for line in lines) and bool(
                    leftover_ranks("node2"))

            wait_until("the 4-rank point running", last_point_running, 180)
            cluster("link", "node2", "down", env=env)
            stdout, stderr = runner.communicate(timeout=240)
    finally:
        runner.kill()
        subprocess.run(["scancel", "--name=nodes-fault"], env=env, timeout=60, check=False)
    assert runner.returncode != 0, stdout + stderr
    # One array per point (each its own allocation shape), so each point is task 0.
    assert len(re.findall(r"job \d+_0: NODE_FAIL", stdout)) == 1, stdout + stderr
    assert len(re.findall(r"job \d+_0: COMPLETED", stdout)) == 2, stdout + stderr
    assert sorted(r["ranks"] for r in read_runs(out)) == [1, 2]
    wait_until("node2 back in service", lambda: node_state("node2", env) == "idle", 60)

    rerun = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=300, check=False)
    assert_ok(rerun)
    runs = read_runs(out)
    assert sorted(r["ranks"] for r in runs) == [1, 2, 4]
    [last] = [r for r in runs if r["ranks"] == 4]
    # The one missing point reran alone: a plain job of its own (one run is one job).
    assert last["nodes"] == 2 and last["provenance"]["slurm"]["SLURM_JOB_ID"]
    assert "SLURM_ARRAY_TASK_ID" not in last["provenance"]["slurm"]


def test_more_nodes_than_the_cluster_has_is_refused(mnode_env, tmp_path):
    proc = run_hpc("submit", "heat2d", "--nodes", "3", "--ntasks-per-node", "1", "--profile",
                   "local-nodes", "--out", str(tmp_path / "r.h5"), "--jobs-dir",
                   str(tmp_path / "jobs"), env=mnode_env)
    if proc.returncode == 0:  # accepted after all: it must not stay queued
        subprocess.run(["scancel", proc.stdout.split()[2]], env=mnode_env, timeout=60,
                       check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # sbatch's own words (EnforcePartLimits=ALL; without it the job would wait forever,
    # PENDING with reason PartitionNodeLimit).
    assert "sbatch refused" in proc.stderr or "sbatch failed" in proc.stderr, proc.stderr
    assert "Node count specification invalid" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.h5").exists()
