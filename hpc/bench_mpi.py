"""``hpc bench --mpi``: the machine's communication limits, measured by the suite itself.

Run on ranks (``python -m hpc.bench_mpi`` under mpiexec; :func:`mpi_section` starts it):

* ping-pong between ranks 0 and 1 over message sizes: one-way time (half a round trip)
  and bandwidth;
* Allreduce latency of one double over all ranks;
* heat2d's halo exchange time per step, in each of its ways (``--exchange``): blocking
  Sendrecv first, messages overlapped with the inside's update, and (ranks on one node)
  through shared memory, against the yardstick of a ping-pong of the same messages: the
  sum of the one-way times of the messages a rank sends per step (a bidirectional
  exchange of them all at once can only be faster). The samples of all of them
  alternate, so all see the same machine load.

Every figure is a median over samples; each sample averages many iterations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from hpc.errors import UserError

PINGPONG_SIZES = tuple(8 * 8**k for k in range(8))  # 8 B .. 16 MiB
QUICK_PINGPONG_SIZES = PINGPONG_SIZES[:6]  # up to 256 KiB
SECTION_TIMEOUT = 900  # seconds: a hung rank must not hang `hpc bench`


def _iterations(nbytes: int) -> int:
    """Round trips per sample: many for small messages, about 16 MiB moved for large."""
    return max(4, min(200, 2**24 // max(nbytes, 1)))


def pingpong_seconds(comm: Any, nbytes: int, samples: int) -> float:
    """Median one-way time of an ``nbytes`` message between ranks 0 and 1 (others idle);
    the same value on every rank."""
    buf = np.zeros(max(nbytes, 1), dtype=np.uint8)[:nbytes]
    reps = _iterations(nbytes)
    times = []
    for _ in range(samples + 1):  # the first sample is a warm-up
        comm.Barrier()
        t0 = _wtime()
        for _ in range(reps):
            if comm.rank == 0:
                comm.Send(buf, dest=1, tag=7)
                comm.Recv(buf, source=1, tag=7)
            elif comm.rank == 1:
                comm.Recv(buf, source=0, tag=7)
                comm.Send(buf, dest=0, tag=7)
        times.append((_wtime() - t0) / reps / 2)
    return comm.bcast(statistics.median(times[1:]), root=0)


def allreduce_seconds(comm: Any, samples: int, reps: int = 200) -> float:
    """Median time of an Allreduce (sum) of one double over all ranks."""
    send, recv = np.ones(1), np.empty(1)
    times = []
    for _ in range(samples + 1):
        comm.Barrier()
        t0 = _wtime()
        for _ in range(reps):
            comm.Allreduce(send, recv)
        times.append((_wtime() - t0) / reps)
    return comm.bcast(statistics.median(times[1:]), root=0)


def halo_messages(workload: Any) -> list[int]:
    """Bytes of each message this rank's heat2d block sends per step (rows, columns)."""
    from mpi4py import MPI

    sizes = []
    for neighbour, nbytes in ((workload.up, workload.ny * 8), (workload.down, workload.ny * 8),
                              (workload.left, workload.nx * 8),
                              (workload.right, workload.nx * 8)):
        if neighbour != MPI.PROC_NULL:
            sizes.append(nbytes)
    return sizes


def cold_copy_seconds(workload: Any) -> float:
    """Time to copy this rank's outgoing halo rows once, in this process, right after a
    sweep of the whole block: what moving the messages' bytes costs when they are no
    longer in the cache (a ping-pong reuses one buffer, which stays in the cache). Rows
    only: a column is as many cache lines as it has doubles."""
    from mpi4py import MPI

    u, v = workload.u, workload.v
    workload.kernels.heat2d_step(u, v)  # evicts u's edge rows, as a step does
    scratch = np.empty(workload.ny)
    start = _wtime()
    for neighbour, row in ((workload.up, 1), (workload.down, workload.nx)):
        if neighbour != MPI.PROC_NULL:
            np.copyto(scratch, u[row, 1:-1])
    return _wtime() - start


def heat2d_halo(comm: Any, n: int, steps: int, samples: int, backend: str) -> dict[str, Any]:
    """heat2d's communication and compute time per step, exchanged first and overlapped,
    beside the one-way ping-pong time of the same messages, sampled in turn.

    Per step, the rank that reaches the exchange last waits for no one: its communication
    time ("last rank") is the cost of the exchange itself; the mean over ranks adds the
    time the others waited for it (load imbalance, or a core shared with other work).
    """
    from hpc.runner import load_kernels
    from hpc.timing import PhaseTimer
    from hpc.workloads.heat2d import Heat2D

    kernels = load_kernels(backend)
    workloads = {}
    for label in ("blocking", "overlapped", "auto"):
        params = Heat2D.resolve_params({"n": n, "steps": steps, "residual_every": steps + 1,
                                        "exchange": label}, comm.size)  # no residual step
        workloads[label] = Heat2D(comm, params, kernels, backend)
        workloads[label].setup()
    if workloads["auto"].mode == "shared":
        workloads["shared"] = workloads.pop("auto")
    else:  # ranks on several nodes: no shared grid to measure
        workloads.pop("auto").teardown()
    workload = workloads["blocking"]
    mine = halo_messages(workload)
    sizes = sorted({s for sizes in comm.allgather(mine) for s in sizes})
    pingpong: dict[int, list[float]] = {s: [] for s in sizes}
    last: dict[str, list[float]] = {label: [] for label in workloads}
    mean: dict[str, list[float]] = {label: [] for label in workloads}
    compute: dict[str, list[float]] = {label: [] for label in workloads}
    timer = PhaseTimer(Heat2D.phases, clock=_wtime)
    communication = Heat2D.phases.index("communication")
    compute_phase = Heat2D.phases.index("compute")
    cold: list[float] = []
    for sample in range(samples + 1):  # sample 0 warms up caches and pages
        for size in sizes:
            t = pingpong_seconds(comm, size, 3)
            if sample:
                pingpong[size].append(t)
        workload.reset()
        t = cold_copy_seconds(workload)
        if sample:
            cold.append(t)
        for label, each in workloads.items():
            each.reset()
            timer.reset()
            mine_per_step = np.empty(steps)
            comm.Barrier()
            each.begin(timer)
            for step in range(steps):
                before = timer.seconds[communication]
                each.advance(step + 1, timer)
                mine_per_step[step] = timer.seconds[communication] - before
            per_rank = np.array(comm.allgather(mine_per_step))  # [rank, step]
            busy = comm.allreduce(timer.seconds[compute_phase]) / comm.size / steps
            if sample:
                last[label] += per_rank.min(axis=0).tolist()
                mean[label] += per_rank.mean(axis=0).tolist()
                compute[label].append(busy)
    for each in workloads.values():
        each.teardown()
    one_way = {s: statistics.median(ts) for s, ts in pingpong.items()}
    yardstick = comm.allreduce(sum(one_way[s] for s in mine)) / comm.size
    result: dict[str, Any] = {
        "n": n, "backend": backend, "process_grid": [int(d) for d in workload.cart.dims],
        "steps_per_sample": steps, "samples": samples,
        "message_bytes": sizes,
        "pingpong_us": {str(s): t * 1e6 for s, t in one_way.items()},
        "pingpong_of_messages_us": yardstick * 1e6,
        "cold_copy_of_messages_us": comm.allreduce(statistics.median(cold)) / comm.size * 1e6,
    }
    for label in last:
        exchange = statistics.median(last[label])
        result[label] = {
            "communication_us_per_step": exchange * 1e6,
            "communication_mean_over_ranks_us_per_step": statistics.median(mean[label]) * 1e6,
            "compute_us_per_step": statistics.median(compute[label]) * 1e6,
            "ratio_to_pingpong": exchange / yardstick if yardstick else None,
        }
    for key, suffix in (("communication_us_per_step", ""),
                        ("communication_mean_over_ranks_us_per_step", "_mean_over_ranks")):
        blocking = result["blocking"][key]
        for label in workloads.keys() - {"blocking"}:
            exposed = result[label][key]
            result[label][f"hidden_fraction{suffix}"] = (1 - exposed / blocking
                                                         if blocking else None)
    return result


def measure(comm: Any, quick: bool, backend: str) -> dict[str, Any]:
    """Collective: every figure of the MPI section (complete on every rank)."""
    from hpc.provenance import mpi_library_version

    samples = 5 if quick else 11
    sizes = QUICK_PINGPONG_SIZES if quick else PINGPONG_SIZES
    table = []
    if comm.size >= 2:
        for nbytes in sizes:
            t = pingpong_seconds(comm, nbytes, samples)
            table.append({"bytes": nbytes, "one_way_us": t * 1e6,
                          "bandwidth_GBps": nbytes / t / 1e9})
    return {
        "ranks": comm.size,
        "mpi_library": mpi_library_version().splitlines()[0],
        "pingpong": table,
        "allreduce_8B_us": allreduce_seconds(comm, samples) * 1e6,
        "heat2d_halo": heat2d_halo(comm, 1024 if quick else 4096, 20, samples, backend),
    }


def _wtime() -> float:
    from mpi4py import MPI

    return MPI.Wtime()


def main(argv: list[str] | None = None) -> int:
    """The rank side: measure and print one JSON line on rank 0."""
    parser = argparse.ArgumentParser(prog="python -m hpc.bench_mpi")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", default="cython")
    args = parser.parse_args(argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    figures = measure(comm, args.quick, args.backend)
    if comm.rank == 0:
        print(json.dumps(figures), flush=True)
    return 0


def mpi_section(nranks: int, quick: bool, backend: str,
                progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Start the measurement on ``nranks`` local ranks; its figures, or ``{"note": why}``."""
    from hpc.mpi_env import mpiexec_command

    if nranks < 2:
        return {"note": "the MPI section needs at least 2 ranks"}
    program = [sys.executable, "-m", "mpi4py", "-m", "hpc.bench_mpi", "--backend", backend,
               *(["--quick"] if quick else [])]
    try:
        argv, env = mpiexec_command(nranks, program)
    except UserError as exc:  # no mpiexec: the rest of the bench still stands
        return {"note": f"no MPI section: {exc}"}
    progress(f"measuring MPI on {nranks} ranks (ping-pong, Allreduce, heat2d halo) ...")
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                             timeout=SECTION_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"note": f"the MPI measurement did not finish in {SECTION_TIMEOUT} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"note": f"the MPI measurement failed (exit {out.returncode}): "
                        f"{out.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def format_mpi_section(section: dict[str, Any]) -> str:
    """The MPI section as text: ping-pong table, Allreduce, halo against ping-pong."""
    from hpc.show import format_table

    if "note" in section:
        return f"MPI: {section['note']}"
    lines = [f"MPI on {section['ranks']} ranks ({section['mpi_library']})"]
    rows = [(_bytes(p["bytes"]), f"{p['one_way_us']:.2f}", f"{p['bandwidth_GBps']:.2f}")
            for p in section["pingpong"]]
    lines.append(format_table(rows, ("message", "one-way us", "GB/s")))
    lines.append(f"Allreduce of one double: {section['allreduce_8B_us']:.2f} us")
    halo = section["heat2d_halo"]
    grid = " x ".join(str(d) for d in halo["process_grid"])
    sizes = ", ".join(_bytes(s) for s in halo["message_bytes"])
    lines.append(f"heat2d halo at {halo['n']}^2 ({halo['backend']}, process grid {grid}, "
                 f"messages {sizes}): ping-pong of its messages "
                 f"{halo['pingpong_of_messages_us']:.1f} us per step; copying its rows once "
                 f"after a sweep (cold cache, no MPI) {halo['cold_copy_of_messages_us']:.1f} us")
    rows = []
    for label in ("blocking", "overlapped", "shared"):
        if label not in halo:
            continue
        h = halo[label]
        hidden = [h.get(f"hidden_fraction{suffix}") for suffix in ("", "_mean_over_ranks")]
        rows.append((label, f"{h['communication_us_per_step']:.1f}",
                     f"{h['ratio_to_pingpong']:.2f}x" if h["ratio_to_pingpong"] else "-",
                     f"{h['communication_mean_over_ranks_us_per_step']:.1f}",
                     f"{h['compute_us_per_step']:.0f}",
                     " / ".join(f"{x:.0%}" for x in hidden if x is not None)))
    lines.append(format_table(rows, ("exchange", "comm us/step (last rank)", "vs ping-pong",
                                     "comm mean over ranks", "compute us/step",
                                     "hidden (last / mean)")))
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


if __name__ == "__main__":
    sys.exit(main())
