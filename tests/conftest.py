"""Shared helpers: run the real `hpc` command (and so real mpiexec) in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every launched job is bounded: a hang fails the test instead of stalling CI.
RUN_TIMEOUT = 180


def run_hpc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_"))}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "hpc", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout,
                          check=False)


@pytest.fixture
def hpc():
    """The `hpc` command as a function: hpc("run", "pi", "--np", "2") -> CompletedProcess."""
    return run_hpc


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


# -- Slurm ------------------------------------------------------------------------------
# The local cluster of scripts/slurm-cluster.sh (started by `make test` when it can), or
# any cluster named by SLURM_CONF. Slurm tests use the `slurm_env` fixture, which skips
# them with the reason when no cluster answers.
SLURM_DIR = Path(os.environ.get("HPC_SLURM_DIR", "/tmp/hpc-slurm"))
SLURM_CLUSTER_SCRIPT = ROOT / "scripts" / "slurm-cluster.sh"


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """The environment for Slurm commands (SLURM_CONF set); skips when no cluster answers."""
    conf = os.environ.get("SLURM_CONF") or str(SLURM_DIR / "etc" / "slurm.conf")
    start = f"start one with `{SLURM_CLUSTER_SCRIPT.relative_to(ROOT)} start` (root with apt)"
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        pytest.skip(f"no Slurm commands (sbatch, sacct) on PATH: {start}")
    if not Path(conf).exists():
        pytest.skip(f"no Slurm configuration at {conf}: {start}, or set SLURM_CONF")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_"))}
    env["SLURM_CONF"] = conf
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                               text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the Slurm cluster of {conf} does not answer within 30 s: {start}")
    if nodes.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc"))
                                        for s in nodes.stdout.split()):
        pytest.skip(f"the Slurm cluster of {conf} has no node up ({nodes.stdout.strip()}"
                    f"{nodes.stderr.strip()}): {start}")
    return env


# -- the multi-node cluster ---------------------------------------------------------------
# scripts/slurm-nodes.sh (`scripts/slurm-cluster.sh start --nodes 2`, started by `make
# test` when it can): hosts in network namespaces, reached from here only through the
# client wrappers in its bin/ folder. Tests use the `mnode_env` fixture, which skips them
# with the reason when that cluster is not up.
MNODE_DIR = Path(os.environ.get("HPC_MNODE_DIR", "/tmp/hpc-mnode"))
MNODE_SCRIPT = ROOT / "scripts" / "slurm-nodes.sh"
MNODE_NODES = 2  # what the multi-node tests need


@pytest.fixture(scope="session")
def mnode_env() -> dict[str, str]:
    """The environment for the multi-node cluster's Slurm commands; skips when it is down."""
    start = (f"start it with `{SLURM_CLUSTER_SCRIPT.relative_to(ROOT)} start --nodes "
             f"{MNODE_NODES}` (root with apt)")
    conf, wrappers = MNODE_DIR / "etc" / "slurm.conf", MNODE_DIR / "bin"
    # Without the wrappers a client here would send the controller's private address to
    # the default route: never call Slurm for this cluster without them.
    if not conf.exists() or not (wrappers / "sinfo").exists():
        pytest.skip(f"no multi-node cluster at {MNODE_DIR}: {start}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_"))}
    env["SLURM_CONF"] = str(conf)
    env["PATH"] = os.pathsep.join([str(wrappers), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    try:
        nodes = subprocess.run(["sinfo", "-h", "-N", "-p", "batch", "-o", "%T"], env=env,
                               capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the multi-node cluster at {MNODE_DIR} does not answer within 30 s")
    up = [s for s in nodes.stdout.split() if s.startswith(("idle", "mix", "alloc"))]
    if nodes.returncode != 0 or len(up) < MNODE_NODES:
        pytest.skip(f"the multi-node cluster at {MNODE_DIR} has {len(up)} of the "
                    f"{MNODE_NODES} nodes needed up ({nodes.stdout.split()}"
                    f"{nodes.stderr.strip()}): {start}")
    return env


# -- a real study file ----------------------------------------------------------------
TINY_STUDY = """\
name = "tiny"
workload = "pi"
kind = "strong"
ranks = [1, 2]
size = 20000
repeats = 2
warmup = 0
"""


@pytest.fixture(scope="session")
def study_file(tmp_path_factory) -> Path:
    """A study file made by a real `hpc study run` (pi on 1 and 2 ranks, seconds): the
    input of the read-only and corrupt-file tests. Copy it before changing it."""
    folder = tmp_path_factory.mktemp("study")
    (folder / "tiny.toml").write_text(TINY_STUDY)
    out = folder / "tiny.h5"
    assert_ok(run_hpc("study", "run", str(folder / "tiny.toml"), "--out", str(out),
                      "--no-report"))
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`: -n 2 --dist loadgroup) the tests that use the
    Slurm cluster stay on one worker, one after another, as without xdist: they share
    one cluster and its job ids."""
    for item in items:
        if "slurm_env" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
        # The multi-node tests kill and cut nodes: none may run beside another of them
        # (`make test` runs tests/mnode in a serial pass of its own as well).
        if "mnode_env" in getattr(item, "fixturenames", ()) or item.get_closest_marker("mnode"):
            item.add_marker(pytest.mark.xdist_group("mnode"))
