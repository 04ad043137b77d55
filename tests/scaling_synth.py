"""Synthetic scaling data with known answers, for the analysis and report tests.

Times follow a law exactly and then get multiplicative log-normal noise (timing noise is
relative); a seed makes every data set reproducible.
"""

from __future__ import annotations

import numpy as np

from hpc.scaling import ScalingPoint

RANKS = (1, 2, 4, 8, 16, 32, 64)
T1 = 10.0


def amdahl_time(p, f: float, c_log2: float = 0.0, c_linear: float = 0.0,
                t1: float = T1) -> np.ndarray:
    """Amdahl's law from one rank, plus optional overheads c·log2 p and c·(p − 1)."""
    p = np.asarray(p, dtype=float)
    return t1 * (f + (1 - f) / p) + c_log2 * np.log2(p) + c_linear * (p - 1)


def gustafson_time(p, alpha: float, c_log2: float = 0.0, t1: float = T1) -> np.ndarray:
    """Weak scaling: S = p − alpha (p − 1) means T(p) = T1 · p / (alpha + (1 − alpha) p)."""
    p = np.asarray(p, dtype=float)
    return t1 * p / (alpha + (1 - alpha) * p) + c_log2 * np.log2(p)


def noisy(times, repeats: int, noise: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [t * np.exp(noise * rng.standard_normal(repeats)) for t in np.atleast_1d(times)]


def points(times, ranks=RANKS, *, repeats: int = 5, noise: float = 0.03, seed: int = 0,
           weak: bool = False, comm_share: float = 0.1) -> list[ScalingPoint]:
    """ScalingPoints with compute/communication phases that add up to 90% of each time."""
    out = []
    for p, reps in zip(ranks, noisy(times, repeats, noise, seed), strict=True):
        phases = {"compute": reps * (0.9 - comm_share), "communication": reps * comm_share}
        out.append(ScalingPoint(ranks=p, size=1000 * p if weak else 1000, times=reps,
                                phase_times=phases, label=f"run-{p}"))
    return out


def rank_points(case: str, ranks=RANKS, *, repeats: int = 5, noise: float = 0.03,
                seed: int = 0, f: float = 0.1) -> list[ScalingPoint]:
    """Strong-scaling points with each rank's compute time, for a known truth:

    "amdahl": a fraction f of the 1-rank time is serial work on rank 0 while the others
    wait; "log2": f = 0.02 of serial work plus 0.3 s·log2 p of communication on every
    rank; "imbalance": rank 0 gets twice the share of each other rank (no serial code).
    Each repeat's times share one multiplicative noise factor; ranks add 1% of their own.
    """
    rng = np.random.default_rng(seed)
    out = []
    for p in ranks:
        share = np.ones(p)
        if case == "imbalance":
            share[0] = 2.0
            work = T1 * share / share.sum()             # seconds of compute per rank
            t = work.max()
        else:
            ff = 0.02 if case == "log2" else f
            work = np.full(p, T1 * (1 - ff) / p)
            work[0] += T1 * ff
            t = work[0] + (0.3 * np.log2(p) if case == "log2" else 0.0)
        factor = np.exp(noise * rng.standard_normal(repeats))
        compute = 0.98 * work[None, :] * factor[:, None] * np.exp(
            0.01 * rng.standard_normal((repeats, p)))
        times = t * factor
        out.append(ScalingPoint(ranks=p, size=1000, times=times,
                                phase_times={"compute": compute.max(axis=1)},
                                rank_compute=np.minimum(compute, times[:, None]),
                                label=f"{case}-{p}"))
    return out
