"""Distributed k-means (Lloyd's algorithm) on a seeded synthetic data set.

The data set is defined point by point, independent of the rank count: points come in
fixed chunks, each drawn from its own seeded stream, and every rank generates only the
chunks that overlap its block. Each iteration assigns local points to the nearest
centroid, then an Allreduce of per-cluster sums and counts gives every rank the new
centroids. A predict phase then assigns a fresh batch of points with the trained model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from hpc.errors import UserError
from hpc.lazympi import MPI, lazy_module
from hpc.timing import PhaseTimer
from hpc.workloads.base import Param, Verification, Workload
from hpc.workloads.decomp import block_range

np = lazy_module("numpy")  # not imported by a process that only starts the ranks

CHUNK = 65536
REFERENCE_MAX_WORK = int(os.environ.get("HPC_REFERENCE_MAX_WORK", 5 * 10**7))
_TRAIN, _PREDICT = 0, 1


def blob_centers(k: int, dims: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 2, k, dims]).uniform(-10.0, 10.0, size=(k, dims))


def make_points(lo: int, hi: int, k: int, dims: int, seed: int, stream: int) -> np.ndarray:
    """Points [lo, hi) of the data set: Gaussian blobs around k seeded centres."""
    centers = blob_centers(k, dims, seed)
    parts = []
    for chunk in range(lo // CHUNK, (hi - 1) // CHUNK + 1):
        rng = np.random.default_rng([seed, stream, chunk])
        labels = rng.integers(0, k, size=CHUNK)
        pts = centers[labels] + rng.normal(scale=1.5, size=(CHUNK, dims))
        start = chunk * CHUNK
        parts.append(pts[max(lo - start, 0):min(hi - start, CHUNK)])
    return np.ascontiguousarray(np.concatenate(parts))


def lloyd(kernels: Any, points: np.ndarray, centroids: np.ndarray, iterations: int,
          allreduce: Any = None,
          compute: Callable[[], AbstractContextManager] = nullcontext,
          ) -> tuple[np.ndarray, list[float]]:
    """Lloyd's iterations from ``centroids``.

    ``allreduce`` sums the partial results across ranks; ``compute`` wraps the local work
    (a timer phase on ranks, nothing in the serial reference).
    """
    k, dims = centroids.shape
    centroids = centroids.copy()
    labels = np.empty(len(points), dtype=np.int64)
    sums = np.empty((k, dims))
    counts = np.empty(k, dtype=np.int64)
    inertias = []
    for _ in range(iterations):
        with compute():
            inertia = kernels.kmeans_assign(points, centroids, labels)
            kernels.kmeans_accumulate(points, labels, sums, counts)
        if allreduce is not None:
            inertia, sums, counts = allreduce(inertia, sums, counts)
        inertias.append(float(inertia))
        with compute():
            filled = counts > 0  # an empty cluster keeps its centroid
            centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, inertias


class KMeans(Workload):
    name = "kmeans"
    summary = "distributed k-means (Lloyd), Allreduce of sums and counts, plus predict"
    params = (
        Param("points", int, 400_000, "training points", minimum=1),
        Param("k", int, 8, "clusters", minimum=1),
        Param("dims", int, 4, "dimensions", minimum=1),
        Param("iterations", int, 20, "Lloyd iterations (fixed, so the work is known)",
              minimum=1),
        Param("predict_points", int, 400_000, "fresh points assigned in the predict phase",
              minimum=0),
        Param("seed", int, 11, "random seed of the data set", minimum=0),
    )
    size_param = "points"
    work_exponent = 1.0
    phases = ("compute", "communication", "predict")

    @classmethod
    def check_decomposition(cls, params: dict[str, Any], nranks: int) -> None:
        super().check_decomposition(params, nranks)
        if params["points"] < params["k"]:
            raise UserError(f"kmeans: --points {params['points']} must be at least "
                            f"--k {params['k']} (the first k points seed the centroids)")

    @classmethod
    def work(cls, params: dict[str, Any]) -> float:
        return float(params["points"]) * params["k"] * params["iterations"]

    @classmethod
    def memory_bytes(cls, params: dict[str, Any], nranks: int) -> tuple[float, float]:
        # Each rank's training and fresh points, built in chunks then concatenated (two
        # copies at the peak), and the labels; rank 0's reference regenerates them all.
        train = -(-params["points"] // nranks) * params["dims"] * 8.0
        fresh = -(-params["predict_points"] // nranks) * (params["dims"] + 1) * 8.0
        small = params["points"] * params["k"] * params["iterations"] <= REFERENCE_MAX_WORK
        reference = 2 * 8.0 * params["points"] * params["dims"] if small else 0.0
        return 2 * (train + fresh), reference

    def setup(self) -> None:
        p = self.params
        lo, hi = block_range(p["points"], self.comm.size, self.comm.rank)
        self.points = make_points(lo, hi, p["k"], p["dims"], p["seed"], _TRAIN)
        plo, phi = block_range(p["predict_points"], self.comm.size, self.comm.rank)
        self.fresh = (make_points(plo, phi, p["k"], p["dims"], p["seed"], _PREDICT)
                      if phi > plo else np.empty((0, p["dims"])))
        self.initial = make_points(0, p["k"], p["k"], p["dims"], p["seed"], _TRAIN)

    def reset(self) -> None:
        self.centroids = self.initial.copy()

    def execute(self, timer: PhaseTimer) -> None:
        comm = self.comm

        def allreduce(inertia: float, sums: np.ndarray, counts: np.ndarray) -> tuple:
            with timer.phase("communication"):
                comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
                comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
                return comm.allreduce(inertia, op=MPI.SUM), sums, counts

        self.centroids, self.inertias = lloyd(
            self.kernels, self.points, self.initial, self.params["iterations"], allreduce,
            compute=lambda: timer.phase("compute"))
        with timer.phase("predict"):
            labels = np.empty(len(self.fresh), dtype=np.int64)
            self.kernels.kmeans_assign(self.fresh, self.centroids, labels)
            self.predicted = np.bincount(labels, minlength=self.params["k"])

    def collect(self) -> dict[str, Any] | None:
        predicted = self.comm.reduce(self.predicted, op=MPI.SUM, root=0)
        if self.comm.rank != 0:
            return None
        return {
            "centroids": self.centroids,
            "inertia_history": np.array(self.inertias),
            "inertia": self.inertias[-1],
            "predict_counts": predicted,
        }

    def verify(self, result: dict[str, Any]) -> Verification:
        history = result["inertia_history"]
        # Lloyd's algorithm never increases the inertia.
        if np.any(np.diff(history) > 1e-9 * history[:-1]):
            return Verification(False, "inertia non-increasing", "inertia increased")
        p = self.params
        if p["points"] * p["k"] * p["iterations"] > REFERENCE_MAX_WORK:
            return Verification(True, "inertia non-increasing (too large for the reference)",
                                f"final inertia {history[-1]:.6g}")
        from kernels import load_backend

        points = make_points(0, p["points"], p["k"], p["dims"], p["seed"], _TRAIN)
        reference, _ = lloyd(load_backend("numpy"), points, self.initial, p["iterations"])
        diff = float(np.max(np.abs(result["centroids"] - reference)))
        return Verification(diff <= 1e-9,
                            "serial numpy reference (max |centroid diff| <= 1e-9)",
                            f"max |diff| = {diff:.3e}")
