# distutils: extra_compile_args = -ffp-contract=off -fno-math-errno
"""Cython kernels: the fast backend, with the same functions and signatures as numpy_backend.

Two compiler flags are added to setup.py's (see the line above):

* ``-ffp-contract=off``: gcc would otherwise fuse ``a*b + c`` into one FMA, which rounds
  once instead of twice. numpy never fuses, so without this flag the pi hit count, the
  k-means labels and the heat2d field could differ from the numpy reference in the last bit.
* ``-fno-math-errno``: ``sqrt`` then compiles to the bare instruction (no errno branch),
  which lets gcc vectorise the n-body loops. No kernel ever reads errno.

Every loop runs without the GIL on typed memoryviews; the callers pass float64 (and int64
labels) C-contiguous arrays, which the memoryview types below enforce.
"""

from libc.math cimport sqrt
from libc.stdint cimport int64_t, uint64_t

# Bodies per tile in the n-body kernels: 6 arrays of TILE doubles (positions and
# accumulators) stay in the 48 KiB L1 data cache while the j loop streams over all bodies.
cdef enum:
    TILE = 256

# Arithmetic of one busy_work unit: BUSY_ITERATIONS dependent multiply-adds on each of 4
# chains, about 1 ms on this 2-3 GHz core (the chains are latency bound, not memory bound).
cdef enum:
    BUSY_ITERATIONS = 400000

cdef extern from *:
    """
    /* SplitMix64 constants (Steele, Lea and Flood 2014). */
    #define HPC_SPLITMIX_GAMMA 0x9E3779B97F4A7C15ULL
    #define HPC_SPLITMIX_MIX1 0xBF58476D1CE4E5B9ULL
    #define HPC_SPLITMIX_MIX2 0x94D049BB133111EBULL
    """
    const uint64_t GAMMA "HPC_SPLITMIX_GAMMA"
    const uint64_t MIX1 "HPC_SPLITMIX_MIX1"
    const uint64_t MIX2 "HPC_SPLITMIX_MIX2"

UINT64_MASK = 0xFFFFFFFFFFFFFFFF


# --------------------------------------------------------------------------------------
# Monte Carlo pi
# --------------------------------------------------------------------------------------

cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * MIX1
    z = (z ^ (z >> 27)) * MIX2
    return z ^ (z >> 31)


cdef inline double _uniform(uint64_t seed, uint64_t counter) noexcept nogil:
    # The 53 high bits of the mixed counter, scaled to [0, 1): exact in a double.
    return <double>(_mix(seed + counter * GAMMA) >> 11) * (1.0 / 9007199254740992.0)


def pi_count_hits(seed, int64_t start, int64_t count):
    """Number of samples ``start <= i < start + count`` that fall inside the unit circle.

    Counter-based (SplitMix64 of the sample's global index), so the total is the same for
    any split of the index range between ranks.
    """
    if count < 0 or start < 0:
        raise ValueError("start and count must be non-negative")
    cdef uint64_t s = <uint64_t>(int(seed) & UINT64_MASK)  # Python ints of any sign wrap
    cdef uint64_t i, first = <uint64_t>start, last = <uint64_t>(start + count)
    cdef int64_t hits = 0
    cdef double x, y
    with nogil:
        for i in range(first, last):
            x = _uniform(s, 2 * i + 1)
            y = _uniform(s, 2 * i + 2)
            if x * x + y * y < 1.0:
                hits += 1
    return hits


# --------------------------------------------------------------------------------------
# 2-D heat equation, Jacobi
# --------------------------------------------------------------------------------------

cdef inline void _jacobi_row(const double *up, const double *mid, const double *down,
                             double *out, Py_ssize_t ny) noexcept nogil:
    # One interior row, j = 1..ny. Raw pointers and a unit-stride j let gcc vectorise it;
    # the summation order matches numpy_backend so the results are bitwise identical.
    cdef Py_ssize_t j
    for j in range(1, ny + 1):
        out[j] = 0.25 * (((up[j] + down[j]) + mid[j - 1]) + mid[j + 1])


cdef inline double _jacobi_row_residual(const double *up, const double *mid,
                                        const double *down, double *out,
                                        Py_ssize_t ny) noexcept nogil:
    # _jacobi_row that also returns the row's sum of squared changes. The sequential sum
    # stops gcc from vectorising this loop (no -ffast-math), but the sweep is memory bound:
    # at N=4096 this scalar loop runs within 10-20% of heat2d_step, and it beat the
    # vectorised variants tried (8 interleaved partial sums along the row, or per-column
    # sums), which cost extra loads, stores and shuffles.
    cdef Py_ssize_t j
    cdef double o, d, s = 0.0
    for j in range(1, ny + 1):
        o = 0.25 * (((up[j] + down[j]) + mid[j - 1]) + mid[j + 1])
        out[j] = o
        d = o - mid[j]
        s += d * d
    return s


cdef void _check_heat_shapes(const double[:, ::1] u, double[:, ::1] out) except *:
    if u.shape[0] != out.shape[0] or u.shape[1] != out.shape[1]:
        raise ValueError("u and out must have the same shape")
    if u.shape[0] < 2 or u.shape[1] < 2:
        raise ValueError("u needs at least a one-cell halo on each side")
    if &u[0, 0] == &out[0, 0]:
        raise ValueError("out must not be u: the Jacobi update needs a separate buffer")


cdef void _check_box(Py_ssize_t nx, Py_ssize_t ny, Py_ssize_t i0, Py_ssize_t i1,
                     Py_ssize_t j0, Py_ssize_t j1) except *:
    if i0 < i1 and j0 < j1 and not (1 <= i0 and i1 <= nx + 1 and 1 <= j0 and j1 <= ny + 1):
        raise ValueError(f"box rows {i0}..{i1} and columns {j0}..{j1} leave the interior "
                         f"1..{nx} x 1..{ny}")


def heat2d_step(const double[:, ::1] u, double[:, ::1] out):
    """One Jacobi sweep of the interior of ``u`` (shape (nx+2, ny+2)) into ``out``.

    The halo rows and columns of ``out`` are never written.
    """
    heat2d_step_box(u, out, 1, u.shape[0] - 1, 1, u.shape[1] - 1)


def heat2d_step_box(const double[:, ::1] u, double[:, ::1] out, Py_ssize_t i0,
                    Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1):
    """heat2d_step restricted to rows i0..i1-1 and columns j0..j1-1 (halo-inclusive
    indices inside the interior); the same arithmetic per point, so the same bits.

    An MPI caller updates the block's inside while its halo is still in flight, then the
    rim once it has arrived. An empty box (i0 >= i1 or j0 >= j1) does nothing.
    """
    _check_heat_shapes(u, out)
    _check_box(u.shape[0] - 2, u.shape[1] - 2, i0, i1, j0, j1)
    cdef Py_ssize_t i
    if i0 >= i1 or j0 >= j1:
        return
    with nogil:
        for i in range(i0, i1):
            # Pointers shifted so that _jacobi_row's j = 1..(j1-j0) lands on j0..j1-1.
            _jacobi_row(&u[i - 1, j0 - 1], &u[i, j0 - 1], &u[i + 1, j0 - 1],
                        &out[i, j0 - 1], j1 - j0)


def heat2d_step_row(const double[::1] up, const double[::1] mid, const double[::1] down,
                    double[::1] out):
    """One grid row of heat2d_step from its three rows, wherever they are: ``out[1:-1]``
    from ``up``, ``mid`` and ``down`` (each ny+2 long, ends the halo); the same arithmetic
    per point, so the same bits. A rank that keeps its edge rows in memory its neighbours
    share updates them, and the rows next to them, with this."""
    cdef Py_ssize_t n = mid.shape[0]
    if up.shape[0] != n or down.shape[0] != n or out.shape[0] != n or n < 2:
        raise ValueError("up, mid, down and out must be rows of one length, at least 2")
    if &out[0] == &mid[0] or &out[0] == &up[0] or &out[0] == &down[0]:
        raise ValueError("out must not be one of the rows it is computed from")
    with nogil:
        _jacobi_row(&up[0], &mid[0], &down[0], &out[0], n - 2)


def heat2d_step_residual(const double[:, ::1] u, double[:, ::1] out):
    """Like heat2d_step, and return the sum over the interior of ``(out - u)**2``."""
    _check_heat_shapes(u, out)
    cdef Py_ssize_t i, nx = u.shape[0] - 2, ny = u.shape[1] - 2
    cdef double total = 0.0
    with nogil:
        for i in range(1, nx + 1):
            total += _jacobi_row_residual(&u[i - 1, 0], &u[i, 0], &u[i + 1, 0], &out[i, 0],
                                          ny)
    return total


# --------------------------------------------------------------------------------------
# N-body, direct sum
# --------------------------------------------------------------------------------------

cdef void _check_nbody_shapes(const double[:, ::1] pos_local, const double[:, ::1] pos_all,
                              const double[::1] mass_all) except *:
    if pos_local.shape[0] != 3 or pos_all.shape[0] != 3:
        raise ValueError("positions must have shape (3, n): one row per coordinate")
    if mass_all.shape[0] != pos_all.shape[1]:
        raise ValueError("mass_all must have one entry per column of pos_all")


cdef inline void _accel_tile(const double *x, const double *y, const double *z,
                             Py_ssize_t nt, const double *xa, const double *ya,
                             const double *za, const double *m, Py_ssize_t n_all,
                             double eps2, double *ax, double *ay, double *az) noexcept nogil:
    # j outer, i inner: each ax[i] still sums over j in ascending order (so a tile gives the
    # same bits as the whole set), and the i loop has no reduction, so gcc vectorises it.
    cdef Py_ssize_t i, j
    cdef double xj, yj, zj, mj, dx, dy, dz, r2, f
    for i in range(nt):
        ax[i] = 0.0
        ay[i] = 0.0
        az[i] = 0.0
    for j in range(n_all):
        xj = xa[j]
        yj = ya[j]
        zj = za[j]
        mj = m[j]
        for i in range(nt):
            dx = xj - x[i]
            dy = yj - y[i]
            dz = zj - z[i]
            r2 = ((dx * dx + dy * dy) + dz * dz) + eps2
            f = mj / (r2 * sqrt(r2))
            ax[i] += f * dx
            ay[i] += f * dy
            az[i] += f * dz


def nbody_accel(const double[:, ::1] pos_local, const double[:, ::1] pos_all,
                const double[::1] mass_all, double eps2, double[:, ::1] acc_out):
    """Softened gravitational acceleration (G = 1) on each local body from all bodies.

    ``acc_i = sum_j m_j (r_j - r_i) / (|r_j - r_i|^2 + eps2)^(3/2)``, j ascending over all N
    bodies; the self term vanishes because r_j - r_i = 0 (this needs eps2 > 0).
    """
    _check_nbody_shapes(pos_local, pos_all, mass_all)
    if acc_out.shape[0] != 3 or acc_out.shape[1] != pos_local.shape[1]:
        raise ValueError("acc_out must have the shape of pos_local")
    cdef Py_ssize_t n = pos_local.shape[1], n_all = pos_all.shape[1], tile, ib, nt
    if n == 0:
        return
    # Accumulate in local tiles: they cannot alias the inputs, which gcc needs to know to
    # vectorise without runtime overlap checks, and they stay in L1.
    cdef double ax[TILE]
    cdef double ay[TILE]
    cdef double az[TILE]
    cdef Py_ssize_t i
    with nogil:
        for tile in range((n + TILE - 1) // TILE):
            ib = tile * TILE
            nt = min(<Py_ssize_t>TILE, n - ib)
            _accel_tile(&pos_local[0, ib], &pos_local[1, ib], &pos_local[2, ib], nt,
                        &pos_all[0, 0], &pos_all[1, 0], &pos_all[2, 0], &mass_all[0],
                        n_all, eps2, ax, ay, az)
            for i in range(nt):
                acc_out[0, ib + i] = ax[i]
                acc_out[1, ib + i] = ay[i]
                acc_out[2, ib + i] = az[i]


cdef inline void _potential_range(const double *x, const double *y, const double *z,
                                  Py_ssize_t lo, Py_ssize_t hi, double xj, double yj,
                                  double zj, double mj, double eps2,
                                  double *pot) noexcept nogil:
    # pot[i] += m_j / |r_j - r_i| (softened) for lo <= i < hi: a branch-free, vectorisable loop.
    cdef Py_ssize_t i
    cdef double dx, dy, dz
    for i in range(lo, hi):
        dx = xj - x[i]
        dy = yj - y[i]
        dz = zj - z[i]
        pot[i] += mj / sqrt(((dx * dx + dy * dy) + dz * dz) + eps2)


def nbody_potential(const double[:, ::1] pos_local, const double[::1] mass_local,
                    Py_ssize_t offset, const double[:, ::1] pos_all,
                    const double[::1] mass_all, double eps2):
    """Potential energy share of the local bodies (global indices offset, offset+1, ...).

    ``sum_i sum_{j != offset+i} -0.5 m_i m_j / sqrt(|r_j - r_i|^2 + eps2)``; summed over
    all ranks it is the total potential energy (each pair counted twice, hence the 0.5).
    """
    _check_nbody_shapes(pos_local, pos_all, mass_all)
    cdef Py_ssize_t n = pos_local.shape[1], n_all = pos_all.shape[1]
    if mass_local.shape[0] != n:
        raise ValueError("mass_local must have one entry per column of pos_local")
    if offset < 0 or offset + n > n_all:
        raise ValueError("the local bodies must be pos_all[:, offset:offset + n]")
    if n == 0 or n_all == 0:
        return 0.0
    cdef double pot[TILE]
    cdef const double *x
    cdef const double *y
    cdef const double *z
    cdef Py_ssize_t tile, ib, nt, i, j, me
    cdef double total = 0.0
    with nogil:
        for tile in range((n + TILE - 1) // TILE):
            ib = tile * TILE
            nt = min(<Py_ssize_t>TILE, n - ib)
            x = &pos_local[0, ib]
            y = &pos_local[1, ib]
            z = &pos_local[2, ib]
            for i in range(nt):
                pot[i] = 0.0
            for j in range(n_all):
                # Tile position of body j itself, if it is in this tile: skipped by
                # splitting the i range, which keeps the loops free of branches.
                me = j - offset - ib
                if 0 <= me < nt:
                    _potential_range(x, y, z, 0, me, pos_all[0, j], pos_all[1, j],
                                     pos_all[2, j], mass_all[j], eps2, pot)
                    _potential_range(x, y, z, me + 1, nt, pos_all[0, j], pos_all[1, j],
                                     pos_all[2, j], mass_all[j], eps2, pot)
                else:
                    _potential_range(x, y, z, 0, nt, pos_all[0, j], pos_all[1, j],
                                     pos_all[2, j], mass_all[j], eps2, pot)
            for i in range(nt):
                total += -0.5 * mass_local[ib + i] * pot[i]
    return total


# --------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------

def kmeans_assign(const double[:, ::1] points, const double[:, ::1] centroids,
                  int64_t[::1] labels_out):
    """Label each point with its nearest centroid; return the inertia (sum of min d^2).

    Distances sum the coordinates in ascending order and ties go to the lowest index,
    exactly as the numpy backend (and argmin) do.
    """
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], k = centroids.shape[0]
    if centroids.shape[1] != d:
        raise ValueError("points and centroids must have the same number of columns")
    if labels_out.shape[0] != n:
        raise ValueError("labels_out must have one entry per point")
    if k == 0:
        raise ValueError("need at least one centroid")
    cdef Py_ssize_t i, c, l, best_c
    cdef double dist, best, t, inertia = 0.0
    with nogil:
        for i in range(n):
            best = 0.0
            best_c = -1
            for c in range(k):
                dist = 0.0
                for l in range(d):
                    t = points[i, l] - centroids[c, l]
                    dist += t * t
                if best_c < 0 or dist < best:
                    best = dist
                    best_c = c
            labels_out[i] = best_c
            inertia += best
    return inertia


def kmeans_accumulate(const double[:, ::1] points, const int64_t[::1] labels,
                      double[:, ::1] sums_out, int64_t[::1] counts_out):
    """Zero ``sums_out`` (k, d) and ``counts_out`` (k,), then add each point to its cluster."""
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], k = sums_out.shape[0]
    if labels.shape[0] != n:
        raise ValueError("labels must have one entry per point")
    if sums_out.shape[1] != d or counts_out.shape[0] != k:
        raise ValueError("sums_out must be (k, d) and counts_out (k,)")
    cdef Py_ssize_t i, l
    cdef int64_t c, bad = -1
    with nogil:
        # Validate first: bounds checking is off, so a bad label would write out of bounds.
        for i in range(n):
            if labels[i] < 0 or labels[i] >= k:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"label {labels[bad]} of point {bad} is not in [0, {k})")
    with nogil:
        sums_out[:, :] = 0.0
        counts_out[:] = 0
        for i in range(n):
            c = labels[i]
            counts_out[c] += 1
            for l in range(d):
                sums_out[c, l] += points[i, l]


# --------------------------------------------------------------------------------------
# Synthetic CPU work and memory bandwidth
# --------------------------------------------------------------------------------------

def busy_work(int64_t units):
    """Burn ``units`` units of register-resident arithmetic; return a checksum.

    One unit is BUSY_ITERATIONS (400000) iterations of ``x = x*a + b`` on each of 4
    independent chains, roughly 1 ms on one core of the development machine. The chains
    are latency bound, so the time is linear in ``units`` and touches no memory.
    """
    if units < 0:
        raise ValueError("units must be non-negative")
    # The fixed point b / (1 - a) is about 1, so the values stay normal (no denormal slowdown).
    cdef double a = 0.999999, x0 = 0.1, x1 = 0.2, x2 = 0.3, x3 = 0.4
    cdef double b0 = 1e-6, b1 = 1.1e-6, b2 = 1.2e-6, b3 = 1.3e-6
    cdef int64_t u, it
    with nogil:
        for u in range(units):
            for it in range(BUSY_ITERATIONS):
                x0 = x0 * a + b0
                x1 = x1 * a + b1
                x2 = x2 * a + b2
                x3 = x3 * a + b3
    return (x0 + x1) + (x2 + x3)


def triad(double[::1] a, const double[::1] b, const double[::1] c, double s):
    """STREAM triad ``a[i] = b[i] + s * c[i]``: one pass, 24 bytes of traffic per element."""
    cdef Py_ssize_t i, n = a.shape[0]
    if b.shape[0] != n or c.shape[0] != n:
        raise ValueError("a, b and c must have the same length")
    with nogil:
        for i in range(n):
            a[i] = b[i] + s * c[i]
