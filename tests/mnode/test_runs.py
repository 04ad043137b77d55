"""Runs across nodes: `hpc submit --nodes 2 --ntasks-per-node 2` on the multi-node cluster
puts 4 ranks on 2 hosts, by sbatch and by submitit; the record counts the hosts the ranks
ran on, and the result equals the 1-rank result (exactly for heat2d's field and pi's
hits, to round-off for nbody and kmeans)."""

from __future__ import annotations

import numpy as np
import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc

pytestmark = pytest.mark.mnode

# workload: (its small problem, the result compared, tolerance: None = bit for bit)
CASES = {
    "heat2d": (("--size", "64", "--steps", "40"), "field", None),
    "pi": (("--samples", "400003"), "hits", None),
    "nbody": (("--n", "61", "--steps", "4"), "positions", 1e-12),
    "kmeans": (("--points", "20001", "--k", "4", "--iterations", "5"), "centroids", 1e-9),
}
TWO_NODES = ("--nodes", "2", "--ntasks-per-node", "2", "--profile", "local-nodes")


def one_rank_result(tmp_path, workload: str, args: tuple[str, ...]) -> dict:
    out = tmp_path / "one-rank.h5"
    assert_ok(run_hpc("run", workload, *args, "--repeats", "1", "--warmup", "0",
                      "--out", str(out)))
    return read_runs(out)[0]["result"]


def check_two_node_record(out, workload: str, one_rank: dict) -> None:
    args, key, tolerance = CASES[workload]
    [run] = read_runs(out)
    assert run["ranks"] == 4 and run["verified"], run["verification_detail"]
    # Slurm's block distribution: ranks 0-1 on the first node, 2-3 on the second.
    assert run["provenance"]["hostnames"] == ["node1", "node1", "node2", "node2"]
    assert run["nodes"] == 2
    # The profile's MPI setting is what the ranks ran with (inter-node traffic over TCP).
    assert run["provenance"]["environment"]["FI_PROVIDER"] == "tcp"
    if workload == "heat2d":  # --exchange auto: no shared memory across hosts
        assert run["result"]["exchange"] == "overlapped"
    got, expected = run["result"][key], one_rank[key]
    if tolerance is None:
        assert np.array_equal(got, expected), f"{workload} {key} differs from 1 rank"
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("workload", sorted(CASES))
def test_sbatch_run_on_two_nodes_equals_one_rank(mnode_env, tmp_path, workload):
    args = CASES[workload][0]
    out = tmp_path / "two-nodes.h5"
    proc = run_hpc("submit", workload, *args, *TWO_NODES, "--repeats", "1", "--warmup", "0",
                   "--out", str(out), "--jobs-dir", str(tmp_path / "jobs"), "--wait",
                   "--wait-timeout", "150", env=mnode_env)
    assert_ok(proc)
    assert "COMPLETED" in proc.stdout
    check_two_node_record(out, workload, one_rank_result(tmp_path, workload, args))


def test_submitit_run_on_two_nodes_equals_one_rank(mnode_env, tmp_path):
    args = CASES["heat2d"][0]
    out = tmp_path / "two-nodes.h5"
    proc = run_hpc("submit", "heat2d", *args, *TWO_NODES, "--launcher", "submitit",
                   "--repeats", "1", "--warmup", "0", "--out", str(out), "--jobs-dir",
                   str(tmp_path / "jobs"), "--wait", "--wait-timeout", "150", env=mnode_env)
    assert_ok(proc)
    assert "(submitit)" in proc.stdout
    check_two_node_record(out, "heat2d", one_rank_result(tmp_path, "heat2d", args))


def test_shared_exchange_across_nodes_is_refused_by_name(mnode_env, tmp_path):
    """heat2d --exchange shared asks for one shared-memory window: on two hosts the job
    fails at once with the reason and what to use instead, and records nothing."""
    out = tmp_path / "refused.h5"
    proc = run_hpc("submit", "heat2d", "--size", "64", "--steps", "4", "--exchange",
                   "shared", *TWO_NODES, "--out", str(out), "--jobs-dir",
                   str(tmp_path / "jobs"), "--wait", "--wait-timeout", "150", env=mnode_env)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "--exchange shared needs every rank on one node" in text, text
    assert "Traceback" not in text
    assert not out.exists()
