"""The report's figures: speedup, efficiency, Karp–Flatt and time per phase.

Figures are built on matplotlib's object API with the Agg canvas, never pyplot: no global
backend state, no display needed. Rank axes are log2 with a tick at every measured rank
count; error bars are the 95% intervals from the repeats.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from hpc.scaling.analysis import PointStats, StudyAnalysis
from hpc.scaling.data import Placement
from hpc.scaling.estimate import Estimate
from hpc.scaling.laws import amdahl_speedup, gustafson_fraction, gustafson_speedup, karp_flatt

# How far beyond the largest measured rank count the fitted curves and the axis extend:
# a little, so that every drawn rank count has its labelled tick nearby.
EXTRAPOLATE = 1.25
_MODEL_COLOURS = {None: "#c44e52", "log2": "#55a868", "linear": "#8172b3"}
_PHASE_COLOURS = {"compute": "#4c72b0", "communication": "#dd8452", "other": "#b0b0b0"}


def _figure() -> Figure:
    fig = Figure(figsize=(7.0, 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _rank_axis(ax, ranks: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(ranks) / 1.15, max(ranks) * EXTRAPOLATE * 1.02)
    ax.set_xticks(ranks)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("MPI ranks p (log2 scale)")
    ax.grid(True, alpha=0.3)


def _errors(estimates: list[Estimate]) -> np.ndarray:
    """Asymmetric error bars [2, n] from intervals; 0 where an end is unknown."""
    lo = [e.value - e.low if e.low is not None else 0.0 for e in estimates]
    hi = [e.high - e.value if e.high is not None else 0.0 for e in estimates]
    return np.array([lo, hi])


def _all_ranks(a: StudyAnalysis) -> list[int]:
    return sorted({pt.ranks for pt in [*a.points, *a.flagged_points]})


def _curve_ranks(a: StudyAnalysis) -> np.ndarray:
    top = _all_ranks(a)[-1] * EXTRAPOLATE
    return np.geomspace(a.baseline_ranks, top, 200)


def _measured(ax, points: list[PointStats], attr: str, label: str,
              flagged: list[PointStats] | None = None) -> None:
    est = [getattr(pt, attr) for pt in points]
    ax.errorbar([pt.ranks for pt in points], [e.value for e in est], yerr=_errors(est),
                fmt="o", color="black", capsize=3, zorder=5, label=label)
    shown = [pt for pt in flagged or [] if getattr(pt, attr) is not None]
    if shown:  # hollow grey: measured, but the machine's loss, not the program's
        est = [getattr(pt, attr) for pt in shown]
        ax.errorbar([pt.ranks for pt in shown], [e.value for e in est], yerr=_errors(est),
                    fmt="o", mfc="white", color="grey", capsize=3, zorder=4,
                    label="not fitted: oversubscribed or contended")


def _other_law(a: StudyAnalysis, p: np.ndarray) -> tuple[np.ndarray, str]:
    """The other law with the same fraction, for contrast: what if the size grew (or not)."""
    frac, p0 = a.law.fraction.value, a.baseline_ranks
    if a.kind == "strong":
        return gustafson_speedup(p, frac, p0), ("for contrast, not a fit: Gustafson's scaled "
                                                f"speedup if the size grew with p (α = f = "
                                                f"{frac:.3g})")
    return amdahl_speedup(p, frac, p0), ("for contrast, not a fit: Amdahl's speedup if the "
                                         f"size stayed fixed (f = α = {frac:.3g})")


def _model_curves(ax, a: StudyAnalysis, p: np.ndarray, transform) -> None:
    """The law's fit, and the overhead models (the selected one solid)."""
    frac_name = "f" if a.kind == "strong" else "α"
    law_label = (f"{'Amdahl' if a.kind == 'strong' else 'Gustafson'} fit, "
                 f"{frac_name} = {a.law.fraction}")
    selected = a.comparison.selected
    ax.plot(p, transform(a.law.speedup(p), p), color=_MODEL_COLOURS[None],
            lw=2.2 if selected == a.law.model else 1.4, label=law_label)
    for fit in a.overhead_fits:
        tag = " (selected)" if fit.model == selected else ""
        ax.plot(p, transform(fit.speedup(p), p), color=_MODEL_COLOURS[fit.spec.overhead],
                lw=2.2 if tag else 1.2, ls="-" if tag else ":", label=f"{fit.model} fit{tag}")


def speedup_figure(a: StudyAnalysis, title: str) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    p, p0 = _curve_ranks(a), a.baseline_ranks
    ax.plot(p, p / p0, color="grey", ls="--", lw=1, label="ideal S = p/p0")
    _model_curves(ax, a, p, lambda s, _: s)
    other, label = _other_law(a, p)
    ax.plot(p, other, color="#c44e52", ls="-.", lw=1, alpha=0.7, label=label)
    _measured(ax, a.points, "speedup", "measured (95% interval)", a.flagged_points)
    ranks = _all_ranks(a)
    _rank_axis(ax, ranks)
    ax.set_yscale("log", base=2)
    # Labelled at the ideal speedup of every measured rank count, as the x axis is.
    low = min(pt.speedup.low or pt.speedup.value for pt in [*a.points, *a.flagged_points])
    below = [2.0 ** -k for k in range(1, 8) if 2.0 ** -k >= low / 1.5]  # slower than p0
    ax.set_yticks(sorted({r / p0 for r in ranks if r >= p0} | set(below)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.set_ylabel("speedup S = T(p0)/T(p)" if a.kind == "strong"
                  else "scaled speedup S = (p/p0)·T(p0)/T(p)")
    ax.set_title(f"{title}: speedup ({a.kind} scaling, baseline p0 = {p0})")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def efficiency_figure(a: StudyAnalysis, title: str) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    p, p0 = _curve_ranks(a), a.baseline_ranks
    _model_curves(ax, a, p, lambda s, ranks: s / (ranks / p0))
    for level in (0.8, 0.5):
        ax.axhline(level, color="grey", ls="--", lw=0.8)
        ax.text(p[0], level, f" {level:.0%}", va="bottom", fontsize=8, color="grey")
    _measured(ax, a.points, "efficiency", "measured (95% interval)", a.flagged_points)
    _rank_axis(ax, _all_ranks(a))
    top = max(1.1, max((pt.efficiency.high or pt.efficiency.value) for pt in a.points) + 0.05)
    ax.set_ylim(0, top)
    ax.set_ylabel("parallel efficiency E = S/(p/p0)")
    ax.set_title(f"{title}: efficiency ({a.kind} scaling, baseline p0 = {p0})")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def karp_flatt_figure(a: StudyAnalysis, title: str) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    p0, pts = a.baseline_ranks, a.points[1:]
    frac = a.law.fraction
    name = "f" if a.kind == "strong" else "α"
    ax.axhline(frac.value, color="#c44e52", lw=1.4, label=f"fitted {name} = {frac}")
    if frac.low is not None and frac.high is not None:
        ax.axhspan(frac.low, frac.high, color="#c44e52", alpha=0.12)
    serial = karp_flatt if a.kind == "strong" else gustafson_fraction
    p = _curve_ranks(a)[1:]
    for fit in a.overhead_fits:
        if fit.model == a.comparison.selected:
            # A serial fraction lies in [0, 1]; past the model's reach it would not.
            curve = np.clip(serial(fit.speedup(p), p, p0), 0.0, 1.0)
            ax.plot(p, curve, color=_MODEL_COLOURS[fit.spec.overhead], lw=1.8,
                    label=f"{fit.model} fit (selected)")
    _measured(ax, pts, "karp_flatt", "measured (95% interval)", a.flagged_points)
    _rank_axis(ax, _all_ranks(a))
    ax.set_ylabel("Karp–Flatt serial fraction e" if a.kind == "strong"
                  else "experimental serial fraction α_e = (q − S)/(q − 1)")
    what = "Karp–Flatt" if a.kind == "strong" else "experimental serial fraction"
    ax.set_title(f"{title}: {what} (rising with p means overhead)")
    ax.legend(fontsize=8, loc="best")
    return fig


def _stacked_phases(points: list[PointStats]) -> dict[str, np.ndarray]:
    """compute and communication as recorded, 'other' the rest of the repeat's time."""
    names = [n for n in ("compute", "communication") if all(n in pt.phases for pt in points)]
    if not names:  # no standard phases: every recorded phase except the total
        names = sorted({n for pt in points for n in pt.phases if n != "total"})
        names = [n for n in names if all(n in pt.phases for pt in points)]
    parts = {n: np.array([pt.phases[n].value for pt in points]) for n in names}
    total = np.array([pt.time.value for pt in points])
    parts["other"] = np.maximum(total - sum(parts.values(), np.zeros_like(total)), 0.0)
    return parts


def phases_figure(a: StudyAnalysis, title: str) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(a.points))
    bottom = np.zeros(len(a.points))
    palette = iter(("#55a868", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"))
    for name, values in _stacked_phases(a.points).items():
        colour = _PHASE_COLOURS.get(name) or next(palette)
        label = "other (outside timed regions)" if name == "other" else name
        ax.bar(x, values, bottom=bottom, color=colour, width=0.7, label=label)
        bottom += values
    times = [pt.time for pt in a.points]
    ax.errorbar(x, [t.value for t in times], yerr=_errors(times), fmt="none", color="black",
                capsize=3, label="time per repeat (95% interval)")
    ax.set_xticks(x, [str(pt.ranks) for pt in a.points])
    ax.set_xlabel("MPI ranks p")
    ax.set_ylabel("time per repeat (s), slowest rank")
    ax.set_title(f"{title}: time per phase ({a.kind} scaling)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


FIGURES = {
    "speedup": (speedup_figure, "Speedup against ranks with the ideal line and the fitted laws"),
    "efficiency": (efficiency_figure, "Parallel efficiency with the 80% and 50% levels"),
    "karp_flatt": (karp_flatt_figure, "Experimentally determined serial fraction"),
    "phases": (phases_figure, "Time per repeat split into compute and communication (each "
               "phase is the slowest rank's, so the stack can exceed the measured time)"),
}


def _label_placement(fig: Figure, a: StudyAnalysis, placement: dict[int, Placement]) -> None:
    """Each rank tick also says its nodes × ranks per node ("4" over "2×2")."""
    for ax in fig.axes:
        ticks = list(ax.get_xticks())
        # The rank axes are log2 with a tick per rank count; the phases' is one bar each.
        ranks = ([int(t) for t in ticks] if ax.get_xscale() == "log"
                 else [a.points[int(t)].ranks for t in ticks])
        ax.set_xticks(ticks, [f"{r}\n{placement[r].short()}" if r in placement else str(r)
                              for r in ranks])
        ax.set_xlabel(f"{ax.get_xlabel()}; below: nodes × ranks per node, as recorded")


def render_png(a: StudyAnalysis, title: str,
               placement: dict[int, Placement] | None = None) -> dict[str, bytes]:
    """Every figure as PNG bytes, by name (the keys of ``FIGURES``); ``placement`` (a node
    ladder's) adds nodes × ranks per node under each rank tick."""
    out = {}
    for name, (build, _) in FIGURES.items():
        fig = build(a, title)
        if placement:
            _label_placement(fig, a, placement)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        out[name] = buf.getvalue()
    return out
