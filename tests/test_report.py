"""write_report: HTML (self-contained) and Markdown (PNG files beside it) are written, their
images exist and open, and nothing outside the HTML file is referenced."""

from __future__ import annotations

import base64
import io
import json
import re

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from hpc.errors import UserError
from hpc.scaling import ScalingPoint, StudyAnalysis, analyse, write_report
from tests.scaling_synth import RANKS, amdahl_time, gustafson_time, points

META = {"study": "heat2d <strong> & co", "workload": "heat2d", "backend": "cython",
        "kind": "strong", "size rule": "fixed n = 1024", "host": "node01 (2 cores)",
        "mpi": "MPICH 4.2", "git": "abc1234 (dirty)", "created": "2024-06-01T12:00:00+00:00"}


@pytest.fixture(scope="module")
def strong() -> StudyAnalysis:
    pts = points(amdahl_time(RANKS, 0.05, c_log2=0.2), seed=3)
    pts.append(ScalingPoint(128, 1000, np.array([np.nan]), ok=False, label="crashed-128"))
    return analyse("strong", pts, n_boot=100)


@pytest.fixture(scope="module")
def weak() -> StudyAnalysis:
    return analyse("weak", points(gustafson_time(RANKS[1:], 0.1), ranks=RANKS[1:], weak=True),
                   n_boot=100)


def _data_uri_images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


@pytest.mark.parametrize("which", ["strong", "weak"])
def test_html_is_self_contained_with_four_images_that_open(which, request, tmp_path):
    analysis = request.getfixturevalue(which)
    out = write_report(analysis, META, tmp_path / "report.html", "html")
    assert out == tmp_path / "report.html"
    text = out.read_text(encoding="utf-8")
    images = _data_uri_images(text)
    assert len(images) == 4
    for png in images:
        with Image.open(io.BytesIO(png)) as img:
            img.verify()
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.width > 400 and img.height > 300
    # nothing outside the file: every src is a data URI, no links, scripts or stylesheets
    assert re.findall(r'src="(?!data:)', text) == []
    for outside in ("http://", "https://", "<link", "<script", "href=", "url("):
        assert outside not in text
    assert list(tmp_path.iterdir()) == [out]  # no image files beside an HTML report
    # meta is rendered, escaped; the key results are there
    assert "heat2d &lt;strong&gt; &amp; co" in text and "<strong>" not in text
    assert "abc1234 (dirty)" in text
    assert f"p0 = {analysis.baseline_ranks}" in text
    assert analysis.comparison.verdict in text


def test_markdown_has_png_files_beside_it_that_open(strong, tmp_path):
    out = write_report(strong, META, tmp_path / "study.md", "md")
    text = out.read_text(encoding="utf-8")
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(names) == sorted(f"study-{n}.png" for n in
                                   ("speedup", "efficiency", "karp_flatt", "phases"))
    for name in names:
        pixels = matplotlib.image.imread(tmp_path / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.std() > 0  # not blank
    # the points table, the fitted parameters with intervals, the excluded run
    rows = [line for line in text.splitlines() if line.startswith("| 64 |")]
    assert len(rows) == 1 and "[" in rows[0]
    assert "| amdahl+log2 |" in text and "selected" in text
    assert "crashed-128 (128 ranks)" in text
    assert "Baseline: the smallest rank count fitted, p0 = 1" in text


def test_report_from_json_round_trip(strong, tmp_path):
    """The main session stores to_dict() as JSON and reports from it later."""
    restored = StudyAnalysis.from_dict(json.loads(json.dumps(strong.to_dict())))
    html = write_report(restored, {"study": "restored"}, tmp_path / "r.html", "html")
    assert len(_data_uri_images(html.read_text())) == 4


def test_folder_as_out_and_overwrite_leave_no_temporaries(weak, tmp_path):
    first = write_report(weak, {}, tmp_path, "md")
    assert first == tmp_path / "report.md"
    again = write_report(weak, {}, tmp_path, "md")
    assert again == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report.md"] + [f"report-{n}.png" for n in
                         ("speedup", "efficiency", "karp_flatt", "phases")])


def test_unknown_format_is_refused_before_writing(strong, tmp_path):
    with pytest.raises(UserError, match="unknown report format 'pdf'; use one of: html, md"):
        write_report(strong, {}, tmp_path / "r.pdf", "pdf")
    assert list(tmp_path.iterdir()) == []


def test_phases_other_than_compute_and_communication_are_stacked(tmp_path):
    pts = [ScalingPoint(p, 10, np.full(3, t), {"serial": np.full(3, 0.5 * t)}, label=str(p))
           for p, t in zip((1, 2, 4), amdahl_time((1, 2, 4), 0.1), strict=True)]
    out = write_report(analyse("strong", pts, n_boot=20), {"study": "s"}, tmp_path / "r.html")
    assert len(_data_uri_images(out.read_text())) == 4


def test_node_ladder_points_are_labelled_by_recorded_placement(strong, tmp_path):
    from hpc.scaling import Placement

    # As records' hostnames give them: 1 rank on one node, 2 ranks on two nodes, 4 ranks
    # on two nodes unevenly, 8 ranks on four nodes; the points beyond have no hosts.
    placement = {1: Placement.from_hosts(["n1"]), 2: Placement.from_hosts(["n1", "n2"]),
                 4: Placement.from_hosts(["n1", "n1", "n1", "n2"]),
                 8: Placement.from_hosts([f"n{i // 2}" for i in range(8)])}
    out = write_report(strong, META, tmp_path / "r.md", "md", placement)
    text = out.read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert "| 1 node × 1 rank | intra-node |" in rows["1"]
    assert "| 2 nodes × 1 rank | inter-node |" in rows["2"]
    assert "| 2 nodes × 3+1 ranks | inter-node |" in rows["4"]
    assert "| 4 nodes × 2 ranks | inter-node |" in rows["8"]
    assert "| – | – |" in rows["16"]  # no hosts recorded: not labelled
    assert "intra-node points (1 node): 1 (1 node × 1 rank); inter-node points: 2 (" in text
    for name in ("speedup", "efficiency", "karp_flatt", "phases"):  # the ticks relabelled
        Image.open(out.with_name(f"r-{name}.png")).verify()
