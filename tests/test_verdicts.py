"""Verdicts a user can trust: stable on clear truths, POP losses named right, outliers and
points measured on a busy machine kept out of the fits, and a report that agrees with
itself. Synthetic timings with known answers (tests/scaling_synth.py); the real machine
probe is tested in test_machine.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hpc.errors import UserError
from hpc.scaling import ScalingPoint, analyse, write_report
from hpc.scaling.pop import COMMUNICATION, LOAD_IMBALANCE, OVERSUBSCRIPTION, SERIAL_CODE
from hpc.scaling.selection import OVERHEAD, SERIAL
from tests.scaling_synth import rank_points

SEEDS = range(20)
BOOT = 5  # the verdict does not depend on the bootstrap; keep 60 analyses fast


@pytest.mark.parametrize("case, verdicts, own", [
    ("amdahl", {SERIAL}, SERIAL_CODE),
    ("log2", {OVERHEAD}, COMMUNICATION),
    # Uneven work fits the law best (no overhead term can make Karp–Flatt fall); the
    # phases name it for what it is.
    ("imbalance", {SERIAL}, LOAD_IMBALANCE),
])
def test_verdict_and_dominant_pop_loss_are_right_for_every_seed(case, verdicts, own):
    seen = set()
    for seed in SEEDS:
        a = analyse("strong", rank_points(case, seed=seed), n_boot=BOOT)
        seen.add((a.comparison.verdict, a.own_loss))
        assert a.comparison.verdict in verdicts, (seed, a.comparison.explanation)
        assert a.own_loss == own, (seed, a.diagnosis)
    assert len(seen) == 1


def test_pop_metrics_follow_their_definitions():
    a = analyse("strong", rank_points("imbalance", noise=0.0), n_boot=BOOT)
    at64 = a.points[-1].pop
    # rank 0 has 2 shares of 65: max = 2/65, mean = 1/64 of the work
    assert at64["load balance"] == pytest.approx((1 / 64) / (2 / 65), rel=0.02)
    assert at64["parallel efficiency"] == pytest.approx(
        at64["load balance"] * at64["communication efficiency"], rel=1e-9)
    assert at64["computation scalability"] == pytest.approx(1.0, rel=0.02)
    assert at64["global efficiency"] == pytest.approx(
        at64["parallel efficiency"] * at64["computation scalability"], rel=1e-9)
    assert a.points[0].pop["load balance"] == pytest.approx(1.0)


def test_an_outlier_repeat_is_flagged_and_barely_moves_the_point():
    clean = rank_points("amdahl", seed=4, repeats=7)
    dirty = rank_points("amdahl", seed=4, repeats=7)
    dirty[3].times = dirty[3].times.copy()
    dirty[3].times[2] *= 1.9  # another process was busy during one repeat
    a, b = (analyse("strong", pts, n_boot=BOOT) for pts in (clean, dirty))
    assert b.points[3].outliers == [pytest.approx(dirty[3].times[2])]
    assert b.points[3].repeats == 6
    assert any("outlier repeats" in w for w in b.warnings)
    assert all(not pt.outliers for i, pt in enumerate(b.points) if i != 3)
    # the noise is 3% per repeat: the point's time moves by less than that
    moved = abs(np.log(b.points[3].time.value / a.points[3].time.value))
    assert moved < 0.03


def _flag(points: list[ScalingPoint], ranks: set[int], why: str) -> list[ScalingPoint]:
    for pt in points:
        if pt.ranks in ranks:
            pt.conditions = [why]
            pt.cores = 8
    return points


def test_oversubscribed_points_are_kept_out_of_the_fits_but_shown():
    pts = _flag(rank_points("amdahl", seed=1), {16, 32, 64},
                "oversubscribed: 16 ranks on 8 cores")
    for pt in pts[-3:]:
        pt.times = pt.times * 5  # what oversubscription does to the time
    a = analyse("strong", pts, n_boot=BOOT)
    assert [pt.ranks for pt in a.points] == [1, 2, 4, 8]
    assert [pt.ranks for pt in a.flagged_points] == [16, 32, 64]
    assert all(pt.excluded.startswith("oversubscribed") for pt in a.flagged_points)
    assert a.dominant == OVERSUBSCRIPTION and "not the program's" in a.diagnosis
    assert a.law.fraction.contains(0.1)
    # 4 rank counts left: no overhead model, and the counts to add fit in the 8 cores
    assert a.overhead_fits == [] and a.suggested_ranks == [3]
    b = analyse("strong", pts, n_boot=BOOT, include_flagged=True)
    assert len(b.points) == 7 and not b.flagged_points
    assert any("--include-oversubscribed" in w for w in b.warnings)


def test_contended_points_are_fitted_only_when_nothing_else_is_left():
    pts = _flag(rank_points("amdahl", ranks=(1, 2, 4), seed=2), {1, 2},
                "contended: other processes kept 1.5 cores busy")
    a = analyse("strong", pts, n_boot=BOOT)
    assert len(a.points) == 3 and any("fitted anyway" in w for w in a.warnings)
    over = _flag(rank_points("amdahl", ranks=(1, 2, 4), seed=2), {2, 4},
                 "oversubscribed: 2 ranks on 1 core")
    with pytest.raises(UserError, match="--include-oversubscribed"):
        analyse("strong", over, n_boot=BOOT)


# --- the report agrees with itself --------------------------------------------------------

_ESTIMATE = re.compile(r"-?[0-9][0-9.e+-]* \[[^\]]+\]")


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_cells(text: str) -> set[str]:
    return {c.strip().replace("\\|", "|") for line in text.splitlines()
            if line.startswith("|") for c in line.strip("|").split(" | ")}


@pytest.mark.parametrize("case", ["amdahl", "log2"])
def test_report_summary_numbers_equal_the_tables(case, tmp_path):
    pts = _flag(rank_points(case, ranks=(1, 2, 4, 8, 16, 32, 64, 128), seed=5), {128},
                "oversubscribed: 128 ranks on 64 cores")
    a = analyse("strong", pts, n_boot=50)
    text = write_report(a, {"study": case}, tmp_path / "r.md", "md").read_text()
    summary, cells = _section(text, "Summary"), _table_cells(text)
    # every estimate the summary quotes is a cell, or inside one, of a table
    quoted = _ESTIMATE.findall(summary)
    assert len(quoted) >= 3
    for value in quoted:
        assert any(value in c for c in cells), value
    # the Δ it quotes are the fits table's column, sign included
    deltas = re.findall(r"(-?[0-9][0-9.e+-]*) for ([a-z0-9+]+)", summary)
    assert len(deltas) == 2
    fits = _section(text, "Fitted models").splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in fits
            if line.startswith("| amdahl")}
    for value, model in deltas:
        assert rows[model][6] == value
    # the verdict names the left-out point and the program's own loss; POP table present
    assert "Verdict: oversubscription" in summary and "128 ranks" not in cells
    assert "| 128* |" in text and "| load balance |" in text
    assert "no: oversubscribed" in text
    assert "p/p0 +" not in text  # q's definition never swallows an added term
    html = write_report(a, {"study": case}, tmp_path / "r.html", "html").read_text()
    assert html.count('<td style="background:') == 5 * 8  # 5 metrics × 8 rank counts


def test_plots_stay_in_range_and_label_every_measured_rank_count():
    from hpc.scaling.plots import karp_flatt_figure, speedup_figure

    pts = _flag(rank_points("log2", ranks=(1, 2, 4, 8, 16, 32), seed=6), {32},
                "oversubscribed: 32 ranks on 16 cores")
    a = analyse("strong", pts, n_boot=BOOT)
    assert a.comparison.verdict == OVERHEAD
    ax = speedup_figure(a, "t").axes[0]
    assert [round(t) for t in ax.get_xticks()] == [1, 2, 4, 8, 16, 32]
    assert ax.get_xlim()[1] <= 32 * 1.3  # a little beyond the last point, not 4x
    assert {1, 2, 4, 8, 16, 32} <= {round(t) for t in ax.get_yticks()}
    kf = karp_flatt_figure(a, "t").axes[0]
    curves = [line.get_ydata() for line in kf.get_lines() if "selected" in line.get_label()]
    assert curves and all(np.all((c >= 0) & (c <= 1)) for c in curves)
