"""numpy kernels: the readable reference backend.

Same functions and signatures as ``kernels.cython_backend``. Everything is vectorised; work
that would need O(n^2) memory is done in chunks so memory stays bounded. Where the Cython
backend promises a summation order (n-body: ascending j for each body), this module keeps the
same order, so the two agree to round-off or better.

Arrays are float64 and C-contiguous unless stated; outputs are preallocated by the caller.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# --------------------------------------------------------------------------------------
# Monte Carlo pi
# --------------------------------------------------------------------------------------

# SplitMix64 constants (Steele, Lea and Flood 2014).
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_UINT64_MASK = 0xFFFFFFFFFFFFFFFF
_PI_CHUNK = 2**20  # samples per chunk: a few 8 MiB temporaries


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 finaliser, in place (uint64 arithmetic wraps around, as intended)."""
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def _uniform(seed: np.uint64, counter: NDArray[np.uint64]) -> FloatArray:
    """Uniform doubles in [0, 1) from the 53 high bits of mix(seed + counter * GAMMA)."""
    z = _mix(seed + counter * _GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # exact: < 2**53


def pi_count_hits(seed: int, start: int, count: int) -> int:
    """Number of samples ``start <= i < start + count`` that fall inside the unit circle.

    Counter-based (SplitMix64 of the sample's global index), so the total is the same for
    any split of the index range between ranks, and equal to the Cython backend's.
    """
    if start < 0 or count < 0:
        raise ValueError("start and count must be non-negative")
    s = np.uint64(int(seed) & _UINT64_MASK)  # Python ints of any sign wrap, as in Cython
    hits = 0
    with np.errstate(over="ignore"):  # uint64 overflow is the point of the hash
        for lo in range(start, start + count, _PI_CHUNK):
            i = np.arange(lo, min(lo + _PI_CHUNK, start + count), dtype=np.uint64)
            cx = i * np.uint64(2) + np.uint64(1)
            x = _uniform(s, cx)
            y = _uniform(s, cx + np.uint64(1))
            hits += int(np.count_nonzero(x * x + y * y < 1.0))
    return hits


# --------------------------------------------------------------------------------------
# 2-D heat equation, Jacobi
# --------------------------------------------------------------------------------------

_HEAT_ROWS = 256  # rows per chunk of the residual's temporary


def _check_heat_shapes(u: FloatArray, out: FloatArray) -> None:
    if u.shape != out.shape or u.ndim != 2:
        raise ValueError("u and out must be 2-D arrays of the same shape")
    if u.shape[0] < 2 or u.shape[1] < 2:
        raise ValueError("u needs at least a one-cell halo on each side")
    if np.shares_memory(u, out):
        raise ValueError("out must not overlap u: the Jacobi update needs a separate buffer")


def heat2d_step(u: FloatArray, out: FloatArray) -> None:
    """One Jacobi sweep of the interior of ``u`` (shape (nx+2, ny+2)) into ``out``.

    The halo rows and columns of ``out`` are never written. The sum is taken in the order
    ((north + south) + west) + east, then times 0.25, as in the Cython backend, so the two
    give bitwise-identical fields.
    """
    heat2d_step_box(u, out, 1, u.shape[0] - 1, 1, u.shape[1] - 1)


def heat2d_step_box(u: FloatArray, out: FloatArray, i0: int, i1: int, j0: int, j1: int) -> None:
    """heat2d_step restricted to rows i0..i1-1 and columns j0..j1-1 (halo-inclusive
    indices inside the interior); the same arithmetic per point, so the same bits.

    An MPI caller updates the block's inside while its halo is still in flight, then the
    rim once it has arrived. An empty box (i0 >= i1 or j0 >= j1) does nothing.
    """
    _check_heat_shapes(u, out)
    if i0 >= i1 or j0 >= j1:
        return
    nx, ny = u.shape[0] - 2, u.shape[1] - 2
    if not (i0 >= 1 and i1 <= nx + 1 and j0 >= 1 and j1 <= ny + 1):
        raise ValueError(f"box rows {i0}..{i1} and columns {j0}..{j1} leave the interior "
                         f"1..{nx} x 1..{ny}")
    _jacobi(u[i0 - 1:i1 - 1, j0:j1], u[i0 + 1:i1 + 1, j0:j1], u[i0:i1, j0 - 1:j1 - 1],
            u[i0:i1, j0 + 1:j1 + 1], out[i0:i1, j0:j1])


def heat2d_step_row(up: FloatArray, mid: FloatArray, down: FloatArray, out: FloatArray) -> None:
    """One grid row of heat2d_step from its three rows, wherever they are: ``out[1:-1]``
    from ``up``, ``mid`` and ``down`` (each ny+2 long, ends the halo); the same arithmetic
    per point, so the same bits. A rank that keeps its edge rows in memory its neighbours
    share updates them, and the rows next to them, with this."""
    n = mid.shape[0]
    if not (up.shape == mid.shape == down.shape == out.shape == (n,)) or n < 2:
        raise ValueError("up, mid, down and out must be rows of one length, at least 2")
    if any(np.shares_memory(out, row) for row in (up, mid, down)):
        raise ValueError("out must not be one of the rows it is computed from")
    _jacobi(up[1:-1], down[1:-1], mid[:-2], mid[2:], out[1:-1])


def _jacobi(north: FloatArray, south: FloatArray, west: FloatArray, east: FloatArray,
            out: FloatArray) -> None:
    """``out`` (a view, written in place) = 0.25 * (((north + south) + west) + east): the
    one summation order of every heat2d update, the Cython backend's too."""
    np.add(north, south, out=out)
    out += west
    out += east
    out *= 0.25


def heat2d_step_residual(u: FloatArray, out: FloatArray) -> float:
    """Like heat2d_step, and return the sum over the interior of ``(out - u)**2``."""
    heat2d_step(u, out)
    total = 0.0
    nx = u.shape[0] - 2
    for lo in range(1, nx + 1, _HEAT_ROWS):  # chunks of rows bound the temporary
        hi = min(lo + _HEAT_ROWS, nx + 1)
        d = out[lo:hi, 1:-1] - u[lo:hi, 1:-1]
        total += float(np.vdot(d, d))
    return total


# --------------------------------------------------------------------------------------
# N-body, direct sum
# --------------------------------------------------------------------------------------

_NBODY_BLOCK = 256  # local bodies per chunk
_NBODY_PAIRS = 2**20  # at most this many (j, i) pairs per temporary (8 MiB)


def _check_nbody_shapes(pos_local: FloatArray, pos_all: FloatArray, mass_all: FloatArray) -> None:
    if pos_local.ndim != 2 or pos_local.shape[0] != 3 or pos_all.ndim != 2 or pos_all.shape[0] != 3:
        raise ValueError("positions must have shape (3, n): one row per coordinate")
    if mass_all.shape != (pos_all.shape[1],):
        raise ValueError("mass_all must have one entry per column of pos_all")


def _block_size(n_all: int) -> int:
    return max(1, min(_NBODY_BLOCK, _NBODY_PAIRS // max(n_all, 1)))


def _separations(
    pos_local: FloatArray, lo: int, hi: int, pos_all: FloatArray, eps2: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """dx, dy, dz and the softened r^2 for all j (rows) and local bodies lo..hi (columns)."""
    dx = pos_all[0][:, None] - pos_local[0, None, lo:hi]
    dy = pos_all[1][:, None] - pos_local[1, None, lo:hi]
    dz = pos_all[2][:, None] - pos_local[2, None, lo:hi]
    # ((dx^2 + dy^2) + dz^2) + eps2, the Cython backend's order.
    r2 = dx * dx
    r2 += dy * dy
    r2 += dz * dz
    r2 += eps2
    return dx, dy, dz, r2


def _sum_over_j(terms: FloatArray, out: FloatArray) -> None:
    """out[i] = sum over rows j of terms[j, i], strictly in ascending j.

    Reducing axis 0 of a C-contiguous (N, B) array adds whole rows one after another, which
    is the sequential order the decomposition relies on. With a single column numpy would
    instead reduce a contiguous run with pairwise summation, so that case uses the
    sequential accumulate.
    """
    if terms.shape[1] == 1:
        out[0] = np.add.accumulate(terms[:, 0])[-1]
    else:
        np.add.reduce(terms, axis=0, out=out)


def nbody_accel(
    pos_local: FloatArray,
    pos_all: FloatArray,
    mass_all: FloatArray,
    eps2: float,
    acc_out: FloatArray,
) -> None:
    """Softened gravitational acceleration (G = 1) on each local body from all bodies.

    ``acc_i = sum_j m_j (r_j - r_i) / (|r_j - r_i|^2 + eps2)^(3/2)``, j ascending over all N
    bodies, so a slice of bodies gets the same bits as the whole set; the self term vanishes
    because r_j - r_i = 0 (this needs eps2 > 0). Positions are (3, n) and (3, N).
    """
    _check_nbody_shapes(pos_local, pos_all, mass_all)
    if acc_out.shape != pos_local.shape:
        raise ValueError("acc_out must have the shape of pos_local")
    n, n_all = pos_local.shape[1], pos_all.shape[1]
    if n_all == 0:
        acc_out[...] = 0.0
        return
    block = _block_size(n_all)
    m = mass_all[:, None]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        dx, dy, dz, r2 = _separations(pos_local, lo, hi, pos_all, eps2)
        f = m / (r2 * np.sqrt(r2))
        for k, d in enumerate((dx, dy, dz)):
            d *= f  # in place: the separations are not needed afterwards
            _sum_over_j(d, acc_out[k, lo:hi])


def nbody_potential(
    pos_local: FloatArray,
    mass_local: FloatArray,
    offset: int,
    pos_all: FloatArray,
    mass_all: FloatArray,
    eps2: float,
) -> float:
    """Potential energy share of the local bodies (global indices offset, offset+1, ...).

    ``sum_i sum_{j != offset+i} -0.5 m_i m_j / sqrt(|r_j - r_i|^2 + eps2)``; summed over
    all ranks it is the total potential energy (each pair counted twice, hence the 0.5).
    """
    _check_nbody_shapes(pos_local, pos_all, mass_all)
    n, n_all = pos_local.shape[1], pos_all.shape[1]
    if mass_local.shape != (n,):
        raise ValueError("mass_local must have one entry per column of pos_local")
    if offset < 0 or offset + n > n_all:
        raise ValueError("the local bodies must be pos_all[:, offset:offset + n]")
    if n == 0:
        return 0.0
    block = _block_size(n_all)
    m = mass_all[:, None]
    total = 0.0
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        r2 = _separations(pos_local, lo, hi, pos_all, eps2)[3]
        with np.errstate(divide="ignore"):  # a self pair with eps2 = 0; zeroed just below
            inv = m / np.sqrt(r2)
        cols = np.arange(hi - lo)
        inv[offset + lo + cols, cols] = 0.0  # exclude j == i (adding 0.0 changes no bits)
        pot = np.empty(hi - lo)
        _sum_over_j(inv, pot)
        total += float(np.dot(-0.5 * mass_local[lo:hi], pot))
    return total


# --------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------

_KMEANS_CHUNK = 65536  # points per chunk
_KMEANS_PAIRS = 2**22  # at most this many (point, centroid) distances at once (32 MiB)


def kmeans_assign(points: FloatArray, centroids: FloatArray, labels_out: IntArray) -> float:
    """Label each point (n, d) with its nearest centroid (k, d); return the inertia.

    Squared distances sum the coordinates in ascending order (one vectorised pass per
    coordinate, not a pairwise ``sum``), so they are bitwise those of the Cython backend; ties
    go to the lowest centroid index (argmin). The inertia is the sum of the minimum distances.
    """
    n, d = points.shape
    k = centroids.shape[0]
    if centroids.shape[1] != d:
        raise ValueError("points and centroids must have the same number of columns")
    if labels_out.shape != (n,):
        raise ValueError("labels_out must have one entry per point")
    if k == 0:
        raise ValueError("need at least one centroid")
    chunk = max(1, min(_KMEANS_CHUNK, _KMEANS_PAIRS // k))
    inertia = 0.0
    for lo in range(0, n, chunk):
        p = points[lo : lo + chunk]
        dist = np.zeros((p.shape[0], k))
        for col in range(d):
            dist += np.square(p[:, col, None] - centroids[None, :, col])
        labels = np.argmin(dist, axis=1)
        labels_out[lo : lo + chunk] = labels
        inertia += float(np.take_along_axis(dist, labels[:, None], axis=1).sum())
    return inertia


def kmeans_accumulate(
    points: FloatArray, labels: IntArray, sums_out: FloatArray, counts_out: IntArray
) -> None:
    """Zero ``sums_out`` (k, d) and ``counts_out`` (k,), then add each point to its cluster."""
    n, d = points.shape
    k = sums_out.shape[0]
    if labels.shape != (n,):
        raise ValueError("labels must have one entry per point")
    if sums_out.shape != (k, d) or counts_out.shape != (k,):
        raise ValueError("sums_out must be (k, d) and counts_out (k,)")
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:  # negative labels would silently wrap around in np.add.at
        i = int(bad[0])
        raise ValueError(f"label {labels[i]} of point {i} is not in [0, {k})")
    sums_out[...] = 0.0
    np.add.at(sums_out, labels, points)  # unbuffered: repeated labels all count
    counts_out[...] = np.bincount(labels, minlength=k)


# --------------------------------------------------------------------------------------
# Synthetic CPU work and memory bandwidth
# --------------------------------------------------------------------------------------

_BUSY_SIZE = 4096  # 32 KiB: the array stays in the L1/L2 cache
_BUSY_ROUNDS = 500  # multiply-add rounds per unit, about 1 ms on the development machine


def busy_work(units: int) -> float:
    """Burn ``units`` units of cache-resident arithmetic; return a checksum.

    One unit is _BUSY_ROUNDS (500) rounds of an in-place multiply and add over a
    4096-element array, roughly 1 ms on one core of the development machine (numpy's
    per-call overhead is part of the unit). The time is linear in ``units``.
    """
    if units < 0:
        raise ValueError("units must be non-negative")
    x = np.linspace(0.1, 0.4, _BUSY_SIZE)
    for _ in range(units * _BUSY_ROUNDS):
        # The fixed point b / (1 - a) is about 1: values stay normal, no denormal slowdown.
        np.multiply(x, 0.999999, out=x)
        np.add(x, 1e-6, out=x)
    return float(x.sum())


def triad(a: FloatArray, b: FloatArray, c: FloatArray, s: float) -> None:
    """STREAM triad ``a[i] = b[i] + s * c[i]`` on 1-D arrays.

    numpy makes two passes (``a = s * c``, then ``a += b``), so it moves 40 bytes per element
    instead of the 24 a fused loop (the Cython backend) moves.
    """
    if not (a.shape == b.shape == c.shape) or a.ndim != 1:
        raise ValueError("a, b and c must be 1-D arrays of the same length")
    if np.shares_memory(a, b):  # writing s*c into a first would destroy b
        np.add(b, s * c, out=a)
        return
    np.multiply(c, s, out=a)
    a += b
