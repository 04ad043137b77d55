"""Node-ladder studies on the multi-node cluster: heat2d on 1 then 2 nodes, with the slurm
launcher (1 rank per node) and with submitit (2 ranks per node, each point exactly its
nodes); the report labels each point by the nodes its ranks ran on, as recorded, and
separates the intra-node point from the inter-node one."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc

pytestmark = pytest.mark.mnode

STUDY = """
    name = "nodes-ladder"
    workload = "heat2d"
    kind = "strong"
    nodes = {from = 1, to = 2}
    ranks_per_node = 1
    launcher = "slurm"
    profile = "local-nodes"
    size = 64
    repeats = 2
    warmup = 0
    [params]
    steps = 20
    """


def md_rows(out, tmp_path) -> list[str]:
    """The points table of the study's Markdown report, written here."""
    md = tmp_path / "ladder.md"
    assert_ok(run_hpc("study", "report", str(out), "--format", "md", "--out", str(md)))
    return [line for line in md.read_text().splitlines() if "node ×" in line or
            "nodes ×" in line]


def test_node_ladder_study_reports_points_by_recorded_nodes(mnode_env, tmp_path):
    study, out = tmp_path / "ladder.toml", tmp_path / "ladder.h5"
    study.write_text(textwrap.dedent(STUDY))
    try:
        proc = run_hpc("study", "run", str(study), "--out", str(out), "--wait",
                       "--jobs-dir", str(tmp_path / "jobs"), env=mnode_env, timeout=240)
    finally:
        subprocess.run(["scancel", "--name=nodes-ladder"], env=mnode_env, timeout=60,
                       check=False)
    assert_ok(proc)
    runs = read_runs(out)
    # The nodes each point's ranks ran on, counted from their hosts.
    assert sorted((r["ranks"], r["nodes"]) for r in runs) == [(1, 1), (2, 2)]
    [two] = [r for r in runs if r["ranks"] == 2]
    assert sorted(two["provenance"]["hostnames"]) == ["node1", "node2"]
    # The report job's report, written on the cluster.
    html = out.with_suffix(".html").read_text()
    assert "nodes × ranks" in html and "1 node × 1 rank" in html, html
    assert "2 nodes × 1 rank" in html and "inter-node" in html and "intra-node" in html
    assert "nodes not as asked" not in html  # each point ran on the nodes it asked for
    # The same from the study file here, in Markdown: one row per point.
    rows = md_rows(out, tmp_path)
    assert any("| 1 | 1 node × 1 rank | intra-node |" in row for row in rows), rows
    assert any("| 2 | 2 nodes × 1 rank | inter-node |" in row for row in rows), rows


def test_node_ladder_on_submitit_runs_each_point_on_its_nodes(mnode_env, tmp_path):
    study, out = tmp_path / "ladder.toml", tmp_path / "ladder.h5"
    study.write_text(textwrap.dedent(STUDY).replace("ranks_per_node = 1",
                                                    "ranks_per_node = 2"))
    try:
        proc = run_hpc("study", "run", str(study), "--launcher", "submitit", "--out",
                       str(out), "--jobs-dir", str(tmp_path / "jobs"), env=mnode_env,
                       timeout=240)
    finally:
        subprocess.run(["scancel", "--name=nodes-ladder"], env=mnode_env, timeout=60,
                       check=False)
    assert_ok(proc)
    hosts = {r["ranks"]: r["provenance"]["hostnames"] for r in read_runs(out)}
    assert len(set(hosts[2])) == 1 and len(hosts[2]) == 2  # 1 node x 2 ranks
    assert sorted(hosts[4]) == ["node1", "node1", "node2", "node2"]
    rows = md_rows(out, tmp_path)
    assert any("| 2 | 1 node × 2 ranks | intra-node |" in row for row in rows), rows
    assert any("| 4 | 2 nodes × 2 ranks | inter-node |" in row for row in rows), rows
