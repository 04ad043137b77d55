"""Scaling analysis: speedup, efficiency, Karp–Flatt, fitted laws, reports and comparisons.

The public API (formulas and conventions in docs/SCALING.md)::

    from hpc.scaling import ScalingPoint, analyse, write_report, compare

    analysis = analyse("strong", points)      # StudyAnalysis; .to_dict() is plain JSON
    analysis.law.f, analysis.law.f_ci         # Amdahl's f with its 95% interval
    analysis.comparison.verdict               # "serial code" | "overhead growing with ranks"
    write_report(analysis, meta, Path("report.html"), "html")
    print(compare(old, new).text())           # .regressed: True when worse beyond noise

Formulas: ``amdahl_speedup``, ``gustafson_speedup``, ``efficiency``, ``karp_flatt``.
Fits: ``fit_amdahl``, ``fit_gustafson`` and ``fit_overhead`` (the law plus c·log2 p or
c·p), each with intervals from a bootstrap over repeats.
"""

from hpc.scaling.analysis import (
    PointStats,
    StudyAnalysis,
    analyse,
    fit_amdahl,
    fit_gustafson,
    fit_overhead,
)
from hpc.scaling.compare import Comparison, compare
from hpc.scaling.data import Excluded, Placement, ScalingPoint
from hpc.scaling.estimate import Estimate
from hpc.scaling.fits import ModelFit
from hpc.scaling.laws import (
    amdahl_speedup,
    efficiency,
    gustafson_fraction,
    gustafson_speedup,
    karp_flatt,
)
from hpc.scaling.predict import Predictions
from hpc.scaling.report import write_report
from hpc.scaling.selection import ModelComparison

__all__ = [
    "Comparison", "Estimate", "Excluded", "ModelComparison", "ModelFit", "Placement",
    "PointStats", "Predictions", "ScalingPoint", "StudyAnalysis", "amdahl_speedup",
    "analyse", "compare",
    "efficiency", "fit_amdahl", "fit_gustafson", "fit_overhead", "gustafson_fraction",
    "gustafson_speedup", "karp_flatt", "write_report",
]
