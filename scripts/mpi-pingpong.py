"""Ping-pong between ranks 0 and 1: one-way latency of small messages and bandwidth of
large ones, and where the two ranks ran. Prints one JSON line (rank 0).

    srun -N2 -n2 python scripts/mpi-pingpong.py     # inter-node
    srun -N1 -n2 python scripts/mpi-pingpong.py     # intra-node
    mpiexec -n 2 python scripts/mpi-pingpong.py

Options: --small BYTES (default 8), --large BYTES (default 4 MiB), --seconds S (time spent
per size, default 1). The figure is the median of the round trips, halved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from mpi4py import MPI


def round_trips(comm: MPI.Comm, nbytes: int, seconds: float) -> list[float]:
    """Seconds per round trip of ``nbytes`` between ranks 0 and 1, for about ``seconds``."""
    buf = np.zeros(max(nbytes, 1), dtype=np.uint8)[:nbytes]
    times: list[float] = []
    other = 1 - comm.rank
    for _ in range(3):  # warm-up: connections are made lazily
        if comm.rank == 0:
            comm.Send(buf, other)
            comm.Recv(buf, other)
        else:
            comm.Recv(buf, other)
            comm.Send(buf, other)
    end = time.perf_counter() + seconds
    go = True
    while go:
        t0 = time.perf_counter()
        if comm.rank == 0:
            comm.Send(buf, other)
            comm.Recv(buf, other)
        else:
            comm.Recv(buf, other)
            comm.Send(buf, other)
        times.append(time.perf_counter() - t0)
        # Rank 0 decides when to stop, so both ranks do the same number of trips.
        go = comm.bcast(time.perf_counter() < end and len(times) < 100000, root=0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--large", type=int, default=4 << 20)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        raise SystemExit("mpi-pingpong: run with exactly 2 ranks")
    hosts = comm.gather(MPI.Get_processor_name(), root=0)
    small = round_trips(comm, args.small, args.seconds)
    large = round_trips(comm, args.large, args.seconds)
    if comm.rank == 0:
        half_small = statistics.median(small) / 2
        half_large = statistics.median(large) / 2
        print(json.dumps({
            "hosts": hosts, "inter_node": hosts[0] != hosts[1],
            "small_bytes": args.small, "latency_us": round(half_small * 1e6, 2),
            "large_bytes": args.large, "bandwidth_GBps": round(args.large / half_large / 1e9, 3),
            "round_trips": [len(small), len(large)],
        }), flush=True)


if __name__ == "__main__":
    main()
