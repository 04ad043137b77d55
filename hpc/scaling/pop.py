"""POP efficiency metrics per point, and the dominant loss a verdict names.

The POP Centre of Excellence's multiplicative metrics, from each rank's useful compute
time c_r (the ``compute`` phase) and the repeat's runtime T (the slowest rank's total):

    load balance              LB    = mean_r c_r / max_r c_r
    communication efficiency  CommE = max_r c_r / T
    parallel efficiency       PE    = LB · CommE = mean_r c_r / T
    computation scalability   CompS = Σ_r c_r(p0) · w / Σ_r c_r(p)   (w: work ratio, 1
                                      for strong scaling, q = p/p0 for weak)
    global efficiency         GE    = PE · CompS

LB and CommE are averaged over the point's repeats (outliers left out); PE and GE are the
products of the averages, so that the table multiplies out as printed.
docs/SCALING.md has the definitions and how the dominant loss is chosen.
"""

from __future__ import annotations

import numpy as np

from hpc.scaling.data import RankGroup

METRICS = ("load balance", "communication efficiency", "parallel efficiency",
           "computation scalability", "global efficiency")
LOAD_IMBALANCE = "load imbalance"
COMMUNICATION = "communication"
COMPUTATION = "computation scalability"
SERIAL_CODE = "serial code"
OVERSUBSCRIPTION = "oversubscription"
CONTENTION = "contention"
NONE = "none to speak of"
# Below this loss (1 − metric) at the largest rank count, nothing is worth naming.
NEGLIGIBLE = 0.05
# Serial code keeps the busiest rank's extra compute constant in seconds as p grows;
# an uneven decomposition shrinks it with the work per rank (like 1/p). The log-log
# slope of that excess against p splits the two halfway, at -1/2.
SERIAL_SLOPE = -0.5


def pop_metrics(kind: str, group: RankGroup, baseline: RankGroup,
                p0: int) -> dict[str, float] | None:
    """The five metrics of one point, or None when a rank's compute time is missing."""
    if group.rank_compute is None or baseline.rank_compute is None:
        return None
    c, t = group.rank_compute, group.times
    if c.size == 0 or not np.all(c.max(axis=1) > 0):
        return None
    lb = c.mean(axis=1) / c.max(axis=1)
    comm = c.max(axis=1) / t
    work = group.ranks / p0 if kind == "weak" else 1.0
    comp = baseline.rank_compute.sum(axis=1).mean() * work / c.sum(axis=1).mean()
    pe = float(lb.mean() * comm.mean())
    return {"load balance": float(lb.mean()), "communication efficiency": float(comm.mean()),
            "parallel efficiency": pe, "computation scalability": float(comp),
            "global efficiency": pe * float(comp)}


def _excess_slope(groups: list[RankGroup]) -> float | None:
    """Log-log slope of the busiest rank's extra compute (max − mean) against p."""
    pts = [(g.ranks, float((g.rank_compute.max(axis=1) - g.rank_compute.mean(axis=1)).mean()))
           for g in groups if g.rank_compute is not None and g.ranks > 1]
    pts = [(p, e) for p, e in pts if e > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p for p, _ in pts]), np.log([e for _, e in pts])
    x = x - x.mean()
    return float(x @ (y - y.mean()) / (x @ x))


def dominant_loss(metrics: list[dict[str, float] | None], groups: list[RankGroup],
                  flagged: list[RankGroup]) -> tuple[str, str, str]:
    """(dominant, the program's own, sentence). The program's own loss is the largest at
    the largest fitted rank count; the dominant one is the machine's when points were
    left out as oversubscribed or contended (their loss is larger: they are slower)."""
    machine = ""
    name = None
    over = [g.ranks for g in flagged if any(c.startswith("oversubscribed")
                                            for c in g.conditions)]
    busy = [g.ranks for g in flagged if g.ranks not in over]
    if over:
        name = OVERSUBSCRIPTION
        machine = (f"The points at {_listed(over)} ranks were oversubscribed (more ranks "
                   "than cores): their loss is the machine's, not the program's, so they are "
                   "left out of the fits. ")
    if busy:
        name = name or CONTENTION
        machine += (f"The points at {_listed(busy)} ranks ran while other processes competed "
                    "for the cores: left out of the fits, not blamed on the program. ")
    last = metrics[-1] if len(metrics) > 1 else None
    if last is None:
        own = ("The program's own losses are unknown: no per-rank compute phase was "
               "recorded." if len(metrics) > 1 else "")
        return name or "", "", (machine + own).strip()
    losses = {LOAD_IMBALANCE: 1 - last["load balance"],
              COMMUNICATION: 1 - last["communication efficiency"],
              COMPUTATION: max(0.0, 1 - last["computation scalability"])}
    own = max(losses, key=losses.get)
    lost = losses[own]
    at = f"at {groups[-1].ranks} ranks"
    if lost < NEGLIGIBLE:
        return name or NONE, NONE, (machine + f"The program loses less than {NEGLIGIBLE:.0%} to "
                              f"each of load imbalance, communication and computation "
                              f"scalability {at}.").strip()
    text = f"{own[0].upper()}{own[1:]} costs the program most {at} ({lost:.0%} lost)"
    if groups[-1].conditions:  # fitted only because nothing else was left
        text += (", though other processes competed for the cores there, so part of that "
                 "loss is the machine's")
    if own == LOAD_IMBALANCE:
        slope = _excess_slope(groups)
        if slope is None:
            text += ("; serial code on one rank would look the same, and more rank counts "
                     "would tell the two apart")
        elif slope > SERIAL_SLOPE:
            own = SERIAL_CODE
            text = (f"Serial code costs the program most {at} ({lost:.0%} "
                    f"lost as load imbalance): the busiest rank's extra compute does not "
                    f"shrink with p (log-log slope {slope:.2f} > {SERIAL_SLOPE:g})")
        else:
            text += (f": the busiest rank's extra compute shrinks with p (log-log slope "
                     f"{slope:.2f} ≤ {SERIAL_SLOPE:g}), an uneven decomposition")
    return name or own, own, (machine + text + ".").strip()


def _listed(ranks: list[int]) -> str:
    ranks = sorted(ranks)
    return ", ".join(map(str, ranks[:-1])) + f" and {ranks[-1]}" if len(ranks) > 1 else str(
        ranks[0])
