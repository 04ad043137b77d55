"""Node-ladder studies on the multi-node cluster: heat2d on 1 then 2 nodes x 2 ranks, with
the slurm launcher (one array per point shape) and with submitit, each point exactly its
nodes; the report labels each point by the nodes its ranks ran on, as recorded, and
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
    ranks_per_node = 2
    launcher = "slurm"
    profile = "local-nodes"
    size = 64
    repeats = 2
    warmup = 0
    [params]
    steps = 20
    """


def check_ran_as_asked(out) -> None:
    """Each point's ranks on its own nodes: the hosts the record names, and its count."""
    runs = {r["ranks"]: r for r in read_runs(out)}
    assert sorted(runs) == [2, 4]
    assert runs[2]["nodes"] == 1 and len(runs[2]["provenance"]["hostnames"]) == 2
    assert runs[4]["nodes"] == 2
    assert sorted(runs[4]["provenance"]["hostnames"]) == ["node1", "node1", "node2", "node2"]


def check_report_rows(out, tmp_path) -> None:
    """The points table of the study's Markdown report, written here from the file."""
    md = tmp_path / "ladder.md"
    assert_ok(run_hpc("study", "report", str(out), "--format", "md", "--out", str(md)))
    rows = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    assert any("| 2 | 1 node × 2 ranks | intra-node |" in row for row in rows), rows
    assert any("| 4 | 2 nodes × 2 ranks | inter-node |" in row for row in rows), rows


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
    check_ran_as_asked(out)
    # The report job's report, written on the cluster.
    html = out.with_suffix(".html").read_text()
    assert "nodes × ranks" in html and "1 node × 2 ranks" in html, html
    assert "2 nodes × 2 ranks" in html and "inter-node" in html and "intra-node" in html
    assert "nodes not as asked" not in html  # each point ran on the nodes it asked for
    # The same from the study file here, in Markdown: one row per point.
    check_report_rows(out, tmp_path)


def test_node_ladder_on_submitit_runs_each_point_on_its_nodes(mnode_env, tmp_path):
    study, out = tmp_path / "ladder.toml", tmp_path / "ladder.h5"
    study.write_text(textwrap.dedent(STUDY))
    try:
        proc = run_hpc("study", "run", str(study), "--launcher", "submitit", "--out",
                       str(out), "--jobs-dir", str(tmp_path / "jobs"), env=mnode_env,
                       timeout=240)
    finally:
        subprocess.run(["scancel", "--name=nodes-ladder"], env=mnode_env, timeout=60,
                       check=False)
    assert_ok(proc)
    check_ran_as_asked(out)
    check_report_rows(out, tmp_path)
