"""A value with its 95% interval, and the bootstrap that produces such intervals.

The bootstrap resamples the repeats within each rank count (never across rank counts),
with a fixed seed so that an analysis is reproducible. Resampled deviations are scaled by
sqrt(n / (n - 1)): the plain bootstrap of a mean of n repeats underestimates its variance
by the factor (n - 1) / n, which matters for the usual 3 to 5 repeats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
_TAILS = (100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2)


def finite_or_none(x: float | None) -> float | None:
    """A float for JSON: infinities and NaN become None (JSON has neither)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Estimate:
    """A value with a 95% interval [low, high]; None where undefined or unbounded."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @property
    def ci(self) -> tuple[float | None, float | None]:
        return (self.low, self.high)

    def contains(self, x: float) -> bool:
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        return lo <= x <= hi

    def half_width(self) -> float:
        """Half the interval's width; NaN when an end is unknown."""
        if self.low is None or self.high is None:
            return math.nan
        return (self.high - self.low) / 2

    def to_dict(self) -> dict:
        return {"value": finite_or_none(self.value), "low": finite_or_none(self.low),
                "high": finite_or_none(self.high)}

    @classmethod
    def from_dict(cls, d: dict | None) -> Estimate | None:
        if d is None:
            return None
        return cls(d.get("value"), d.get("low"), d.get("high"))

    def __str__(self) -> str:
        return format_estimate(self)


def format_number(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "∞"
    if abs(x) < 1e-12:  # a parameter at its bound 0 comes back as 1e-19 or so
        return "0"
    return f"{x:.{digits}g}"


def format_estimate(e: Estimate | None, digits: int = 3) -> str:
    """'0.101 [0.095, 0.108]'; an unbounded end shows as ∞."""
    if e is None or e.value is None:
        return "n/a"
    if e.low is None and e.high is None:
        return format_number(e.value, digits)
    lo = format_number(e.low, digits) if e.low is not None else "?"
    hi = format_number(e.high, digits) if e.high is not None else "∞"
    return f"{format_number(e.value, digits)} [{lo}, {hi}]"


def from_samples(value: float, samples: np.ndarray) -> Estimate:
    """The point estimate with the percentile interval of its bootstrap samples.

    Infinite samples (an unbounded prediction in some resamples) count as larger than any
    finite one; an interval end that falls on them is None (unbounded). NaN samples are
    dropped; if all are NaN the interval is unknown.
    """
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return Estimate(finite_or_none(value))
    lo, hi = np.percentile(np.where(np.isinf(s), np.sign(s) * 1e308, s), _TAILS,
                           method="linear")
    return Estimate(finite_or_none(value), _bound(lo), _bound(hi))


def union(estimates: list[Estimate], value: float) -> Estimate:
    """The smallest interval holding all of ``estimates`` (an unbounded end stays so)."""
    if not estimates:
        return Estimate(finite_or_none(value))
    lows = [e.low for e in estimates]
    highs = [e.high for e in estimates]
    return Estimate(finite_or_none(value), None if None in lows else min(lows),
                    None if None in highs else max(highs))


def _bound(x: float) -> float | None:
    return None if abs(x) >= 1e307 else float(x)


def bootstrap_indices(values: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """Bootstrap indices per group: for each group, an array [n_boot, n] of repeat indices."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, v.size, size=(n_boot, v.size)) for v in values]


def boot_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Means of the resamples ``values[idx]`` with the small-sample variance correction."""
    n = values.size
    if n < 2:
        return np.full(idx.shape[0], values.mean())
    centre = values.mean()
    scale = math.sqrt(n / (n - 1))
    return centre + scale * (values[idx] - centre).mean(axis=1)
