"""The points of a study: one (rank count, size) pair per rung of the ladder.

Strong scaling keeps the size. Weak scaling grows it with the work model the workload
declares (work ∝ size ** work_exponent), so that work / ranks stays what it was at the
smallest rank count: heat2d (work ∝ n²) grows n with √p, kmeans (work ∝ points) grows
points with p. Every point is checked against the workload's decomposition before any
runs, so an impossible rung fails the whole plan up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpc.errors import UserError
from hpc.limits import INT64_MAX
from hpc.study.spec import StudySpec
from hpc.workloads import WORKLOADS


@dataclass(frozen=True)
class Point:
    index: int                 # 0-based position in the ladder (a Slurm array task id)
    ranks: int
    size: int
    params: dict[str, Any]     # the workload's full parameters (empty for a command)
    work: float                # relative total work, for progress estimates
    threads: int = 1           # OpenMP threads per rank ([command] studies)
    nodes: int | None = None   # a node ladder's nodes (None: the study climbs ranks)

    @property
    def cores(self) -> int:
        """What the point scales over: ranks x threads."""
        return self.ranks * self.threads

    @property
    def work_per_rank(self) -> float:
        return self.work / self.cores

    def describe(self, size_name: str = "size") -> str:
        threads = f" threads={self.threads}" if self.threads > 1 else ""
        nodes = f"nodes={self.nodes} " if self.nodes is not None else ""
        return f"{nodes}ranks={self.ranks}{threads} {size_name}={self.size}"


def _grown(base: int, factor: float, exponent: float) -> int:
    return max(1, round(base * factor ** (1.0 / exponent)))


def plan_study(spec: StudySpec) -> list[Point]:
    """The study's points, smallest rank count first."""
    base_ranks = spec.ranks[0]
    points = []
    if spec.workload is not None:
        cls = WORKLOADS[spec.workload]
        base = spec.size if spec.size is not None else cls.defaults()[cls.size_param]
        for i, ranks in enumerate(spec.ranks):
            size = base if spec.kind == "strong" else cls.weak_scaled_size(base,
                                                                             ranks / base_ranks)
            given = {**spec.params, cls.size_param: size}
            try:
                params = cls.resolve_params(given, ranks)
            except UserError as exc:
                raise UserError(f"{spec.source}: the point with {ranks} ranks "
                                f"({cls.size_param}={size}) is impossible: {exc}") from None
            points.append(Point(i, ranks, size, params, cls.work(params),
                                nodes=_nodes(spec, i)))
        return points
    command = spec.command
    base = spec.size if spec.size is not None else 1
    exponent = command.work_exponent or 1.0
    pairs = [(r, t) for r in spec.ranks for t in spec.threads]
    base_cores = min(r * t for r, t in pairs)
    for i, (ranks, threads) in enumerate(pairs):
        factor = ranks * threads / base_cores
        size = base if spec.kind == "strong" else _grown(base, factor, exponent)
        if size > INT64_MAX:  # a small work_exponent grows the size as a high power
            raise UserError(f"{spec.source}: the point with {ranks} ranks would need size "
                            f"{size:.3g}, beyond the 64-bit integers; lower the ladder or "
                            "raise work_exponent")
        points.append(Point(i, ranks, size, {}, float(size) ** exponent, threads,
                            nodes=_nodes(spec, spec.ranks.index(ranks))))
    return points


def _nodes(spec: StudySpec, rung: int) -> int | None:
    return spec.nodes[rung] if spec.nodes else None


def size_name(spec: StudySpec) -> str:
    return WORKLOADS[spec.workload].size_param if spec.workload else "size"


def format_plan(spec: StudySpec, points: list[Point]) -> str:
    """The plan as a table a user reads before spending hours on it."""
    name = size_name(spec)
    lines = [f"study {spec.name}: {spec.kind} scaling of {spec.subject} "
             f"[{spec.backend if spec.workload else 'external'}], {len(points)} points, "
             f"{spec.repeats} repeats + {spec.warmup} warm-up each, launcher {spec.launcher}",
             f"{'point':>5}{' nodes' if spec.nodes else ''} {'ranks':>6} {'threads':>7} "
             f"{name:>12} {'work/core':>10}"]
    base = points[0].work_per_rank
    for p in points:
        nodes = f" {p.nodes:>5}" if spec.nodes else ""
        lines.append(f"{p.index:>5}{nodes} {p.ranks:>6} {p.threads:>7} {p.size:>12} "
                     f"{p.work_per_rank / base:>10.3f}")
    return "\n".join(lines)
