"""hpc.scaling: laws, fits with known answers, model selection, predictions, bad input,
serialisation and compare. All data are synthetic with a known truth (tests/scaling_synth).

Each data set has a fixed seed, so every test is deterministic. A 95% interval misses the
truth in about 1 data set in 20 by design; that the intervals are calibrated is tested
over 20 seeds in test_intervals_cover_the_truth_in_most_data_sets.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hpc.errors import UserError
from hpc.scaling import (
    ScalingPoint,
    StudyAnalysis,
    amdahl_speedup,
    analyse,
    compare,
    efficiency,
    fit_amdahl,
    fit_gustafson,
    fit_overhead,
    gustafson_fraction,
    gustafson_speedup,
    karp_flatt,
)
from hpc.scaling.laws import one_rank_fraction
from hpc.scaling.selection import OVERHEAD, SERIAL, UNDETERMINED
from tests.scaling_synth import RANKS, amdahl_time, gustafson_time, noisy, points

BOOT = 200  # resamples in tests: enough for stable 95% intervals, quick on 2 cores


# --- the formulas -------------------------------------------------------------------------

def test_laws_known_values():
    assert amdahl_speedup(4, 0.0) == pytest.approx(4.0)
    assert amdahl_speedup(4, 1.0) == pytest.approx(1.0)
    assert amdahl_speedup(10, 0.1) == pytest.approx(1 / (0.1 + 0.09))
    assert gustafson_speedup(64, 0.25) == pytest.approx(64 - 0.25 * 63)
    assert efficiency(6.0, 8) == pytest.approx(0.75)
    assert efficiency(6.0, 8, p0=2) == pytest.approx(1.5)  # speedup relative to 2 ranks
    np.testing.assert_allclose(amdahl_speedup(np.array([8, 16]), 0.2, p0=8), [1, 1 / 0.6])


@pytest.mark.parametrize("f", [0.0, 0.02, 0.1, 0.3, 0.9])
@pytest.mark.parametrize("p0", [1, 4])
def test_karp_flatt_equals_f_on_amdahl(f, p0):
    p = p0 * np.array([2, 4, 16, 1024])
    np.testing.assert_allclose(karp_flatt(amdahl_speedup(p, f, p0), p, p0), f, atol=1e-12)
    assert math.isnan(karp_flatt(1.0, p0, p0))  # undefined at the baseline


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.5])
def test_gustafson_fraction_equals_alpha_on_gustafson(alpha):
    p = np.array([2, 8, 64])
    np.testing.assert_allclose(gustafson_fraction(gustafson_speedup(p, alpha), p), alpha,
                               atol=1e-12)


def test_rank_counts_below_the_baseline_are_refused():
    with pytest.raises(ValueError, match="baseline"):
        amdahl_speedup(2, 0.1, p0=4)


@pytest.mark.parametrize("kind, law", [("strong", amdahl_time), ("weak", gustafson_time)])
def test_fraction_with_a_larger_baseline_converts_back_to_one_rank(kind, law):
    """Rebasing keeps the law's form; one_rank_fraction undoes the change of baseline."""
    ranks = [4, 8, 16, 32, 64]
    fit = (fit_amdahl if kind == "strong" else fit_gustafson)(ranks, law(ranks, 0.1))
    assert fit.baseline_ranks == 4
    assert fit.fraction.value != pytest.approx(0.1, abs=1e-3)
    assert one_rank_fraction(kind, fit.fraction.value, 4) == pytest.approx(0.1, abs=1e-9)


# --- known answers with noise ----------------------------------------------------------------

@pytest.mark.parametrize("f", [0.02, 0.1, 0.3])
def test_fit_amdahl_recovers_f_inside_a_narrow_interval(f):
    fit = fit_amdahl(RANKS, noisy(amdahl_time(RANKS, f), 5, 0.03, seed=11), n_boot=BOOT)
    assert fit.f_ci[0] <= f <= fit.f_ci[1]
    assert fit.f_ci[1] - fit.f_ci[0] < 0.25 * f  # informative, not absurdly wide
    assert fit.ci_method.startswith("union of a bootstrap")
    assert fit.t0.contains(10.0)


@pytest.mark.parametrize("alpha", [0.02, 0.1, 0.3])
def test_fit_gustafson_recovers_alpha_inside_a_narrow_interval(alpha):
    fit = fit_gustafson(RANKS, noisy(gustafson_time(RANKS, alpha), 5, 0.03, seed=12),
                        n_boot=BOOT)
    assert fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1]
    # weak scaling moves times by only alpha (here 2-30%) against 3% noise: measured widths
    # are 0.04-0.09 for these data, so 0.1 is informative on [0, 1] but not precise
    assert fit.alpha_ci[1] - fit.alpha_ci[0] < 0.1
    with pytest.raises(AttributeError):
        fit.f  # noqa: B018 - a weak fit has alpha, not f


@pytest.mark.parametrize("fit, law", [(fit_amdahl, amdahl_time), (fit_gustafson, gustafson_time)])
def test_intervals_cover_the_truth_in_most_data_sets(fit, law):
    """95% intervals should hold the truth in about 19 of 20 data sets; demand 17.

    Fewer than 17 of 20 happens by chance with probability 1.6% at 95% coverage (the
    seeds are fixed, so the test is deterministic); the bootstrap alone (~90% measured)
    would make this likely to fail.
    """
    hits = sum(fit(RANKS, noisy(law(RANKS, 0.1), 5, 0.03, seed=100 + s),
                   n_boot=BOOT).fraction.contains(0.1) for s in range(20))
    assert hits >= 17


def test_noise_free_amdahl_karp_flatt_equals_f_at_every_point():
    a = analyse("strong", points(amdahl_time(RANKS, 0.1), repeats=3, noise=0.0), n_boot=50)
    for pt in a.points[1:]:
        assert pt.karp_flatt.value == pytest.approx(0.1, abs=1e-9)
    assert a.points[0].karp_flatt is None
    assert a.law.f == pytest.approx(0.1, abs=1e-9)
    # all repeats identical: no noise, so degenerate (zero-width) intervals, and no crash
    assert a.law.f_ci[0] == pytest.approx(a.law.f_ci[1])
    assert any("zero width" in w for w in a.warnings)


def test_baseline_is_the_smallest_rank_count_whatever_the_order():
    pts = points(amdahl_time([16, 2, 8, 4], 0.1), ranks=[16, 2, 8, 4], noise=0.0)
    a = analyse("strong", pts, n_boot=20)
    assert a.baseline_ranks == 2
    assert [pt.ranks for pt in a.points] == [2, 4, 8, 16]
    assert a.baseline_time.value == pytest.approx(amdahl_time(2, 0.1))
    # speedup relative to 2 ranks, f relative to the 2-rank run (Amdahl with p/p0)
    f2 = 0.1 * 2 / (1 + 0.1)
    assert a.points[-1].speedup.value == pytest.approx(amdahl_speedup(16, f2, 2))
    assert a.law.f == pytest.approx(f2, abs=1e-9)


# --- which model the data support ---------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pure_amdahl_data_select_serial_code(seed):
    a = analyse("strong", points(amdahl_time(RANKS, 0.05), seed=seed), n_boot=BOOT)
    assert a.comparison.verdict == SERIAL
    assert a.comparison.selected == "amdahl"
    assert a.comparison.delta <= 2
    assert a.law.fraction.contains(0.05)


def test_log2_overhead_data_select_the_overhead_model():
    a = analyse("strong", points(amdahl_time(RANKS, 0.05, c_log2=0.3), seed=4), n_boot=BOOT)
    assert a.comparison.verdict == OVERHEAD
    assert a.comparison.selected == "amdahl+log2"
    assert a.comparison.delta > 10
    assert a.selected.overhead.contains(0.3)
    assert a.karp_flatt_trend.low > 0  # Karp–Flatt rises with p: overhead
    assert "overhead" in a.comparison.explanation


def test_linear_overhead_data_select_the_usl_model():
    a = analyse("strong", points(amdahl_time(RANKS, 0.02, c_linear=0.02), seed=5), n_boot=BOOT)
    assert a.comparison.selected == "amdahl+linear"
    assert a.selected.overhead.contains(0.02)
    assert a.predictions.max_speedup_ranks.value == pytest.approx(
        math.sqrt(0.98 * 10 / 0.02), rel=0.15)  # dT/dp = 0 at p = sqrt((1 - f) T1 / c)


def test_weak_scaling_gustafson_and_overhead_are_told_apart():
    serial = analyse("weak", points(gustafson_time(RANKS, 0.1), weak=True, seed=6), n_boot=BOOT)
    assert serial.comparison.verdict == SERIAL
    assert serial.law.alpha_ci[0] <= 0.1 <= serial.law.alpha_ci[1]
    over = analyse("weak", points(gustafson_time(RANKS, 0.02, c_log2=0.5), weak=True, seed=7),
                   n_boot=BOOT)
    assert over.comparison.verdict == OVERHEAD
    assert over.comparison.selected == "gustafson+log2"


def test_fit_overhead_returns_c_in_seconds():
    fit = fit_overhead("strong", RANKS, noisy(amdahl_time(RANKS, 0.05, c_log2=0.3), 5, 0.02, 9),
                       "log2", n_boot=BOOT)
    assert fit.overhead.contains(0.3)
    assert fit.f_ci[0] <= 0.05 <= fit.f_ci[1]
    with pytest.raises(ValueError, match="log2"):
        fit_overhead("strong", RANKS, amdahl_time(RANKS, 0.1), "cubic")


# --- predictions ---------------------------------------------------------------------------

def test_amdahl_predictions_match_the_closed_form():
    a = analyse("strong", points(amdahl_time(RANKS, 0.1), repeats=2, noise=0.0), n_boot=20)
    pr = a.law.predictions
    assert pr.max_speedup.value == pytest.approx(10.0, rel=1e-6)  # 1/f
    assert pr.max_speedup_ranks.value is None                    # reached only as p -> oo
    # E = 1/(f p + 1 - f) < e  <=>  p > 1 + (1/e - 1)/f
    assert pr.ranks_efficiency_below["0.8"].value == pytest.approx(3.5, rel=1e-3)
    assert pr.ranks_efficiency_below["0.5"].value == pytest.approx(11.0, rel=1e-3)
    assert "as p → ∞" in pr.describe_max()


def test_log2_overhead_predicts_a_finite_best_rank_count():
    f, c = 0.05, 0.2
    a = analyse("strong", points(amdahl_time(RANKS, f, c_log2=c), repeats=2, noise=0.0),
                n_boot=20)
    fit = next(x for x in a.overhead_fits if x.model == "amdahl+log2")
    best = (1 - f) * 10 * math.log(2) / c  # dT/dp = 0
    assert fit.predictions.max_speedup_ranks.value == pytest.approx(best, rel=0.02)
    assert fit.predictions.max_speedup.value == pytest.approx(
        10 / amdahl_time(best, f, c_log2=c), rel=1e-4)


def test_gustafson_predictions_unbounded_speedup_and_never_below_half():
    a = analyse("weak", points(gustafson_time(RANKS, 0.3), repeats=2, noise=0.0, weak=True),
                n_boot=20)
    pr = a.law.predictions
    assert pr.max_speedup.value is None and pr.describe_max() == "grows without bound"
    # E = 1 - alpha + alpha/p < 0.8  <=>  p > 1 / (1 - 0.2/alpha) = 3
    assert pr.ranks_efficiency_below["0.8"].value == pytest.approx(3.0, rel=1e-3)
    assert pr.ranks_efficiency_below["0.5"].value is None        # E >= 1 - alpha = 0.7
    assert pr.describe_threshold(0.5) == "beyond any p"


# --- bad input -----------------------------------------------------------------------------

def _pts(*ranks, times=None):
    return [ScalingPoint(r, 100, np.array([1.0 / r, 1.01 / r, 0.99 / r]) if times is None
                         else np.asarray(times, dtype=float), label=f"run-{r}") for r in ranks]


@pytest.mark.parametrize("pts", [_pts(4), _pts(4, 4), []], ids=["one", "same-ranks", "none"])
def test_fewer_than_two_rank_counts_is_refused(pts):
    with pytest.raises(UserError, match="at least 2 distinct rank counts"):
        analyse("strong", pts)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_zero_negative_or_nan_times_name_the_point(bad):
    pts = _pts(1, 2) + _pts(4, times=[0.25, bad, 0.26])
    with pytest.raises(UserError, match=r"run-4.*4 ranks.*positive and finite"):
        analyse("strong", pts)


def test_no_repeats_and_non_numbers_are_refused():
    with pytest.raises(UserError, match="no timed repeats"):
        analyse("strong", _pts(1, 2) + _pts(4, times=[]))
    with pytest.raises(UserError, match="must be numbers"):
        analyse("strong", _pts(1) + [ScalingPoint(2, 100, ["fast"], label="x")])
    with pytest.raises(UserError, match="whole numbers"):
        fit_amdahl([1, 2.5], [1.0, 0.6])


def test_failed_points_are_excluded_listed_and_never_fitted():
    good = points(amdahl_time(RANKS, 0.1), noise=0.0, repeats=2)
    broken = [ScalingPoint(8, 1000, np.array([np.nan, 0.0]), ok=False, label="crashed-8"),
              ScalingPoint(128, 1000, np.array([99.0]), ok=False, label="unverified-128")]
    a = analyse("strong", good + broken, n_boot=20)
    assert a.law.f == pytest.approx(0.1, abs=1e-9)  # as if the failed runs did not exist
    assert [e.label for e in a.excluded] == ["crashed-8", "unverified-128"]
    assert all(pt.ranks != 128 for pt in a.points)
    assert any("crashed-8" in w and "excluded" in w for w in a.warnings)


def test_too_few_left_after_failures_says_how_many_failed():
    pts = _pts(1) + [ScalingPoint(2, 100, np.array([0.5]), ok=False, label="r2")]
    with pytest.raises(UserError, match=r"1 point\(s\) excluded as failed"):
        analyse("strong", pts)


def test_failed_smallest_rank_count_moves_the_baseline_with_a_warning():
    pts = [ScalingPoint(1, 100, np.array([1.0]), ok=False, label="r1")] + _pts(2, 4, 8)
    a = analyse("strong", pts, n_boot=20)
    assert a.baseline_ranks == 2
    assert any("baseline is the smallest one fitted, p0 = 2" in w for w in a.warnings)


def test_strong_scaling_with_changing_size_is_refused():
    pts = _pts(1, 2)
    pts[1].size = 200
    with pytest.raises(UserError, match="strong scaling keeps the problem size fixed"):
        analyse("strong", pts)
    with pytest.raises(UserError, match="one rank count needs one size"):
        analyse("weak", _pts(1) + [ScalingPoint(2, 1, [1.0]), ScalingPoint(2, 2, [1.0])])


def test_unknown_kind_and_bad_phases_are_refused():
    with pytest.raises(UserError, match="unknown study kind 'medium'"):
        analyse("medium", _pts(1, 2))
    pts = _pts(1, 2)
    pts[0].phase_times = {"compute": np.array([0.5, 0.5])}
    with pytest.raises(UserError, match="phase 'compute' has 2 values for 3 repeats"):
        analyse("strong", pts)
    pts[0].phase_times = {"compute": np.array([0.5, np.nan, 0.5])}
    with pytest.raises(UserError, match="phase 'compute'.*finite"):
        analyse("strong", pts)


def test_single_repeats_use_the_covariance_and_say_so():
    pts = points(amdahl_time(RANKS, 0.1), repeats=1, noise=0.03, seed=9)
    a = analyse("strong", pts, n_boot=BOOT)
    assert a.ci_method.startswith("covariance")
    assert any("single repeat" in w for w in a.warnings)
    lo, hi = a.law.f_ci
    assert lo < a.law.f < hi and lo <= 0.1 <= hi


def test_two_rank_counts_fit_the_law_but_leave_the_verdict_open():
    a = analyse("strong", points(amdahl_time([1, 4], 0.2), ranks=[1, 4]), n_boot=50)
    assert a.comparison.verdict == UNDETERMINED
    assert a.overhead_fits == []
    assert a.law.fraction.contains(0.2)
    assert any("no overhead model is chosen" in w for w in a.warnings)


def test_fewer_than_five_rank_counts_choose_no_overhead_model_and_suggest_more():
    """4 rank counts leave an overhead model one degree of freedom: not enough to choose."""
    a = analyse("strong", points(amdahl_time([1, 2, 4, 8], 0.0, c_log2=1.0),
                                 ranks=[1, 2, 4, 8]), n_boot=50)
    assert a.overhead_fits == [] and a.comparison.verdict == UNDETERMINED
    assert any("only 4 rank counts fitted" in w and "needs 5" in w for w in a.warnings)
    assert a.suggested_ranks == [16]  # no core count known: doublings beyond the ladder


def test_superlinear_speedup_is_warned_about():
    times = [10.0, 4.0, 1.8, 0.9]  # faster than ideal: caches
    a = analyse("strong", points(times, ranks=[1, 2, 4, 8], noise=0.01), n_boot=50)
    assert any("superlinear" in w for w in a.warnings)
    assert a.law.f == pytest.approx(0.0, abs=1e-6)


def test_slower_than_the_baseline_is_warned_about():
    times = [1.0, 1.3, 1.6]  # e.g. more ranks than cores
    a = analyse("strong", points(times, ranks=[1, 2, 4], noise=0.01), n_boot=50)
    assert any("speedup below 1 at 2, 4 ranks" in w for w in a.warnings)
    assert a.law.f == pytest.approx(1.0, abs=1e-6)


# --- serialisation ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["strong", "weak"])
def test_to_dict_is_plain_json_and_round_trips(kind):
    law = amdahl_time if kind == "strong" else gustafson_time
    a = analyse(kind, points(law(RANKS, 0.1, c_log2=0.2), weak=kind == "weak"), n_boot=50)
    text = json.dumps(a.to_dict(), allow_nan=False)  # strict JSON: no NaN or Infinity
    b = StudyAnalysis.from_dict(json.loads(text))
    assert b.to_dict() == a.to_dict()
    assert b.selected.model == a.selected.model
    np.testing.assert_allclose(b.selected.speedup(np.array([3.0, 100.0])),
                               a.selected.speedup(np.array([3.0, 100.0])))


def test_summary_names_verdict_fraction_predictions_and_exclusions():
    pts = points(amdahl_time(RANKS, 0.1), noise=0.0, repeats=2)
    pts.append(ScalingPoint(128, 1000, np.array([1.0]), ok=False, label="lost-128"))
    text = analyse("strong", pts, n_boot=20).summary()
    assert "verdict: serial code (model amdahl)" in text
    assert "amdahl fit: serial fraction f = 0.1" in text
    assert "max speedup 10" in text and "p > 3.5" in text
    assert "excluded: lost-128 (128 ranks)" in text


def test_a_newer_analysis_layout_is_refused():
    d = analyse("strong", _pts(1, 2, 4), n_boot=20).to_dict()
    d["version"] = 99
    with pytest.raises(UserError, match="newer hpc-suite"):
        StudyAnalysis.from_dict(d)


# --- compare -------------------------------------------------------------------------------

def _strong(f, seed, **kw):
    return analyse("strong", points(amdahl_time(RANKS, f, **kw), seed=seed), n_boot=BOOT)


@pytest.mark.parametrize("seeds", [(21, 22), (23, 24), (25, 26)])
def test_compare_does_not_flag_two_samples_of_the_same_law(seeds):
    result = compare(_strong(0.05, seeds[0]), _strong(0.05, seeds[1]))
    assert not result.regressed, result.text()
    assert "no regression" in result.text()


def test_compare_flags_a_larger_serial_fraction():
    before, after = _strong(0.05, 31), _strong(0.08, 32)
    result = compare(before, after)
    assert result.regressed
    frac = result.items[0]
    assert frac.quantity == "serial fraction f" and frac.regressed and frac.z > 3
    assert any(it.quantity == "efficiency" and it.regressed for it in result.items)
    text = result.text("before", "after")
    assert "RESULT: regression" in text and "REGRESSED" in text
    # the other way round it is an improvement, not a regression
    back = compare(after, before)
    assert not back.regressed and back.items[0].improved
    assert json.dumps(result.to_dict(), allow_nan=False)


def test_compare_flags_overhead_seen_only_in_efficiency():
    result = compare(_strong(0.05, 33), _strong(0.05, 34, c_log2=0.15))
    assert result.regressed
    assert any(it.quantity == "efficiency" and it.ranks == 64 and it.regressed
               for it in result.items)


def test_compare_with_different_baselines_uses_times_and_one_rank_fractions():
    a = _strong(0.05, 35)
    b = analyse("strong", points(amdahl_time(RANKS[1:], 0.05), ranks=RANKS[1:], seed=36),
                n_boot=BOOT)
    result = compare(a, b)
    assert any("Baselines differ" in n for n in result.notes)
    assert result.items[0].quantity == "serial fraction f (p0 = 1)"
    assert {it.quantity for it in result.items[1:]} == {"time (s)"}
    assert not result.regressed, result.text()


def test_compare_refuses_different_kinds():
    weak = analyse("weak", points(gustafson_time(RANKS, 0.1), weak=True), n_boot=20)
    with pytest.raises(UserError, match="cannot compare a strong-scaling study with a weak"):
        compare(_strong(0.05, 1), weak)
