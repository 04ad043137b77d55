"""Compare two analyses of the same study (A before, B after) and flag regressions.

What is compared: the law's fitted serial fraction (f or alpha; worse when it grows) and
the efficiency at every rank count both measured (worse when it falls). When the baselines
differ, efficiencies are relative to different runs, so times at common rank counts are
compared instead, and the fractions are converted to a one-rank baseline
(``laws.one_rank_fraction``).

Beyond the noise: a one-sided z-test, z = (B worse than A) / sqrt(se_A^2 + se_B^2), with
each standard error read from the 95% interval as half its width / 1.96. The threshold is
Bonferroni-corrected over all the tests so that two samples of the same code are flagged
with probability ``family_level`` (default 1%) at most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy.stats import norm

from hpc.errors import UserError
from hpc.scaling.analysis import StudyAnalysis
from hpc.scaling.estimate import Estimate, finite_or_none, format_estimate
from hpc.scaling.laws import one_rank_fraction

_Z95 = norm.ppf(0.975)


@dataclass
class ComparisonItem:
    quantity: str            # "serial fraction f", "efficiency", "time (s)"
    ranks: int | None        # None for a fitted parameter
    a: Estimate
    b: Estimate
    z: float | None          # > 0: B is worse; None when the noise is unknown
    regressed: bool
    improved: bool

    def to_dict(self) -> dict:
        return {"quantity": self.quantity, "ranks": self.ranks, "a": self.a.to_dict(),
                "b": self.b.to_dict(), "z": finite_or_none(self.z),
                "regressed": self.regressed, "improved": self.improved}


@dataclass
class Comparison:
    """The result of ``compare``: ``regressed`` is True when any item got worse beyond noise."""

    kind: str
    items: list[ComparisonItem]
    z_threshold: float
    family_level: float
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(item.regressed for item in self.items)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "regressed": self.regressed,
                "z_threshold": self.z_threshold, "family_level": self.family_level,
                "items": [i.to_dict() for i in self.items], "notes": list(self.notes)}

    def text(self, name_a: str = "A", name_b: str = "B") -> str:
        """A table for the terminal, then the notes and a one-line result."""
        rows = [("quantity", "ranks", name_a, name_b, "z", "")]
        for it in self.items:
            flag = "REGRESSED" if it.regressed else ("improved" if it.improved else "ok")
            z = "n/a" if it.z is None else f"{it.z:+.2f}"
            rows.append((it.quantity, "-" if it.ranks is None else str(it.ranks),
                         format_estimate(it.a), format_estimate(it.b), z, flag))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.append("")
        lines.append(f"Worse beyond noise: one-sided z > {self.z_threshold:.2f} (z from the 95% "
                     f"intervals of the repeats, Bonferroni over {len(self.items)} tests: "
                     f"{self.family_level:.0%} false alarms for unchanged code).")
        lines += self.notes
        worse = [it for it in self.items if it.regressed]
        if worse:
            what = ", ".join(it.quantity + (f" at {it.ranks} ranks" if it.ranks else "")
                             for it in worse)
            lines.append(f"RESULT: regression in {what}.")
        else:
            lines.append("RESULT: no regression beyond the noise of the repeats.")
        return "\n".join(lines)


def _se(e: Estimate, log: bool = False) -> float:
    if e.low is None or e.high is None:
        return math.inf
    if log:
        return (math.log(e.high) - math.log(e.low)) / (2 * _Z95)
    return (e.high - e.low) / (2 * _Z95)


def _one_rank(kind: str, e: Estimate, p0: int) -> Estimate:
    """A fraction and its interval for a one-rank baseline (the map is monotonic)."""
    def conv(x: float | None) -> float | None:
        return None if x is None else one_rank_fraction(kind, x, p0)
    return Estimate(conv(e.value), conv(e.low), conv(e.high))


def _pairs(a: StudyAnalysis, b: StudyAnalysis, notes: list[str]) -> list[tuple]:
    """(quantity, ranks, A, B, worse-when-larger, log scale) for everything compared."""
    same_base = a.baseline_ranks == b.baseline_ranks
    frac = "serial fraction " + ("f" if a.kind == "strong" else "α")
    pairs = []
    if same_base:
        pairs.append((frac, None, a.law.fraction, b.law.fraction, True, False))
    else:
        notes.append(f"Baselines differ (p0 = {a.baseline_ranks} vs {b.baseline_ranks}): the "
                     "serial fractions are compared for a one-rank baseline, and times "
                     "instead of efficiencies.")
        pairs.append((f"{frac} (p0 = 1)", None,
                      _one_rank(a.kind, a.law.fraction, a.baseline_ranks),
                      _one_rank(b.kind, b.law.fraction, b.baseline_ranks), True, False))
    b_points = {pt.ranks: pt for pt in b.points}
    for pa in a.points:
        pb = b_points.get(pa.ranks)
        if pb is None:
            continue
        if pa.size != pb.size:
            notes.append(f"At {pa.ranks} ranks the sizes differ ({pa.size} vs {pb.size}).")
        if same_base and pa.ranks != a.baseline_ranks:
            pairs.append(("efficiency", pa.ranks, pa.efficiency, pb.efficiency, False, False))
        elif not same_base:
            pairs.append(("time (s)", pa.ranks, pa.time, pb.time, True, True))
    return pairs


def compare(a: StudyAnalysis, b: StudyAnalysis, *, family_level: float = 0.01,
            min_change: float = 0.0) -> Comparison:
    """Flag where ``b`` is worse than ``a`` beyond the noise of their repeats.

    ``min_change`` ignores smaller changes even when they are beyond noise (absolute for
    fractions and efficiencies, relative for times).
    """
    if a.kind != b.kind:
        raise UserError(f"cannot compare a {a.kind}-scaling study with a {b.kind}-scaling one")
    notes: list[str] = []
    pairs = _pairs(a, b, notes)
    if not pairs:
        raise UserError("the two studies share no rank count and no comparable fit")
    z_star = float(norm.ppf(1 - family_level / len(pairs)))
    items = []
    for quantity, ranks, ea, eb, larger_worse, log in pairs:
        if ea.value is None or eb.value is None:
            items.append(ComparisonItem(quantity, ranks, ea, eb, None, False, False))
            continue
        diff = (math.log(eb.value / ea.value) if log else eb.value - ea.value)
        diff = diff if larger_worse else -diff
        se = math.hypot(_se(ea, log), _se(eb, log))
        if math.isinf(se):
            items.append(ComparisonItem(quantity, ranks, ea, eb, None, False, False))
            continue
        z = diff / se if se > 0 else math.copysign(math.inf, diff) if diff else 0.0
        big = abs(diff) > min_change
        items.append(ComparisonItem(quantity, ranks, ea, eb, z, big and z > z_star,
                                    big and z < -z_star))
    if any(it.z is None for it in items):
        notes.append("Some quantities have no interval (noise unknown) and were not tested.")
    return Comparison(a.kind, items, z_star, family_level, notes)
