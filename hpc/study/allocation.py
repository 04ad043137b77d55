"""The Slurm resources of a study's points: the profile's, with the study's [resources],
sized exactly for each point (the slurm launcher makes one job array per distinct shape;
submitit one job per point)."""

from __future__ import annotations

import math
import os
from typing import Any

from hpc.errors import UserError
from hpc.limits import HERE, available_memory, check_memory, slurm_mem_bytes
from hpc.study.plan import Point
from hpc.study.spec import StudySpec
from hpc.workloads import WORKLOADS


def load_study_profile(spec: StudySpec) -> Any:
    from hpc.slurm.profiles import load_profile

    try:
        return load_profile(spec.profile or os.environ.get("HPC_PROFILE"))
    except UserError as exc:
        raise UserError(f"{spec.source}: {exc}") from None


def allocation(spec: StudySpec, profile: Any, ranks: int, threads: int = 1) -> Any:
    """The profile's resources with the study's [resources], sized for ``ranks`` ranks of
    ``threads`` threads (cpus-per-task; the point's driver sets OMP_NUM_THREADS)."""
    given = dict(spec.resources)
    resources = profile.resources.updated({**given, "job_name": spec.name})
    if threads > 1:
        resources = resources.updated(cpus_per_task=threads)
    if resources.ntasks >= ranks:
        return resources
    if "nodes" in given and "ntasks_per_node" in given:
        raise UserError(f"{spec.source}: [resources] nodes = {resources.nodes} x "
                        f"ntasks_per_node = {resources.ntasks_per_node} gives "
                        f"{resources.ntasks} ranks, fewer than the study's largest point "
                        f"({ranks}); raise them or drop nodes to have it computed")
    if "ntasks_per_node" in given:
        return resources.updated(nodes=math.ceil(ranks / resources.ntasks_per_node))
    return resources.updated(nodes=1, ntasks_per_node=ranks)


def exact_allocation(spec: StudySpec, profile: Any, ranks: int, threads: int = 1) -> Any:
    """Resources with exactly ``ranks`` tasks (submitit makes every task a rank): one node
    unless [resources] ntasks_per_node says fewer fit, else the fewest nodes that share
    them evenly."""
    resources = allocation(spec, profile, 1, threads)
    per_node = spec.resources.get("ntasks_per_node", ranks)
    nodes = math.ceil(ranks / max(per_node, 1))
    while ranks % nodes:
        nodes += 1
    return resources.updated(nodes=nodes, ntasks_per_node=ranks // nodes)


def node_allocation(spec: StudySpec, profile: Any, point: Point) -> Any:
    """A node ladder's point: exactly its nodes, ranks_per_node tasks on each."""
    return allocation(spec, profile, 1, point.threads).updated(
        nodes=point.nodes, ntasks_per_node=spec.ranks_per_node)


def _shape(spec: StudySpec, profile: Any, point: Point) -> Any:
    if point.nodes is not None:
        return node_allocation(spec, profile, point)
    return exact_allocation(spec, profile, point.ranks, point.threads)


def point_resources(spec: StudySpec, profile: Any, points: list[Point]) -> list[Any]:
    """One Resources per point, exactly that point's ranks and threads (a node ladder's:
    its nodes x ranks_per_node): no point holds the allocation of a larger one."""
    return [_shape(spec, profile, p) for p in points]


def allocation_memory(spec: StudySpec, points: list[Point]) -> tuple[int | None, str,
                                                                     dict[int, int]]:
    """(bytes per node, how to name them, nodes per rank count) of the study's jobs; None
    bytes when [resources] (or the profile) asks for no mem."""
    profile = load_study_profile(spec)
    shapes = {p.ranks: _shape(spec, profile, p) for p in points}
    mem = next(iter(shapes.values())).mem
    nodes = {ranks: r.nodes for ranks, r in shapes.items()}
    return (slurm_mem_bytes(mem) if mem else None), f"per node with [resources] mem = {mem}", \
        nodes


def check_points_fit(spec: StudySpec, points: list[Point]) -> None:
    """Refuse, before the study file exists, a point whose memory model does not fit: this
    machine's memory (local launcher) or the allocation's [resources] mem (Slurm)."""
    if spec.workload is None:
        return  # an external command declares no memory model
    cls = WORKLOADS[spec.workload]
    if spec.launcher == "local":
        memory, where = available_memory(), HERE
        nodes_for = {p.ranks: 1 for p in points}
    else:
        memory, where, nodes_for = allocation_memory(spec, points)
        if memory is None:
            return  # no mem asked: the site's default, unknown here
    for point in points:
        try:
            check_memory(cls, point.params, point.ranks, nodes_for[point.ranks], memory,
                         where)
        except UserError as exc:
            raise UserError(f"{spec.source}: the point with {point.ranks} ranks cannot run: "
                            f"{exc}") from None
