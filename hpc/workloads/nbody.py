"""All-pairs gravitational n-body with Plummer softening and leapfrog (kick-drift-kick).

Bodies are split into contiguous blocks over the ranks. Every rank keeps all positions;
after each drift the ranks share their updated blocks with Allgatherv. Accelerations of
each body sum over all bodies in ascending order, so trajectories do not depend on the
rank count. The run reports the relative drift of the total energy.
"""

from __future__ import annotations

import os
from typing import Any

from hpc.lazympi import MPI, lazy_module
from hpc.timing import PhaseTimer
from hpc.workloads.base import Block, Param, SteppedWorkload, Verification
from hpc.workloads.decomp import block_counts

np = lazy_module("numpy")  # not imported by a process that only starts the ranks

REFERENCE_MAX_INTERACTIONS = int(os.environ.get("HPC_REFERENCE_MAX_WORK", 5 * 10**7))


def initial_conditions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (3, n) uniform in the unit ball, small random velocities, equal masses."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(3, n))
    direction /= np.linalg.norm(direction, axis=0)
    pos = direction * rng.random(n) ** (1.0 / 3.0)
    vel = 0.1 * rng.normal(size=(3, n))
    mass = np.full(n, 1.0 / n)
    return np.ascontiguousarray(pos), np.ascontiguousarray(vel), mass


def leapfrog(kernels: Any, pos: np.ndarray, vel: np.ndarray, mass: np.ndarray,
             steps: int, dt: float, eps2: float) -> tuple[np.ndarray, np.ndarray]:
    """Serial reference: the same integration on one process."""
    pos, vel = pos.copy(), vel.copy()
    acc = np.empty_like(pos)
    for _ in range(steps):
        kernels.nbody_accel(pos, pos, mass, eps2, acc)
        vel += 0.5 * dt * acc
        pos += dt * vel
        kernels.nbody_accel(pos, pos, mass, eps2, acc)
        vel += 0.5 * dt * acc
    return pos, vel


class NBody(SteppedWorkload):
    name = "nbody"
    summary = "all-pairs gravity with softening, leapfrog, Allgatherv of positions"
    params = (
        Param("n", int, 4096, "number of bodies", minimum=1),
        Param("steps", int, 10, "leapfrog steps", minimum=1),
        Param("dt", float, 1e-3, "time step", minimum=0.0),
        Param("softening", float, 0.05, "Plummer softening length", minimum=0.0),
        Param("max_drift", float, 1e-3, "largest relative energy drift that verifies",
              minimum=0.0),
        Param("seed", int, 7, "random seed of the initial conditions", minimum=0),
    )
    size_param = "n"
    work_exponent = 2.0

    @classmethod
    def work(cls, params: dict[str, Any]) -> float:
        return float(params["n"]) ** 2 * params["steps"]

    @classmethod
    def memory_bytes(cls, params: dict[str, Any], nranks: int) -> tuple[float, float]:
        # Every rank holds all positions (twice), the initial velocities, masses and the
        # set-up temporaries: about 13 doubles per body; rank 0's reference adds 9.
        n = float(params["n"])
        return 13 * 8 * n, 9 * 8 * n

    def setup(self) -> None:
        n = self.params["n"]
        self.eps2 = self.params["softening"] ** 2
        self.counts = block_counts(n, self.comm.size)
        self.displs = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        self.lo = int(self.displs[self.comm.rank])
        self.hi = self.lo + int(self.counts[self.comm.rank])
        self.pos0, self.vel0, self.mass = initial_conditions(n, self.params["seed"])
        self.energy0 = self.total_energy(self.pos0, self.vel0[:, self.lo:self.hi])

    def reset(self) -> None:
        self.pos = self.pos0.copy()  # all bodies, shared by Allgatherv
        self.vel = self.vel0[:, self.lo:self.hi].copy()  # a copy even when one rank has all
        self.acc = np.zeros_like(self.vel)
        self.step = 0  # steps done

    checkpoint_every = 1  # a step costs N^2 interactions: a one-integer Allreduce is nothing

    def save_state(self) -> dict[str, Any]:
        n, mine = self.params["n"], (slice(None), slice(self.lo, self.hi))
        return {"step": self.step, "positions": self.pos,
                "velocities": Block(self.vel, mine, (3, n)),
                "accelerations": Block(self.acc, mine, (3, n))}

    def load_state(self, saved: Any) -> None:
        self.reset()
        mine = (slice(None), slice(self.lo, self.hi))
        self.step = int(saved.scalar("step"))
        # New host arrays, not reset()'s: a backend whose reset() works elsewhere (CUDA)
        # takes its state from these after this.
        self.pos = np.array(saved.array("positions"), dtype=float)
        self.vel = np.array(saved.block("velocities", mine), dtype=float)
        self.acc = np.array(saved.block("accelerations", mine), dtype=float)

    def _local_positions(self) -> np.ndarray:
        return np.ascontiguousarray(self.pos[:, self.lo:self.hi])

    def _share_positions(self, local: np.ndarray) -> None:
        for d in range(3):
            self.comm.Allgatherv(local[d], [self.pos[d], self.counts, self.displs, MPI.DOUBLE])

    def begin(self, timer: PhaseTimer) -> None:
        if self.step == 0:  # a resumed run has the accelerations of its last step
            with timer.phase("compute"):
                self.kernels.nbody_accel(self._local_positions(), self.pos, self.mass,
                                         self.eps2, self.acc)

    def advance(self, step: int, timer: PhaseTimer) -> None:
        dt = self.params["dt"]
        with timer.phase("compute"):
            self.vel += 0.5 * dt * self.acc
            local = self._local_positions() + dt * self.vel
        with timer.phase("communication"):
            self._share_positions(local)
        with timer.phase("compute"):
            self.kernels.nbody_accel(local, self.pos, self.mass, self.eps2, self.acc)
            self.vel += 0.5 * dt * self.acc

    def total_energy(self, pos: np.ndarray, vel_local: np.ndarray) -> float:
        """Collective: kinetic plus potential energy of all bodies."""
        m_local = self.mass[self.lo:self.hi]
        kinetic = 0.5 * float(np.sum(m_local * np.sum(vel_local**2, axis=0)))
        local_pos = np.ascontiguousarray(pos[:, self.lo:self.hi])
        potential = self.kernels.nbody_potential(local_pos, m_local, self.lo, pos, self.mass,
                                                 self.eps2)
        return self.comm.allreduce(kinetic + potential, op=MPI.SUM)

    def collect(self) -> dict[str, Any] | None:
        energy = self.total_energy(self.pos, self.vel)
        velocities = self.comm.gather(self.vel, root=0)
        if self.comm.rank != 0:
            return None
        self.final_vel = np.concatenate(velocities, axis=1)
        return {
            "energy_initial": self.energy0,
            "energy_final": energy,
            "energy_drift": abs(energy - self.energy0) / abs(self.energy0),
            "positions": self.pos,
            "velocities": self.final_vel,
        }

    def verify(self, result: dict[str, Any]) -> Verification:
        drift, limit = result["energy_drift"], self.params["max_drift"]
        if not np.isfinite(drift) or drift > limit:
            return Verification(False, f"relative energy drift <= {limit:g}",
                                f"drift {drift:.3e}")
        n, steps = self.params["n"], self.params["steps"]
        if n * n * steps > REFERENCE_MAX_INTERACTIONS:
            return Verification(True, f"relative energy drift <= {limit:g} "
                                "(too large for the serial reference)", f"drift {drift:.3e}")
        from kernels import load_backend

        ref_pos, ref_vel = leapfrog(load_backend("numpy"), self.pos0, self.vel0, self.mass,
                                    steps, self.params["dt"], self.eps2)
        scale = np.max(np.abs(ref_pos))
        diff = float(max(np.max(np.abs(self.pos - ref_pos)) / scale,
                         np.max(np.abs(self.final_vel - ref_vel)) / np.max(np.abs(ref_vel))))
        method = f"serial numpy reference (relative diff <= 1e-10) and drift <= {limit:g}"
        return Verification(diff <= 1e-10, method, f"relative diff {diff:.3e}, drift {drift:.3e}")
