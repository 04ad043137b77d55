"""What the machine was doing during a point: cores, oversubscription, contention, CPU time.

A rank that got much less CPU than wall time was descheduled; a node whose ranks (times
their threads) outnumber its cores is oversubscribed; other processes busy on the node
while the point ran mean contention. None of these is the program's scaling, so the
analysis keeps such points out of the fits (hpc.scaling) and says why.

Linux sources, read without privileges: ``os.sched_getaffinity`` (the cores this process
may run on), the cgroup v2 ``cpu.max`` quota, Slurm's ``SLURM_CPUS_ON_NODE``, ``/proc/stat``
(busy time of each core the run may use) and ``/proc/loadavg``. Elsewhere the fields are left out.
No MPI here: the runner gathers each rank's ``Usage`` and calls ``summarise``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Other processes using at least this many cores on average (a quarter core: far above
# idle daemons) make a point "contended" when they and the point's ranks together want
# more cores than the run may use.
CONTENDED_CORES = 0.25
# /proc/stat counts in ticks of 10 ms per core: over a shorter stretch than this the
# other processes' share is too coarse to judge, and is left out.
MIN_WALL_FOR_LOAD = 0.2
# A rank that waited at least this share of its wall time for a core was descheduled
# (run-queue wait from /proc/self/schedstat). Ranks that sleep or block (amdahl's sleep
# units) wait for no core, so more of them than cores is no harm and is not flagged.
WAITED = 0.1
# /proc/stat fields that count as busy: user nice system irq softirq steal.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def _cgroup_cores() -> float | None:
    """The cgroup v2 CPU quota in cores (``cpu.max``: "quota period"), None when unlimited."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().splitlines()[0].split("::", 1)[1]
        quota, period = (Path("/sys/fs/cgroup") / rel.lstrip("/") / "cpu.max").read_text().split()
    except (OSError, IndexError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def available_cores() -> tuple[list[int], float, str]:
    """The cores this process may use: (affinity set, usable count, what limited it)."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = list(range(os.cpu_count() or 1))
    limits = {"affinity": float(len(affinity))}
    quota = _cgroup_cores()
    if quota is not None:
        limits["cgroup cpu.max"] = quota
    slurm = os.environ.get("SLURM_CPUS_ON_NODE", "")
    if slurm.isdigit():
        limits["SLURM_CPUS_ON_NODE"] = float(slurm)
    source = min(limits, key=limits.get)
    return affinity, limits[source], source


def _cpu_busy_seconds(cpus: list[int]) -> dict[int, float] | None:
    """Busy seconds since boot of each of ``cpus`` (the ``cpuN`` lines of /proc/stat):
    only the cores the run may use, since load on the others does not compete with it."""
    wanted = {f"cpu{c}": c for c in cpus}
    out = {}
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] in wanted:
                ticks = sum(int(fields[1 + i]) for i in _BUSY_FIELDS if 1 + i < len(fields))
                out[wanted[fields[0]]] = ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    return out or None


def _run_queue_wait() -> float | None:
    """Seconds this process has waited, runnable, for a core (Linux schedstat)."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def threads_per_rank() -> int:
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
    return int(value) if value.isdigit() and int(value) > 0 else 1


@dataclass
class Usage:
    """One rank's (or one external program's) share of the machine over a stretch."""

    host: str
    affinity: list[int]
    cores: float
    cores_source: str
    threads: int
    load_before: float | None
    wall: float
    cpu: float
    wait: float | None  # seconds runnable but waiting for a core; None: unknown
    cpu_busy: dict[int, float] | None  # busy seconds of each usable core over the stretch


class Probe:
    """Started before a point's repeats, stopped after: ``stop()`` returns the Usage.

    ``children=True`` counts the CPU time of finished child processes (an external
    program) instead of this process's own.
    """

    def __init__(self, children: bool = False) -> None:
        import resource

        self._resource = resource
        self._children = children
        self._load = load_average()
        self._busy = _cpu_busy_seconds(available_cores()[0])
        self._cpu = self._cpu_now()
        self._wait = None if children else _run_queue_wait()
        self._wall = time.perf_counter()

    def _cpu_now(self) -> float:
        if not self._children:
            return time.process_time()
        ru = self._resource.getrusage(self._resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def stop(self) -> Usage:
        wall = time.perf_counter() - self._wall
        cpu = self._cpu_now() - self._cpu
        wait = _run_queue_wait()
        wait = None if wait is None or self._wait is None else wait - self._wait
        affinity, cores, source = available_cores()
        busy = _cpu_busy_seconds(affinity)
        delta = None
        if busy is not None and self._busy is not None:
            delta = {c: busy[c] - self._busy[c] for c in busy if c in self._busy}
        return Usage(platform.node(), affinity, cores, source, threads_per_rank(),
                     self._load, wall, cpu, wait, delta)


def summarise(usages: list[Usage], ranks: int | None = None) -> dict[str, Any]:
    """The record's ``machine`` group from every rank's Usage (one per rank, in order).

    ``ranks`` overrides the count of ranks per node (an external program that starts its
    own ranks: one Usage stands for all of them).
    """
    nodes: dict[str, list[Usage]] = {}
    for u in usages:
        nodes.setdefault(u.host, []).append(u)
    worst_over, worst_others, cores_min, load_max = 0.0, 0.0, math.inf, None
    per_node = []
    for host, us in nodes.items():
        # Ranks bound to different cores together may use the union of their sets.
        union = set().union(*(u.affinity for u in us))
        cores = min(min(u.cores for u in us), float(len(union)))
        wanted = (ranks if ranks is not None else len(us)) * max(u.threads for u in us)
        wall = max(u.wall for u in us)
        # Ranks on one node read the same counters: each core's largest delta counts once.
        per_cpu: dict[int, float] = {}
        for u in us:
            for c, b in (u.cpu_busy or {}).items():
                per_cpu[c] = max(per_cpu.get(c, 0.0), b)
        busy = sum(per_cpu.values()) if per_cpu else None
        others = None
        if busy is not None and wall >= MIN_WALL_FOR_LOAD:
            others = max(busy - sum(u.cpu for u in us), 0.0) / wall
        per_node.append((host, cores, wanted, others))
        worst_over = max(worst_over, wanted - cores)
        if others is not None:
            worst_others = max(worst_others, others)
        cores_min = min(cores_min, cores)
        loads = [u.load_before for u in us if u.load_before is not None]
        if loads:
            load_max = max(loads) if load_max is None else max(load_max, max(loads))
    oversubscribed = worst_over > 0
    waits = [u.wait / u.wall for u in usages if u.wait is not None and u.wall > 0]
    waited = len(waits) < len(usages) or max(waits) >= WAITED  # unknown counts as waited
    contended = waited and any(o is not None and o >= CONTENDED_CORES and w + o > c
                               for _, c, w, o in per_node)
    out: dict[str, Any] = {
        "cores_available": cores_min,
        "cores_source": usages[0].cores_source,
        "threads_per_rank": max(u.threads for u in usages),
        "ranks_times_threads_per_node": max(w for _, _, w, _ in per_node),
        "oversubscribed": oversubscribed,
        "contended": contended,
        "other_busy_cores": worst_others,
        "rank_cpu_seconds": [u.cpu for u in usages],
        "rank_wall_seconds": [u.wall for u in usages],
    }
    if len(waits) == len(usages):
        out["rank_wait_seconds"] = [u.wait for u in usages]
    if load_max is not None:
        out["load_before"] = load_max
    if all(o is None for *_, o in per_node):
        del out["other_busy_cores"]
    return out


def conditions(machine: dict[str, Any]) -> list[str]:
    """Why a point's times do not measure the program alone, from a record's ``machine``
    group; empty for a clean point (and for records older than schema 1.2)."""
    out = []
    cores = machine.get("cores_available")
    wanted = machine.get("ranks_times_threads_per_node")
    threads = machine.get("threads_per_rank", 1)
    wall, wait = machine.get("rank_wall_seconds"), machine.get("rank_wait_seconds")
    waited = ""
    if wait is not None and wall is not None and len(wait) and min(wall) > 0:
        most = max(w / t for w, t in zip(wait, wall, strict=True))
        if most < WAITED:  # the ranks sleep or block: no core was missed (nor contended)
            return []
        waited = f"; a rank waited {most:.0%} of its wall time for a core"
    if machine.get("oversubscribed"):
        per = f" × {threads:g} threads" if threads != 1 else ""
        out.append(f"oversubscribed: {wanted // max(threads, 1):g} ranks{per} on {cores:g} "
                   f"cores, so ranks took turns on the cores{waited}")
    if machine.get("contended"):
        out += _contended(machine, cores)
    return out


def _contended(machine: dict[str, Any], cores: float) -> list[str]:
    cpu, wall = machine.get("rank_cpu_seconds"), machine.get("rank_wall_seconds")
    share = ""
    if cpu is not None and wall is not None and len(cpu) and min(wall) > 0:
        least = min(c / w for c, w in zip(cpu, wall, strict=True))
        share = f"; the least-served rank got {least:.0%} of its wall time as CPU"
    return [f"contended: other processes kept {machine.get('other_busy_cores', 0):.2g} cores "
            f"busy during the point ({cores:g} cores){share}"]
