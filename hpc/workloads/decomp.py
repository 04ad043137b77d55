"""Block decompositions shared by the workloads."""

from __future__ import annotations

import math

from hpc.lazympi import lazy_module

np = lazy_module("numpy")  # not imported by a process that only starts the ranks


def block_range(n: int, parts: int, index: int) -> tuple[int, int]:
    """[lo, hi) of block ``index`` when n items are split into ``parts`` nearly equal blocks.

    The first n % parts blocks get one item more, so block sizes differ by at most one.
    """
    base, extra = divmod(n, parts)
    lo = index * base + min(index, extra)
    return lo, lo + base + (1 if index < extra else 0)


def block_counts(n: int, parts: int) -> np.ndarray:
    """Sizes of all blocks of ``block_range``."""
    base, extra = divmod(n, parts)
    return np.array([base + (1 if i < extra else 0) for i in range(parts)], dtype=np.int64)


def balanced_dims(nranks: int) -> tuple[int, int]:
    """The 2-D process grid MPI_Dims_create picks: the most square factor pair, larger first.

    Pure Python so the launching process can validate a decomposition before MPI starts.
    """
    best = (nranks, 1)
    for a in range(1, math.isqrt(nranks) + 1):
        if nranks % a == 0:
            best = (nranks // a, a)
    return best
