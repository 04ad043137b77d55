"""The scaling laws as plain formulas, relative to a baseline of ``p0`` ranks.

Every function takes rank counts ``p`` and an optional baseline ``p0`` (default 1) and
works on scalars or numpy arrays. With ``q = p / p0`` the baseline run plays the part of
"one processor": speedups are relative to it and the fractions ``f`` and ``alpha`` are
fractions of the baseline run (docs/SCALING.md derives this convention).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _ratio(p: ArrayLike, p0: float) -> np.ndarray:
    q = np.asarray(p, dtype=float) / float(p0)
    if np.any(q < 1):
        raise ValueError("rank counts must not be smaller than the baseline p0")
    return q


def amdahl_speedup(p: ArrayLike, f: float, p0: float = 1) -> np.ndarray | float:
    """Amdahl's law for a fixed problem: S = 1 / (f + (1 - f) / q), q = p / p0.

    ``f`` is the serial fraction of the baseline run's time; S tends to 1/f as p grows.
    """
    q = _ratio(p, p0)
    return _scalar(1.0 / (f + (1.0 - f) / q))


def gustafson_speedup(p: ArrayLike, alpha: float, p0: float = 1) -> np.ndarray | float:
    """Gustafson's law for a problem that grows with p: S = q - alpha * (q - 1), q = p / p0.

    ``alpha`` is the serial fraction of the parallel run's time: the share of its wall time
    in which one rank's worth of work gets done while the others wait.
    """
    q = _ratio(p, p0)
    return _scalar(q - alpha * (q - 1.0))


def efficiency(speedup: ArrayLike, p: ArrayLike, p0: float = 1) -> np.ndarray | float:
    """Parallel efficiency E = S / q: 1 is ideal; the speedup is relative to ``p0`` ranks."""
    q = _ratio(p, p0)
    return _scalar(np.asarray(speedup, dtype=float) / q)


def karp_flatt(speedup: ArrayLike, p: ArrayLike, p0: float = 1) -> np.ndarray | float:
    """Karp–Flatt experimentally determined serial fraction e = (1/S - 1/q) / (1 - 1/q).

    On data that follow Amdahl's law exactly, e equals f at every p; an e that rises with p
    means an overhead that grows with the rank count. Undefined (NaN) at the baseline q = 1.
    """
    q = _ratio(p, p0)
    s = np.asarray(speedup, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(q > 1, (1.0 / s - 1.0 / q) / (1.0 - 1.0 / q), np.nan)
    return _scalar(e)


def gustafson_fraction(speedup: ArrayLike, p: ArrayLike, p0: float = 1) -> np.ndarray | float:
    """The weak-scaling counterpart of Karp–Flatt: alpha_e = (q - S) / (q - 1).

    The alpha Gustafson's law needs to give speedup S at this p: constant on data that
    follow the law, rising with p when an overhead grows with the rank count. NaN at q = 1.
    """
    q = _ratio(p, p0)
    s = np.asarray(speedup, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 1, (q - s) / (q - 1.0), np.nan)
    return _scalar(a)


def one_rank_fraction(kind: str, fraction: float, p0: float) -> float:
    """A fraction fitted with a baseline of p0 ranks, re-expressed for a one-rank baseline.

    Both laws keep their form when the baseline moves.
    Amdahl: f_p0 = f1·p0 / (1 + f1·(p0 − 1)), so f1 = f_p0 / (f_p0 + (1 − f_p0)·p0).
    Gustafson: a_p0 = a1 / (a1 + (1 − a1)·p0), so a1 = a_p0·p0 / (1 + a_p0·(p0 − 1)).
    """
    if kind == "strong":
        return fraction / (fraction + (1.0 - fraction) * p0)
    return fraction * p0 / (1.0 + fraction * (p0 - 1.0))


def _scalar(x: np.ndarray) -> np.ndarray | float:
    return float(x) if np.ndim(x) == 0 else x
