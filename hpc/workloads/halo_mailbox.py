"""heat2d's halo exchange through shared memory, for ranks on one node: no MPI per step.

Each rank owns a small segment of an MPI-3 shared-memory window: a step counter and, for
each of two alternating slots, its four edges (first and last row and column). Right
after it updates its rim, a rank copies the new edges into its next slot while they are
still in its cache and publishes the exchange's number (release order); after it
updates the inside of its block, it waits until each neighbour has published the same
number (acquire order) and copies their edges from their slots into its halo. A
neighbour that is a little behind costs nothing: its edges were published a whole
inside-update earlier. The large blocks stay private (this machine maps shared memory
with small pages only: a sweep over a shared grid ran 40% slower than over a private
one, docs/PERFORMANCE.md).

Why two slots: a rank writes slot k % 2 in exchange k, and may write it again only in
exchange k + 2, after waiting in exchange k + 1 for every neighbour, each of which had
by then finished reading slot k % 2 in its exchange k.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from hpc.lazympi import MPI, lazy_module

np = lazy_module("numpy")

FLAGS_MODULE = "kernels.shm_flags"
HEADER_DOUBLES = 8  # the counter, alone on its 64-byte cache line
# Slot rows: the edge a rank sends in each direction (the neighbour there reads it).
DOWN, UP, RIGHT, LEFT = range(4)


def usable(comm: Any) -> bool:
    """True when every rank of ``comm`` shares memory with every other and the counters
    (a compiled module) are built; collective."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        together = node.size == comm.size
    finally:
        node.Free()
    return together and importlib.util.find_spec(FLAGS_MODULE) is not None


class HaloMailbox:
    """The shared segments of a block of ``nx`` x ``ny`` interior points whose neighbours
    are ``up``, ``down``, ``left``, ``right`` (MPI.PROC_NULL where there is none) in
    ``comm``, whose ranks must all be on one node. Collective to make and to ``free``."""

    def __init__(self, comm: Any, nx: int, ny: int, up: int, down: int, left: int,
                 right: int):
        self._flags = importlib.import_module(FLAGS_MODULE)
        self.nx, self.ny = nx, ny
        # Every rank's segment has the same length, so any rank can read any other's.
        length = comm.allreduce(max(nx, ny), op=MPI.MAX)
        words = HEADER_DOUBLES + 2 * 4 * length
        self.win = MPI.Win.Allocate_shared(words * 8, 8, comm=comm)
        self._mine = self._segment(comm.rank, length)
        null = MPI.PROC_NULL
        # (neighbour's segment, the slot row it sends towards this rank, halo it fills)
        self._incoming = [(self._segment(rank, length), row, halo) for rank, row, halo in (
            (up, DOWN, "top"), (down, UP, "bottom"), (left, RIGHT, "left"),
            (right, LEFT, "right")) if rank != null]
        # (slot row, the edge of this rank's block sent in that direction)
        self._outgoing = [(row, edge) for rank, row, edge in (
            (down, DOWN, "last_row"), (up, UP, "first_row"), (right, RIGHT, "last_col"),
            (left, LEFT, "first_col")) if rank != null]
        self._plans: dict[int, tuple[Any, list[Any], list[Any]]] = {}
        self.count = 0  # exchanges done; every rank does the same ones

    def _segment(self, rank: int, length: int) -> tuple[Any, Any]:
        """(counter, slots[2, 4, length]) of ``rank``'s segment."""
        buffer, _ = self.win.Shared_query(rank)
        counter = np.ndarray((1,), dtype=np.int64, buffer=buffer)
        slots = np.ndarray((2, 4, length), dtype=np.float64, buffer=buffer,
                           offset=HEADER_DOUBLES * 8)
        return counter, slots

    def _plan(self, u: Any) -> tuple[list[Any], list[Any]]:
        """The copies of an exchange of ``u`` as views, made once per array (``u`` is kept
        with them, so its id cannot be reused while they exist): per slot, the outgoing
        (edge, slot row) and incoming (counter, slot row, halo) pairs."""
        if id(u) not in self._plans:
            nx, ny = self.nx, self.ny
            views = {"top": u[0, 1:ny + 1], "bottom": u[nx + 1, 1:ny + 1],
                     "left": u[1:nx + 1, 0], "right": u[1:nx + 1, ny + 1],
                     "first_row": u[1, 1:ny + 1], "last_row": u[nx, 1:ny + 1],
                     "first_col": u[1:nx + 1, 1], "last_col": u[1:nx + 1, ny]}
            _, mine = self._mine
            out = [[(views[edge], mine[slot, row, :views[edge].size])
                    for row, edge in self._outgoing] for slot in (0, 1)]
            into = [[(counter, slots[slot, row, :views[halo].size], views[halo])
                     for (counter, slots), row, halo in self._incoming] for slot in (0, 1)]
            self._plans[id(u)] = (u, out, into)
        _, out, into = self._plans[id(u)]
        return out, into

    def send(self, u: Any) -> None:
        """Give the neighbours this rank's edges of ``u`` (copied into the next slot while
        they are still in the cache, then published)."""
        out, _ = self._plan(u)
        self.count += 1
        for edge, box in out[self.count % 2]:
            np.copyto(box, edge)
        self._flags.publish(self._mine[0], self.count)

    def receive(self, u: Any) -> None:
        """Fill ``u``'s halo with the edges the neighbours sent in the same exchange as the
        last ``send``, waiting for them where they are behind."""
        _, into = self._plan(u)
        for counter, box, halo in into[self.count % 2]:
            self._flags.wait_for(counter, self.count)
            np.copyto(halo, box)

    def forget_arrays(self) -> None:
        """Drop the views of the arrays exchanged so far (before new ones replace them)."""
        self._plans = {}

    def free(self) -> None:
        """Collective: release the window (every rank has done the same exchanges)."""
        self._incoming, self._mine, self._plans = [], None, {}
        self.win.Free()
