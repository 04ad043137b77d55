"""heat2d's halo exchange through shared memory, for ranks on one node: no MPI per step.

Each rank owns a small segment of an MPI-3 shared-memory window (``SharedSegments``): a
step counter, which it publishes with release order and its neighbours wait for with
acquire order (kernels/shm_flags.pyx), and a few rows. The large blocks stay private:
this machine maps shared memory with small pages only, and a sweep over a shared grid
ran 40% slower than over a private one (docs/PERFORMANCE.md).

``EdgeRows`` (process grids of one column, P x 1): a rank's first and last rows live in
its segment, one pair for each of its two alternating buffers. Its neighbours read them
in place as their halo rows, so nothing is copied: after it updates those two rows (from
its neighbours' shared rows), a rank publishes, and before the next step it waits until
its neighbours have published as often. The publication also says the neighbour is done
reading the rows of two steps ago, which this rank overwrites next.

``HaloMailbox`` (any other grid, where columns are exchanged too): edges are copied. A
rank's segment holds two alternating slots of its four edges. Right after it updates its
rim, a rank copies the new edges into its next slot while they are still in its cache
and publishes; after it updates the inside of its block, it waits for its neighbours and
copies their edges into its halo (a neighbour a little behind costs nothing: its edges
were published a whole inside-update earlier). Two slots, because a rank writes slot
k % 2 in exchange k and again in exchange k + 2 only after it saw every neighbour publish
exchange k + 1, which each did after reading slot k % 2.
"""

from __future__ import annotations

import importlib.util
import math
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


class SharedSegments:
    """A window of one segment per rank of ``comm`` (all on one node): a step counter on
    its own cache line, then ``shape`` doubles. ``publish`` and ``wait`` order the steps
    with the ranks in ``neighbours`` (MPI.PROC_NULL entries are ignored). Collective to
    make and to ``free``."""

    def __init__(self, comm: Any, shape: tuple[int, ...], neighbours: list[int]):
        self.shape = shape
        # Whole cache lines, so that no rank's rows share a line with the next counter.
        nbytes = -(-(HEADER_DOUBLES + math.prod(shape)) * 8 // 64) * 64
        self.win = MPI.Win.Allocate_shared(nbytes, 8, comm=comm)
        counter, self.data = self.segment(comm.rank)
        ranks = [r for r in dict.fromkeys(neighbours) if r != MPI.PROC_NULL]
        flags = importlib.import_module(FLAGS_MODULE)
        self._counters = flags.StepCounters(counter, [self.segment(r)[0] for r in ranks])
        self.count = 0  # publications so far; every rank makes the same ones

    def segment(self, rank: int) -> tuple[Any, Any]:
        """(counter, data) of ``rank``'s segment."""
        buffer, _ = self.win.Shared_query(rank)
        counter = np.ndarray((1,), dtype=np.int64, buffer=buffer)
        data = np.ndarray(self.shape, dtype=np.float64, buffer=buffer,
                          offset=HEADER_DOUBLES * 8)
        return counter, data

    def publish(self) -> None:
        """Every store this rank made so far is visible to the neighbours once they
        waited for this publication."""
        self.count += 1
        self._counters.publish(self.count)

    def wait(self) -> None:
        """Until every neighbour has made as many publications as this rank."""
        self._counters.wait(self.count)

    def free(self) -> None:
        self._counters = self.data = None
        self.win.Free()


class EdgeRows:
    """For a process grid of one column (P x 1): each rank's first and last rows, of each
    of its two alternating buffers, live in its shared segment, and its neighbours read
    them there, in place, as their halo rows. Nothing is copied; an exchange is one
    publication and one wait (heat2d's ``_edge_rows_step``)."""

    def __init__(self, comm: Any, nx: int, ny: int, up: int, down: int):
        self.shared = SharedSegments(comm, (2, 2, ny + 2), [up, down])
        rows = self.shared.data  # [parity, first | last, ny + 2]
        last = 1 if nx > 1 else 0  # a block of one row keeps it once
        self.first = [rows[p, 0] for p in (0, 1)]
        self.last = [rows[p, last] for p in (0, 1)]
        nxs = comm.allgather(nx)
        self.above = self.below = None  # the neighbours' rows next to this block
        if up != MPI.PROC_NULL:
            _, theirs = self.shared.segment(up)
            self.above = [theirs[p, 1 if nxs[up] > 1 else 0] for p in (0, 1)]
        if down != MPI.PROC_NULL:
            _, theirs = self.shared.segment(down)
            self.below = [theirs[p, 0] for p in (0, 1)]

    def free(self) -> None:
        self.first = self.last = self.above = self.below = None
        self.shared.free()


class HaloMailbox:
    """The shared segments of a block of ``nx`` x ``ny`` interior points whose neighbours
    are ``up``, ``down``, ``left``, ``right`` (MPI.PROC_NULL where there is none) in
    ``comm``, whose ranks must all be on one node; edges are copied in and out. Collective
    to make and to ``free``."""

    def __init__(self, comm: Any, nx: int, ny: int, up: int, down: int, left: int,
                 right: int):
        self.nx, self.ny = nx, ny
        # Every rank's segment has the same length, so any rank can read any other's.
        length = comm.allreduce(max(nx, ny), op=MPI.MAX)
        self.shared = SharedSegments(comm, (2, 4, length), [up, down, left, right])
        null = MPI.PROC_NULL
        # (neighbour's slots, the slot row it sends towards this rank, halo it fills)
        self._incoming = [(self.shared.segment(rank)[1], row, halo)
                          for rank, row, halo in ((up, DOWN, "top"), (down, UP, "bottom"),
                                                  (left, RIGHT, "left"), (right, LEFT, "right"))
                          if rank != null]
        # (slot row, the edge of this rank's block sent in that direction)
        self._outgoing = [(row, edge) for rank, row, edge in (
            (down, DOWN, "last_row"), (up, UP, "first_row"), (right, RIGHT, "last_col"),
            (left, LEFT, "first_col")) if rank != null]
        self._plans: dict[int, tuple[Any, list[Any], list[Any]]] = {}

    def _plan(self, u: Any) -> tuple[list[Any], list[Any]]:
        """The copies of an exchange of ``u`` as views, made once per array (``u`` is kept
        with them, so its id cannot be reused while they exist): per slot, the outgoing
        (edge, slot row) and incoming (slot row, halo) pairs."""
        if id(u) not in self._plans:
            nx, ny = self.nx, self.ny
            views = {"top": u[0, 1:ny + 1], "bottom": u[nx + 1, 1:ny + 1],
                     "left": u[1:nx + 1, 0], "right": u[1:nx + 1, ny + 1],
                     "first_row": u[1, 1:ny + 1], "last_row": u[nx, 1:ny + 1],
                     "first_col": u[1:nx + 1, 1], "last_col": u[1:nx + 1, ny]}
            mine = self.shared.data
            out = [[(views[edge], mine[slot, row, :views[edge].size])
                    for row, edge in self._outgoing] for slot in (0, 1)]
            into = [[(slots[slot, row, :views[halo].size], views[halo])
                     for slots, row, halo in self._incoming] for slot in (0, 1)]
            self._plans[id(u)] = (u, out, into)
        _, out, into = self._plans[id(u)]
        return out, into

    def send(self, u: Any) -> None:
        """Give the neighbours this rank's edges of ``u`` (copied into the next slot while
        they are still in the cache, then published)."""
        out, _ = self._plan(u)
        for edge, box in out[(self.shared.count + 1) % 2]:
            np.copyto(box, edge)
        self.shared.publish()

    def receive(self, u: Any) -> None:
        """Fill ``u``'s halo with the edges the neighbours sent in the same exchange as the
        last ``send``, waiting for them where they are behind."""
        _, into = self._plan(u)
        self.shared.wait()
        for box, halo in into[self.shared.count % 2]:
            np.copyto(halo, box)

    def forget_arrays(self) -> None:
        """Drop the views of the arrays exchanged so far (before new ones replace them)."""
        self._plans = {}

    def free(self) -> None:
        """Collective: release the window (every rank has done the same exchanges)."""
        self._incoming, self._plans = [], {}
        self.shared.free()
