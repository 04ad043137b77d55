"""scripts/slurm-nodes.sh itself: MPI traffic between nodes really crosses the simulated
network with the project's MPI settings; a second cluster beside the running one starts,
is idempotent, and stops leaving no namespace and no process, without touching the root
namespace's network; bad usage is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import MNODE_SCRIPT, ROOT, SLURM_CLUSTER_SCRIPT

pytestmark = pytest.mark.mnode


def script(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(MNODE_SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def tx_bytes(node: str, env: dict[str, str]) -> int:
    proc = script("run-on", node, "cat", "/sys/class/net/eth0/statistics/tx_bytes", env=env)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def bench_mpi(env: dict[str, str], nodes: int, settings: dict[str, str]) -> tuple[dict, int]:
    """`hpc bench --mpi --quick`'s measurement on 2 ranks under srun, one per node when
    ``nodes`` is 2, with these MPI settings only; its figures and the bytes node1 sent
    meanwhile."""
    run_env = {k: v for k, v in env.items()
               if not k.startswith(("UCX_", "FI_", "MPIR_CVAR_"))} | settings
    before = tx_bytes("node1", env)
    proc = subprocess.run(["srun", "--mpi=pmi2", f"--nodes={nodes}", "--ntasks=2",
                           sys.executable, "-m", "mpi4py", "-m", "hpc.bench_mpi", "--quick"],
                          env=run_env, capture_output=True, text=True, timeout=180,
                          check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), tx_bytes("node1", env) - before


def one_way(figures: dict, nbytes: int) -> float:
    return next(row["one_way_us"] for row in figures["pingpong"] if row["bytes"] == nbytes)


def test_mpi_traffic_between_nodes_crosses_the_network(mnode_env):
    from hpc.slurm.profiles import load_profile

    settings = dict(load_profile("local-nodes").resources.environment)
    inter, sent = bench_mpi(mnode_env, 2, settings)
    # The ping-pong alone sends 64 round trips x 5 samples of 256 KiB from rank 0 (80 MiB).
    assert sent >= 64 << 20, sent
    intra, _ = bench_mpi(mnode_env, 1, settings)
    # MPICH's default, UCX, sees one kernel and uses shared memory between the "nodes":
    # the settings in the profile are what put the traffic on the link (MULTINODE.md).
    default, sent_default = bench_mpi(mnode_env, 2, {})
    assert sent_default < 1 << 20, sent_default
    big = 256 << 10
    print("\none-way 8 B / 256 KiB, us: inter-node (OFI over TCP) "
          f"{one_way(inter, 8):.2f} / {one_way(inter, big):.1f}; intra-node "
          f"{one_way(intra, 8):.2f} / {one_way(intra, big):.1f}; inter-node with UCX's "
          f"defaults (shared memory) {one_way(default, 8):.2f} / {one_way(default, big):.1f}")


def root_network() -> str:
    """What the root namespace's network looks like: links, addresses, routes."""
    return "\n".join(subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                                    check=True).stdout
                     for args in (["-br", "link"], ["-br", "addr"], ["route"],
                                  ["-6", "route"]))


def test_second_cluster_beside_the_first_leaves_no_trace(mnode_env, tmp_path):
    env = {**os.environ, "HPC_MNODE_DIR": str(tmp_path / "c2"), "HPC_MNODE_PREFIX": "hpct2-",
           "HPC_MNODE_NET": "10.211.12"}
    network = root_network()
    first = script("status", env=mnode_env)
    assert first.returncode == 0, first.stdout + first.stderr
    try:
        started = script("start", "--nodes", "1", "--link-rate", "500mbit", env=env)
        assert started.returncode == 0, started.stderr
        again = script("start", "--nodes", "1", env=env)
        assert again.returncode == 0 and "already running" in again.stderr, again.stderr
        hostname = script("run-on", "node1", "hostname", env=env)
        assert hostname.stdout.strip() == "node1", hostname.stderr
        qdisc = script("run-on", "node1", "tc", "qdisc", "show", "dev", "eth0", env=env)
        assert "tbf" in qdisc.stdout and "500Mbit" in qdisc.stdout, qdisc.stdout
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
        assert {"hpct2-ctl", "hpct2-node1", "hpct2-switch"} <= {
            line.split()[0] for line in names.splitlines() if line}
        assert root_network() == network
    finally:
        stopped = script("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30,
                           check=True).stdout
    assert "hpct2-" not in names
    assert root_network() == network
    # The first cluster did not notice.
    assert script("status", env=mnode_env).stdout == first.stdout


@pytest.mark.parametrize("args, message", [
    (("run-on", "nosuchhost", "true"), "HOST is ctl or nodeI"),
    (("run-on", "ctl"), "run-on HOST CMD"),
    (("start", "--nodes", "0"), "--nodes must be 1 to 64"),
    (("start", "--link-rate", "fast"), "--link-rate: a tc rate"),
    (("link", "node1", "sideways"), "link HOST up|down"),
    (("frobnicate",), "usage"),
])
def test_bad_usage_is_refused(args, message):
    proc = script(*args, env={**os.environ, "HPC_MNODE_DIR": "/nonexistent/hpc-mnode"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


@pytest.mark.parametrize("args, message", [
    (("start", "--nodes", "0"), "--nodes must be 1 to 64"),
    (("run-on", "nosuchhost", "true"), "HOST is ctl or nodeI"),
])
def test_single_node_script_hands_nodes_and_run_on_over(args, message):
    """scripts/slurm-cluster.sh with --nodes (or run-on) is the multi-node script."""
    proc = subprocess.run(["bash", str(SLURM_CLUSTER_SCRIPT), *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "HPC_MNODE_DIR": "/nonexistent/hpc-mnode"})
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
