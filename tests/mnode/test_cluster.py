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

PINGPONG = ROOT / "scripts" / "mpi-pingpong.py"


def script(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(MNODE_SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def tx_bytes(node: str, env: dict[str, str]) -> int:
    proc = script("run-on", node, "cat", "/sys/class/net/eth0/statistics/tx_bytes", env=env)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def pingpong(env: dict[str, str], nodes: int, ucx_tls: str | None) -> tuple[dict, int]:
    """scripts/mpi-pingpong.py on 2 ranks under srun; its figures and node1's bytes sent."""
    run_env = {k: v for k, v in env.items() if k != "UCX_TLS"}
    if ucx_tls:
        run_env["UCX_TLS"] = ucx_tls
    before = tx_bytes("node1", env)
    proc = subprocess.run(["srun", "--mpi=pmi2", f"--nodes={nodes}", "--ntasks=2",
                           sys.executable, str(PINGPONG), "--seconds", "0.5"], env=run_env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), tx_bytes("node1", env) - before


def test_mpi_traffic_between_nodes_crosses_the_network(mnode_env):
    from hpc.slurm.profiles import load_profile

    ucx = dict(load_profile("local-nodes").resources.environment)["UCX_TLS"]
    inter, sent = pingpong(mnode_env, 2, ucx)
    assert inter["inter_node"] and inter["hosts"] == ["node1", "node2"]
    # Every 4 MiB message of the bandwidth half went out of node1's link.
    assert sent >= inter["large_bytes"] * inter["round_trips"][1], (inter, sent)
    intra, _ = pingpong(mnode_env, 1, ucx)
    assert not intra["inter_node"]
    # UCX's default sees one kernel and uses shared memory between the "nodes": the
    # setting in the profile is what puts the traffic on the link (MULTINODE.md).
    default, sent_default = pingpong(mnode_env, 2, None)
    assert sent_default < default["large_bytes"], (default, sent_default)
    print(f"\nping-pong 8 B latency / 4 MiB bandwidth: inter-node {inter['latency_us']} us "
          f"{inter['bandwidth_GBps']} GB/s; intra-node {intra['latency_us']} us "
          f"{intra['bandwidth_GBps']} GB/s; inter-node with UCX defaults (shared memory) "
          f"{default['latency_us']} us {default['bandwidth_GBps']} GB/s")


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
