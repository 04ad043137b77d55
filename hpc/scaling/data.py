"""The input of the analysis: measured points, checked and grouped by rank count.

Bad input stops here with a message naming the point, before anything is fitted: a
fit through a zero or NaN time would be silently wrong. Points measured on a machine that
was not the program's alone (``conditions``: oversubscribed, contended) are kept out of
the fits unless asked for, and outlying repeats are flagged and left out of a point's time
(``OUTLIER_Z`` below states the rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpc.errors import UserError

KINDS = ("strong", "weak")
# A repeat is an outlier when its log-time lies more than OUTLIER_Z robust standard
# deviations from the median of its point's repeats (the modified z-score of Iglewicz and
# Hoaglin: 0.6745·|y − median| / MAD > 3.5) and more than OUTLIER_MIN (10%) away: the
# floor keeps jitter of a few percent from being flagged when the other repeats agree
# to 0.1%. Needs 3 or more repeats.
OUTLIER_Z = 3.5
OUTLIER_MIN = 0.1


@dataclass
class ScalingPoint:
    """One measured point of a study (one run, or several runs at the same rank count).

    ``times`` holds one time per timed repeat, in seconds: the run's time for that repeat
    (the maximum over ranks). ``phase_times`` maps phase names to seconds per repeat.
    Points with ``ok=False`` (the run failed or its result did not verify) are listed as
    excluded and never fitted. ``rank_compute`` [repeat, rank] is each rank's useful
    compute time (the POP metrics need it); ``conditions`` say why the machine was not
    the program's alone (hpc.machine.conditions), ``cores`` how many it had.
    """

    ranks: int
    size: int
    times: np.ndarray
    phase_times: dict[str, np.ndarray] = field(default_factory=dict)
    ok: bool = True
    label: str = ""
    rank_compute: np.ndarray | None = None
    conditions: list[str] = field(default_factory=list)
    cores: float | None = None


@dataclass(frozen=True)
class Placement:
    """Where a point's ranks ran, as its record says (the hosts the ranks reported)."""

    nodes: int
    per_node: tuple[int, ...]   # ranks on each node, most first

    @property
    def intra_node(self) -> bool:
        return self.nodes == 1

    def label(self) -> str:
        """ "2 nodes × 2 ranks", or "2 nodes × 3+1 ranks" when the nodes differ. """
        ranks = (str(self.per_node[0]) if len(set(self.per_node)) == 1
                 else "+".join(map(str, self.per_node)))
        return (f"{self.nodes} node{'s' if self.nodes > 1 else ''} × {ranks} "
                f"rank{'s' if ranks != '1' else ''}")

    def short(self) -> str:
        """For a plot's tick: "2×2"."""
        return f"{self.nodes}×{self.per_node[0] if len(set(self.per_node)) == 1 else '~'}"

    @classmethod
    def from_hosts(cls, hostnames: list[str]) -> Placement:
        counts: dict[str, int] = {}
        for host in hostnames:
            counts[host] = counts.get(host, 0) + 1
        return cls(len(counts), tuple(sorted(counts.values(), reverse=True)))


@dataclass
class Excluded:
    """A point left out of the analysis, and why."""

    label: str
    ranks: int
    reason: str

    def to_dict(self) -> dict:
        return {"label": self.label, "ranks": self.ranks, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> Excluded:
        return cls(label=d["label"], ranks=int(d["ranks"]), reason=d["reason"])


@dataclass
class RankGroup:
    """All accepted repeats at one rank count (several points at one rank count pool)."""

    ranks: int
    size: int
    times: np.ndarray                       # seconds, every repeat not an outlier
    phase_times: dict[str, np.ndarray]      # phase -> seconds, aligned with ``times``
    labels: list[str]
    rank_compute: np.ndarray | None = None  # [repeat, rank], aligned with ``times``
    outliers: list[float] = field(default_factory=list)   # seconds, left out of ``times``
    conditions: list[str] = field(default_factory=list)   # why it is not fitted, if so
    cores: float | None = None


@dataclass
class Measurements:
    """Accepted data in ascending rank order; the first group is the baseline."""

    kind: str
    groups: list[RankGroup]
    excluded: list[Excluded]
    warnings: list[str]
    flagged: list[RankGroup] = field(default_factory=list)  # measured, kept out of the fits

    @property
    def ranks(self) -> np.ndarray:
        return np.array([g.ranks for g in self.groups], dtype=float)

    @property
    def baseline_ranks(self) -> int:
        return self.groups[0].ranks


def _name(point: ScalingPoint, index: int) -> str:
    return f"point {index} ({point.label or 'no label'}, {point.ranks} ranks)"


def _checked_times(values: object, what: str) -> np.ndarray:
    try:
        times = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"{what}: times must be numbers in seconds, got {values!r}") from None
    if times.size == 0:
        raise UserError(f"{what}: no timed repeats; re-run it with --repeats 1 or more, "
                        "or mark it failed (ok=False)")
    bad = ~np.isfinite(times) | (times <= 0)
    if bad.any():
        shown = ", ".join(repr(float(t)) for t in times[bad][:3])
        raise UserError(f"{what}: times must be positive and finite, got {shown}; a zero or "
                        "NaN time means the run did not time anything: mark it failed "
                        "(ok=False) or re-run it")
    return times


def _checked_phases(phases: dict, n: int, what: str) -> dict[str, np.ndarray]:
    out = {}
    for name, values in phases.items():
        try:
            arr = np.asarray(values, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise UserError(f"{what}: phase {name!r} times must be numbers") from None
        if arr.size != n:
            raise UserError(f"{what}: phase {name!r} has {arr.size} values for {n} repeats")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise UserError(f"{what}: phase {name!r} times must be finite and not negative")
        out[str(name)] = arr
    return out


def prepare(kind: str, points: list[ScalingPoint], sizes_known: bool = True,
            include_flagged: bool = False) -> Measurements:
    """Check the points, drop failed ones (listed with the reason) and pool by rank count.

    Points with ``conditions`` (oversubscribed, contended) are kept out of the fits and
    listed with the reason, unless ``include_flagged``. When leaving out the merely
    contended ones would leave fewer than 2 rank counts, those are fitted after all, with
    a warning: on a busy machine a hedged analysis beats none.
    """
    if kind not in KINDS:
        raise UserError(f"unknown study kind {kind!r}; use one of: {', '.join(KINDS)}")
    excluded: list[Excluded] = []
    by_ranks: dict[int, list[tuple[ScalingPoint, np.ndarray, dict]]] = {}
    for i, point in enumerate(points):
        what = _name(point, i)
        if not isinstance(point.ranks, (int, np.integer)) or point.ranks < 1:
            raise UserError(f"{what}: ranks must be a positive whole number")
        if not point.ok:
            excluded.append(Excluded(point.label, int(point.ranks),
                                     "the run failed or its result did not verify"))
            continue
        times = _checked_times(point.times, what)
        phases = _checked_phases(point.phase_times or {}, times.size, what)
        by_ranks.setdefault(int(point.ranks), []).append((point, times, phases))

    warnings: list[str] = []
    if excluded:
        warnings.append(f"{len(excluded)} failed or unverified point(s) excluded from the "
                        "fits: " + ", ".join(f"{e.label or '?'} ({e.ranks} ranks)"
                                            for e in excluded))
    groups = [_pool(r, entries) for r, entries in sorted(by_ranks.items())]
    groups, flagged = _split_flagged(groups, include_flagged, warnings)
    excluded += [Excluded(",".join(g.labels), g.ranks, "; ".join(g.conditions))
                 for g in flagged]
    if len(groups) < 2:
        have = ", ".join(str(g.ranks) for g in groups) or "none"
        why = f"{len(excluded)} point(s) excluded as failed"
        if flagged:
            why += (" or measured on a machine that was not the program's alone (rerun "
                    "them, or analyse with --include-oversubscribed)")
        raise UserError(f"a scaling analysis needs at least 2 distinct rank counts with "
                        f"successful runs; have: {have} ({why}); add points at other rank "
                        "counts or re-run the failed ones")
    if sizes_known:
        _check_sizes(kind, groups)
    smallest_failed = [e.ranks for e in excluded if e.ranks < groups[0].ranks]
    if smallest_failed:
        warnings.append(f"the smallest rank count {min(smallest_failed)} was excluded: the "
                        f"baseline is the smallest one fitted, p0 = {groups[0].ranks}")
    if sizes_known and kind == "weak" and len({g.size for g in groups}) == 1:
        warnings.append("weak scaling, but every point has the same size "
                        f"{groups[0].size}: is this a strong-scaling study?")
    outliers = [f"{g.ranks} ranks: " + ", ".join(f"{t:.4g} s" for t in g.outliers)
                for g in groups + flagged if g.outliers]
    if outliers:
        warnings.append("outlier repeats (log-time beyond 3.5 robust standard deviations "
                        "of the point's median, and over 10% away) left out of the point's "
                        "time: " + "; ".join(outliers))
    return Measurements(kind, groups, excluded, warnings, flagged)


def _split_flagged(groups: list[RankGroup], include: bool,
                   warnings: list[str]) -> tuple[list[RankGroup], list[RankGroup]]:
    """(groups to fit, groups kept out of the fits because of their conditions)."""
    flagged = [g for g in groups if g.conditions]
    if include and flagged:
        warnings.append("points measured while oversubscribed or contended are fitted as "
                        "asked (--include-oversubscribed): their loss is the machine's, not "
                        "the program's, and the fits include it: "
                        + "; ".join(f"{g.ranks} ranks: {'; '.join(g.conditions)}"
                                    for g in flagged))
    if include or not flagged:
        return groups, []
    clean = [g for g in groups if not g.conditions]
    if len(clean) < 2:
        contended = [g for g in flagged
                     if not any(c.startswith("oversubscribed") for c in g.conditions)]
        if contended and len(clean) + len(contended) >= 2:
            warnings.append("other processes competed for the cores during the point(s) at "
                            f"{', '.join(str(g.ranks) for g in contended)} rank(s); they are "
                            "fitted anyway, since without them fewer than 2 rank counts "
                            "remain: rerun the study on a quiet machine to trust the fits")
            keep = {id(g) for g in contended}
            return ([g for g in groups if not g.conditions or id(g) in keep],
                    [g for g in flagged if id(g) not in keep])
    return clean, flagged


def _outliers(times: np.ndarray) -> np.ndarray:
    """Mask of outlier repeats (the rule at OUTLIER_Z)."""
    if times.size < 3:
        return np.zeros(times.size, dtype=bool)
    y = np.log(times)
    dev = np.abs(y - np.median(y))
    mad = np.median(dev)
    z = 0.6745 * dev / mad if mad > 0 else np.where(dev > 0, np.inf, 0.0)
    return (z > OUTLIER_Z) & (dev > np.log1p(OUTLIER_MIN))


def _pool(ranks: int, entries: list) -> RankGroup:
    sizes = {int(p.size) for p, _, _ in entries}
    if len(sizes) > 1:
        labels = ", ".join(p.label or "?" for p, _, _ in entries)
        raise UserError(f"points at {ranks} ranks ({labels}) have different sizes "
                        f"{sorted(sizes)}; one rank count needs one size")
    names = set(entries[0][2])
    if any(set(ph) != names for _, _, ph in entries):
        raise UserError(f"points at {ranks} ranks record different phases; "
                        "they cannot be pooled")
    times = np.concatenate([t for _, t, _ in entries])
    phases = {n: np.concatenate([ph[n] for _, _, ph in entries]) for n in sorted(names)}
    computes = [p.rank_compute for p, _, _ in entries]
    compute = None
    if all(c is not None and np.shape(c)[0] == t.size for c, (_, t, _) in
           zip(computes, entries, strict=True)):
        compute = np.concatenate([np.asarray(c, dtype=float).reshape(-1, ranks)
                                  for c in computes])
    conditions = list(dict.fromkeys(c for p, _, _ in entries for c in p.conditions))
    cores = [p.cores for p, _, _ in entries if p.cores]
    bad = _outliers(times)
    keep = ~bad
    return RankGroup(ranks, sizes.pop(), times[keep], {n: v[keep] for n, v in phases.items()},
                     [p.label for p, _, _ in entries],
                     None if compute is None else compute[keep],
                     [float(t) for t in times[bad]], conditions,
                     min(cores) if cores else None)


def _check_sizes(kind: str, groups: list[RankGroup]) -> None:
    if kind == "strong" and len({g.size for g in groups}) > 1:
        listed = ", ".join(f"{g.ranks} ranks: {g.size}" for g in groups)
        raise UserError(f"strong scaling keeps the problem size fixed, but the points have "
                        f"different sizes ({listed}); analyse it as weak scaling or drop the "
                        "points of the other size")


def group_times(kind: str, ranks: object, times: object) -> Measurements:
    """Measurements from bare ``ranks`` and ``times`` (for the ``fit_*`` functions).

    ``times[i]`` is one time or a sequence of repeats measured at ``ranks[i]``; a rank
    count may appear more than once (its repeats pool).
    """
    ranks = list(np.asarray(ranks).reshape(-1))
    times = list(times) if np.ndim(times) > 0 else [times]
    if len(ranks) != len(times):
        raise UserError(f"got {len(ranks)} rank counts but {len(times)} sets of times")
    for r in ranks:
        try:
            whole = float(r).is_integer()
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise UserError(f"rank counts must be whole numbers, got {r!r}")
    points = [ScalingPoint(ranks=int(r), size=0, times=np.atleast_1d(t), label=f"#{i}")
              for i, (r, t) in enumerate(zip(ranks, times, strict=True))]
    return prepare(kind, points, sizes_known=False)
