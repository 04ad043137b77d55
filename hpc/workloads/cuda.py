"""The workloads with ``--backend cuda``: same decomposition, parameters and verification as
their CPU versions (these classes inherit them), with the arrays kept on the GPU.

Each class copies its initial state to the device in ``setup``/``reset`` and works there
for the whole timed ``execute``; only what MPI moves leaves the device, through host
buffers or, with a CUDA-aware MPI library, straight from device memory (hpc.gpu_comm).
Scalars the host needs anyway (the heat2d residual, the k-means inertia, the pi hit
count) are reduced on the host. ``collect`` copies the final state back and hands over
to the CPU version. Compute phases end with a device synchronisation, so the phase timings
hold the kernels' time rather than their launch.

The step loop (resume, checkpoint agreement) is the CPU classes' own
(hpc.workloads.base.SteppedWorkload): these classes override only the per-step hooks and
move their state to the host for a checkpoint (``save_state``) and back (``load_state``).

``self.kernels`` is kernels.cuda_backend; ``hpc.gpu.bind_device`` made this rank's context.
"""

from __future__ import annotations

from typing import Any

from hpc.errors import UserError
from hpc.gpu_comm import MpiStage
from hpc.lazympi import MPI, lazy_module
from hpc.timing import PhaseTimer
from hpc.workloads.base import Workload
from hpc.workloads.heat2d import Heat2D
from hpc.workloads.kmeans import KMeans
from hpc.workloads.nbody import NBody
from hpc.workloads.pi import Pi

np = lazy_module("numpy")  # not imported by a process that only starts the ranks


def _cuda_aware() -> bool:
    from hpc.gpu import bind_device

    return bind_device().cuda_aware  # the session the runner opened for this rank


class Heat2DCuda(Heat2D):
    def _exchange_mode(self) -> str:
        # Edges packed on the device, Sendrecv, unpacked: one way, whatever --exchange says
        # (the record's result names it).
        return "blocking"

    def setup(self) -> None:
        super().setup()
        cu = self.kernels
        self.u0_d = cu.to_device(self.u0)
        self.u_d, self.v_d = cu.empty(self.u0.shape), cu.empty(self.u0.shape)
        edges = 2 * (self.nx + self.ny)
        self.edges_d, self.halo_d = cu.empty(edges), cu.empty(edges)
        aware = _cuda_aware()
        self.edges, self.halo = MpiStage(self.edges_d, aware), MpiStage(self.halo_d, aware)
        self.sides = sum(flag for flag, rank in (
            (cu.HALO_TOP, self.up), (cu.HALO_BOTTOM, self.down),
            (cu.HALO_LEFT, self.left), (cu.HALO_RIGHT, self.right)) if rank != MPI.PROC_NULL)

    def reset(self) -> None:
        self.kernels.copy_device(self.u_d, self.u0_d)
        self.kernels.copy_device(self.v_d, self.u0_d)  # the halo of v holds the boundary too
        self.residuals: list[float] = []
        self.step = 0

    def save_state(self) -> dict[str, Any]:
        self.u = self.u_d.get()
        return super().save_state()

    def load_state(self, saved: Any) -> None:
        super().load_state(saved)  # reset() on the device, the saved field into self.u
        self.u_d.set(self.u)

    def _exchange_halo_device(self, u: Any) -> None:
        if not self.sides:
            return  # a single rank: the whole halo is the fixed boundary
        cu = self.kernels
        cu.heat2d_pack_edges_device(u, self.edges_d)
        send, recv = self.edges.for_mpi(), self.halo.buffer
        part = cu.heat2d_edge_layout(self.nx, self.ny)
        sr, f8 = self.cart.Sendrecv, MPI.DOUBLE
        # The CPU version's four exchanges: each part goes to the neighbour whose halo it is.
        sr([send[part["last_row"]], f8], dest=self.down,
           recvbuf=[recv[part["first_row"]], f8], source=self.up)
        sr([send[part["first_row"]], f8], dest=self.up,
           recvbuf=[recv[part["last_row"]], f8], source=self.down)
        sr([send[part["last_col"]], f8], dest=self.right,
           recvbuf=[recv[part["first_col"]], f8], source=self.left)
        sr([send[part["first_col"]], f8], dest=self.left,
           recvbuf=[recv[part["last_col"]], f8], source=self.right)
        self.halo.from_mpi()
        cu.heat2d_unpack_halo_device(self.halo_d, u, self.sides)

    def advance(self, step: int, timer: PhaseTimer) -> None:
        cu, u, v = self.kernels, self.u_d, self.v_d
        with timer.phase("communication"):
            self._exchange_halo_device(u)
        if step % self.params["residual_every"] == 0:
            with timer.phase("compute"):
                local = cu.heat2d_step_residual(u, v)  # waits for the kernel
            with timer.phase("communication"):
                total = self.cart.allreduce(local, op=MPI.SUM)
            self.residuals.append(float(np.sqrt(total)))
        else:
            with timer.phase("compute"):
                cu.heat2d_step(u, v)
                cu.synchronize()
        self.u_d, self.v_d = v, u

    def collect(self) -> dict[str, Any] | None:
        self.u = self.u_d.get()
        return super().collect()


class NBodyCuda(NBody):
    """Float64 throughout, so trajectories equal the CPU backends' to round-off (the
    float32 kernel is measured by `hpc bench`)."""

    def setup(self) -> None:
        super().setup()
        cu = self.kernels
        n_all, n = self.params["n"], self.hi - self.lo
        self.mass_d = cu.to_device(self.mass)
        self.pos_d = cu.empty((3, n_all))
        self.vel_d, self.acc_d = cu.empty((3, n)), cu.empty((3, n))
        self.bodies_d = cu.empty((n_all, 4))  # [x, y, z, m] rows for the tiled kernel
        self.pos_stage = MpiStage(self.pos_d, _cuda_aware())
        # This rank's columns of the flat (3 * N) positions: one piece per coordinate.
        self.own = [slice(d * n_all + self.lo, d * n_all + self.hi) for d in range(3)]

    def reset(self) -> None:
        self.pos_d.set(self.pos0)
        self.vel_d.set(np.ascontiguousarray(self.vel0[:, self.lo:self.hi]))
        self.step = 0

    def save_state(self) -> dict[str, Any]:
        self.pos, self.vel, self.acc = self.pos_d.get(), self.vel_d.get(), self.acc_d.get()
        return super().save_state()

    def load_state(self, saved: Any) -> None:
        super().load_state(saved)  # reset() on the device, the saved state into host arrays
        self.pos_d.set(self.pos)
        self.vel_d.set(self.vel)
        self.acc_d.set(self.acc)

    def _accelerations(self) -> None:
        cu = self.kernels
        cu.nbody_pack_device(self.pos_d, self.mass_d, self.bodies_d)
        cu.nbody_accel_bodies_device(self.bodies_d[self.lo:self.hi], self.bodies_d, self.eps2,
                                     self.acc_d)

    def _share_positions_device(self) -> None:
        if self.comm.size == 1:
            return  # the drift already updated every position in place
        n_all = self.params["n"]
        flat = self.pos_stage.for_mpi(self.own)
        for d in range(3):
            self.comm.Allgatherv(MPI.IN_PLACE, [flat[d * n_all:(d + 1) * n_all], self.counts,
                                                self.displs, MPI.DOUBLE])
        self.pos_stage.from_mpi()

    def begin(self, timer: PhaseTimer) -> None:
        if self.step == 0:  # a resumed run has the accelerations of its last step
            with timer.phase("compute"):
                self._accelerations()
                self.kernels.synchronize()

    def advance(self, step: int, timer: PhaseTimer) -> None:
        cu = self.kernels
        dt = self.params["dt"]
        half = 0.5 * dt  # numpy evaluates 0.5 * dt * acc as (0.5 * dt) * acc
        with timer.phase("compute"):
            cu.nbody_kick_device(self.vel_d, self.acc_d, half)
            cu.nbody_drift_device(self.pos_d, self.vel_d, dt, self.lo)
            cu.synchronize()
        with timer.phase("communication"):
            self._share_positions_device()
        with timer.phase("compute"):
            self._accelerations()
            cu.nbody_kick_device(self.vel_d, self.acc_d, half)
            cu.synchronize()

    def collect(self) -> dict[str, Any] | None:
        self.pos, self.vel = self.pos_d.get(), self.vel_d.get()
        return super().collect()


class KMeansCuda(KMeans):
    def setup(self) -> None:
        super().setup()
        cu = self.kernels
        k, dims = self.params["k"], self.params["dims"]
        self.points_d = cu.to_device(self.points)
        self.labels_d = cu.empty(len(self.points), np.int64)
        # A rank may have no fresh points (predict_points < ranks): nothing to allocate.
        self.fresh_d = cu.to_device(self.fresh) if len(self.fresh) else None
        self.fresh_labels_d = cu.empty(len(self.fresh), np.int64) if len(self.fresh) else None
        self.centroids_d = cu.empty((k, dims))
        self.sums_d, self.counts_d = cu.empty((k, dims)), cu.empty(k, np.int64)
        aware = _cuda_aware()
        self.sums_stage = MpiStage(self.sums_d, aware)
        self.counts_stage = MpiStage(self.counts_d, aware)

    def _allreduce(self, stage: MpiStage, mpi_type: Any) -> None:
        self.comm.Allreduce(MPI.IN_PLACE, [stage.for_mpi(), mpi_type], op=MPI.SUM)
        stage.from_mpi()

    def execute(self, timer: PhaseTimer) -> None:
        cu = self.kernels
        self.centroids_d.set(self.initial)
        inertias = []
        for _ in range(self.params["iterations"]):
            with timer.phase("compute"):
                inertia = cu.kmeans_assign(self.points_d, self.centroids_d, self.labels_d)
                cu.kmeans_accumulate(self.points_d, self.labels_d, self.sums_d, self.counts_d)
                cu.synchronize()
            with timer.phase("communication"):
                self._allreduce(self.sums_stage, MPI.DOUBLE)
                self._allreduce(self.counts_stage, MPI.INT64_T)
                inertia = self.comm.allreduce(inertia, op=MPI.SUM)
            inertias.append(float(inertia))
            with timer.phase("compute"):
                cu.kmeans_update_device(self.sums_d, self.counts_d, self.centroids_d)
                cu.synchronize()
        self.inertias = inertias
        self.centroids = self.centroids_d.get()
        with timer.phase("predict"):
            self.predicted = np.zeros(self.params["k"], dtype=np.int64)
            if self.fresh_d is not None:
                cu.kmeans_assign(self.fresh_d, self.centroids_d, self.fresh_labels_d)
                # Counts per cluster land in self.predicted; sums_d is free again: scratch.
                cu.kmeans_accumulate(self.fresh_d, self.fresh_labels_d, self.sums_d,
                                     self.predicted)


CUDA_WORKLOADS: dict[str, type[Workload]] = {
    "pi": Pi,  # its kernel call already returns a host integer: nothing to keep on the GPU
    "heat2d": Heat2DCuda,
    "nbody": NBodyCuda,
    "kmeans": KMeansCuda,
}


def cuda_workload(name: str) -> type[Workload]:
    """The class that runs workload ``name`` with ``--backend cuda``."""
    try:
        return CUDA_WORKLOADS[name]
    except KeyError:
        raise UserError(f"{name} has no CUDA kernels (CUDA: {', '.join(CUDA_WORKLOADS)}); "
                        "use --backend numpy or --backend cython") from None
