"""What a fitted model predicts: the maximum speedup and where efficiency drops below 80%/50%.

Predictions are read off a fine grid of rank counts from p0 to 2^40 * p0 (a trillion times
the baseline: "any p" in practice), for many parameter sets at once (the point fit and
every bootstrap resample), so that each prediction gets an interval too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc.scaling.estimate import Estimate, from_samples, union
from hpc.scaling.models import Model

_STEPS_PER_DOUBLING = 64
_LOG2_Q = np.arange(0, 40 * _STEPS_PER_DOUBLING + 1) / _STEPS_PER_DOUBLING
# Still rising by less than this over the last doubling: a limit reached as p -> infinity.
_CONVERGED = 1e-3
THRESHOLDS = (0.8, 0.5)


@dataclass
class Predictions:
    """Predictions of one fitted model; ranks are real numbers (interpolated on the grid)."""

    max_speedup: Estimate            # value None: grows without bound
    max_speedup_ranks: Estimate      # value None: approached only as p -> infinity
    ranks_efficiency_below: dict[str, Estimate]   # "0.8" -> ranks; value None: beyond any p

    @property
    def speedup_bounded(self) -> bool:
        return self.max_speedup.value is not None

    def describe_max(self) -> str:
        s = self.max_speedup
        if s.value is None:
            return "grows without bound"
        where = self.max_speedup_ranks.value
        text = f"{s.value:.3g}"
        if s.low is not None or s.high is not None:
            lo = f"{s.low:.3g}" if s.low is not None else "?"
            hi = f"{s.high:.3g}" if s.high is not None else "∞"
            text += f" [{lo}, {hi}]"
        return text + (f" at p ≈ {where:.0f}" if where is not None else " as p → ∞")

    def describe_threshold(self, level: float) -> str:
        e = self.ranks_efficiency_below[f"{level:g}"]
        if e.value is None:
            return "beyond any p"
        hi = f"{e.high:.3g}" if e.high is not None else "beyond any p"
        lo = f"{e.low:.3g}" if e.low is not None else "?"
        return f"p > {e.value:.3g} [{lo}, {hi}]"

    def to_dict(self) -> dict:
        return {"max_speedup": self.max_speedup.to_dict(),
                "max_speedup_ranks": self.max_speedup_ranks.to_dict(),
                "ranks_efficiency_below": {k: v.to_dict()
                                           for k, v in self.ranks_efficiency_below.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Predictions:
        return cls(Estimate.from_dict(d["max_speedup"]),
                   Estimate.from_dict(d["max_speedup_ranks"]),
                   {k: Estimate.from_dict(v) for k, v in d["ranks_efficiency_below"].items()})


def _grid_predictions(model: Model, p0: float, frac: np.ndarray,
                      gamma: np.ndarray) -> dict[str, np.ndarray]:
    """Per parameter set: max speedup and where (inf when not at a finite p), thresholds."""
    q = 2.0 ** _LOG2_Q
    s = model.speedup(q[None, :] * p0, p0, frac[:, None], gamma[:, None])
    eff = s / q[None, :]
    top = np.argmax(s, axis=1)
    # A flat curve (f = 1: no speedup at all) peaks at the baseline, not where round-off
    # happens to put its largest value.
    flat = np.ptp(s, axis=1) <= 1e-9 * s.max(axis=1)
    top = np.where(flat, 0, top)
    rows = np.arange(s.shape[0])
    at_end = top == q.size - 1
    rising = s[:, -1] / s[:, -1 - _STEPS_PER_DOUBLING] - 1.0 > _CONVERGED
    max_s = np.where(at_end & rising, np.inf, s[rows, top])
    max_p = np.where(at_end, np.inf, q[top] * p0)
    out = {"max_speedup": max_s, "max_speedup_ranks": max_p}
    for level in THRESHOLDS:
        out[f"{level:g}"] = _crossing(eff, level) * p0
    return out


def _crossing(eff: np.ndarray, level: float) -> np.ndarray:
    """q where each row of efficiency first falls below ``level`` (inf if never)."""
    below = eff < level
    first = np.argmax(below, axis=1)
    never = ~below.any(axis=1)
    k = np.maximum(first, 1)
    rows = np.arange(eff.shape[0])
    e_hi, e_lo = eff[rows, k - 1], eff[rows, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(e_hi > e_lo, (e_hi - level) / (e_hi - e_lo), 0.0)
    log2q = _LOG2_Q[k - 1] + np.clip(frac, 0.0, 1.0) / _STEPS_PER_DOUBLING
    return np.where(never, np.inf, 2.0 ** log2q)


def predict(model: Model, p0: float, theta: np.ndarray,
            sample_sets: list[np.ndarray]) -> Predictions:
    """Predictions of the point fit ``theta``; the interval is the union of the percentile
    intervals of each set of parameter samples (bootstrap, covariance draws)."""
    params = np.vstack([theta[None, :], *sample_sets])
    gamma = params[:, 2] if model.overhead else np.zeros(params.shape[0])
    grid = _grid_predictions(model, p0, params[:, 1], gamma)
    ends = np.cumsum([1] + [len(s) for s in sample_sets])

    def estimate(key: str) -> Estimate:
        values = grid[key]
        return union([from_samples(values[0], values[a:b])
                      for a, b in zip(ends[:-1], ends[1:], strict=True)], values[0])

    return Predictions(estimate("max_speedup"), estimate("max_speedup_ranks"),
                       {f"{lv:g}": estimate(f"{lv:g}") for lv in THRESHOLDS})
