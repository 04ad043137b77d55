"""scripts/slurm-cluster.sh itself: idempotent start, and stop touches only its own daemons.

A second cluster (its own folder and ports) is started beside the running one and
stopped; the first must go on answering with the same daemons.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SLURM_CLUSTER_SCRIPT

pytestmark = pytest.mark.slurm

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


def cluster(command: str, env: dict[str, str], timeout: float = 180):
    return subprocess.run(["bash", str(SLURM_CLUSTER_SCRIPT), command], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def pids(folder: Path) -> dict[str, int]:
    return {d: int((folder / "run" / f"{d}.pid").read_text()) for d in DAEMONS}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def script_cluster(slurm_env) -> tuple[Path, dict[str, str]]:
    """The running cluster's folder, when it was started by scripts/slurm-cluster.sh."""
    folder = Path(slurm_env["SLURM_CONF"]).parent.parent
    if not (folder / "run" / "slurmctld.pid").exists():
        pytest.skip(f"{slurm_env['SLURM_CONF']} is not a cluster of scripts/slurm-cluster.sh")
    return folder, {**slurm_env, "HPC_SLURM_DIR": str(folder)}


def free_port_range(count: int = 3) -> int:
    """The first of ``count`` consecutive TCP ports that are free now."""
    for first in range(17817, 18817, 10):
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    pytest.skip("no free TCP ports for a second cluster")


def test_start_when_running_changes_nothing(script_cluster):
    folder, env = script_cluster
    before = pids(folder)
    proc = cluster("start", env)
    assert proc.returncode == 0 and "already running" in proc.stderr, proc.stderr
    assert pids(folder) == before and all(alive(p) for p in before.values())
    assert cluster("status", env).returncode == 0


def test_stop_stops_only_its_own_daemons(script_cluster):
    first_folder, first_env = script_cluster
    first = pids(first_folder)
    folder = Path(tempfile.mkdtemp(prefix="hpc-slurm-test-"))  # short: socket paths
    env = {**first_env, "HPC_SLURM_DIR": str(folder), "HPC_SLURM_PORT": str(free_port_range()),
           "SLURM_CONF": str(folder / "etc" / "slurm.conf"), "HPC_SLURM_NO_INSTALL": "1"}
    try:
        proc = cluster("start", env)
        assert proc.returncode == 0, proc.stderr
        second = pids(folder)
        assert set(second.values()).isdisjoint(first.values())
        assert cluster("status", env).returncode == 0
        proc = cluster("stop", env)
        assert proc.returncode == 0, proc.stderr
        assert not any(alive(p) for p in second.values())
        assert cluster("status", env).returncode == 1
        # The first cluster runs on, with the same daemons, and still takes jobs.
        assert all(alive(p) for p in first.values())
        assert cluster("status", first_env).returncode == 0
    finally:
        cluster("stop", env)
        shutil.rmtree(folder, ignore_errors=True)


def test_stop_when_stopped_is_fine(tmp_path):
    env = {**os.environ, "HPC_SLURM_DIR": str(tmp_path / "never-started")}
    proc = cluster("stop", env)
    assert proc.returncode == 0 and "nothing to stop" in proc.stderr


@pytest.mark.parametrize("variable, value, message", [
    ("HPC_SLURM_DIR", "relative/dir", "must be an absolute path"),
    ("HPC_SLURM_DIR", "/tmp/a b", "may hold only"),
    ("HPC_SLURM_CPUS", "0", "HPC_SLURM_CPUS must be a positive number"),
])
def test_bad_settings_are_refused(variable, value, message):
    proc = cluster("start", {**os.environ, variable: value})
    assert proc.returncode == 3 and message in proc.stderr


def test_unknown_command_prints_usage():
    proc = cluster("restart", dict(os.environ))
    assert proc.returncode == 2 and "usage:" in proc.stderr
