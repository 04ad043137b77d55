"""CUDA kernels through PyCUDA: the GPU backend of pi, heat2d, nbody and kmeans.

The kernels are in kernels/cuda/*.cu; kernels/cuda_build.py compiles each once per device
architecture into an on-disk cache, and this module loads each file once per process, so
no run compiles anything after the first. A CUDA context must be current before the first
call (``hpc.gpu.bind_device`` makes one per MPI rank).

The functions named like numpy_backend's take the same arguments and give the same results
(pi hits, heat2d fields and float64 n-body accelerations bit for bit, the rest to
round-off). They accept numpy arrays, which are copied to the device and back (handy for
tests and one-off calls), or pycuda GPUArrays, which stay on the device: what the workloads
pass, so that their arrays live on the GPU from step to step. The ``*_device`` helpers
below them exist for the workloads' device-resident loops (halo packing, leapfrog updates,
centroid updates) and take GPUArrays only. busy_work and triad have no CUDA version.

Every launch goes to the default stream in order; functions that return a number wait for
their kernels, the others return at once (``synchronize()`` waits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pycuda.driver as drv  # ImportError without PyCUDA or the NVIDIA driver library
from pycuda import gpuarray
from pycuda.gpuarray import GPUArray

from kernels import cuda_build

# Launch geometry. The first three are compiled into the kernels as well (cuda_build).
HEAT_ROWS = cuda_build.GEOMETRY["HEAT_ROWS"]
NBODY_TILE = cuda_build.GEOMETRY["NBODY_TILE"]
KMEANS_CHUNK = cuda_build.GEOMETRY["KMEANS_CHUNK"]
BLOCK = 256  # threads per block of the other kernels (a multiple of 32: block_sum)
HEAT_BLOCK = 128  # threads (columns) per heat2d block
MAX_GRID_Y = 65535
MAX_STATIC_SHARED = 48 * 1024  # dynamic shared memory usable without opting in
INT32_MAX = 2**31 - 1
UINT64_MASK = 0xFFFFFFFFFFFFFFFF
PRECISIONS = {"float64": np.float64, "float32": np.float32}

_modules: dict[str, Any] = {}
_functions: dict[str, Any] = {}
_scratch: dict[str, GPUArray] = {}


# --------------------------------------------------------------------------------------
# Loading, memory, launches
# --------------------------------------------------------------------------------------

def device_arch() -> str:
    """nvcc architecture of the current context's device, e.g. "sm_90"."""
    return cuda_build.arch_of(drv.Context.get_device().compute_capability())


def _function(group: str, name: str) -> Any:
    fn = _functions.get(name)
    if fn is None:
        module = _modules.get(group)
        if module is None:
            cubin = cuda_build.compiled(cuda_build.source_path(group), device_arch())
            module = _modules[group] = drv.module_from_file(str(cubin))
        fn = module.get_function(name)
        fn.prepare(cuda_build.KERNEL_SIGNATURES[group][name])
        _functions[name] = fn
    return fn


def load_all() -> None:
    """Load (compiling on a cache miss) every kernel now rather than at first use."""
    for group, names in cuda_build.KERNEL_SIGNATURES.items():
        for name in names:
            _function(group, name)


def release() -> None:
    """Drop the loaded modules and scratch buffers; call before the context goes away."""
    _functions.clear()
    _modules.clear()
    _scratch.clear()


def synchronize() -> None:
    drv.Context.synchronize()


def multiprocessors() -> int:
    return drv.Context.get_device().get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)


def _ptr(a: GPUArray) -> int:
    return int(a.gpudata)


def _blocks(n: int, per_block: int) -> int:
    return (n + per_block - 1) // per_block


def empty(shape: Any, dtype: Any = np.float64) -> GPUArray:
    return GPUArray(shape, np.dtype(dtype))


def zeros(shape: Any, dtype: Any = np.float64) -> GPUArray:
    """A zeroed device array (memset: pycuda's own zeros would compile a kernel with nvcc)."""
    a = empty(shape, dtype)
    if a.size:
        drv.memset_d8(_ptr(a), 0, a.nbytes)
    return a


def to_device(a: Any, dtype: Any = np.float64) -> GPUArray:
    return gpuarray.to_gpu(np.ascontiguousarray(a, dtype=dtype))


def copy_device(dst: GPUArray, src: GPUArray) -> None:
    """dst[...] = src on the device (same size and dtype)."""
    if dst.nbytes != src.nbytes:
        raise ValueError("copy_device: arrays differ in size")
    if dst.nbytes:
        drv.memcpy_dtod(_ptr(dst), _ptr(src), dst.nbytes)


def scratch(name: str, size: int, dtype: Any) -> GPUArray:
    """A reusable 1-D device buffer of at least ``size`` elements (no allocation per step)."""
    buf = _scratch.get(name)
    if buf is None or buf.size < size or buf.dtype != np.dtype(dtype):
        buf = _scratch[name] = empty(max(size, 1), dtype)
    return buf[:size]


def _on_device(a: Any, dtype: Any, name: str) -> GPUArray:
    """``a`` as a C-contiguous device array of ``dtype``: GPUArrays as they are, numpy
    arrays copied to the device."""
    if isinstance(a, GPUArray):
        if a.dtype != np.dtype(dtype) or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype)} GPUArray")
        return a
    return to_device(a, dtype)


def _require(dtype: Any, **arrays: GPUArray) -> None:
    """The *_device helpers take C-contiguous GPUArrays of the kernels' element type."""
    for name, a in arrays.items():
        if not isinstance(a, GPUArray) or a.dtype != np.dtype(dtype) or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype)} GPUArray")


def _check_output(a: Any, dtype: Any, name: str) -> None:
    if isinstance(a, np.ndarray) and (a.dtype != np.dtype(dtype) or not a.flags.c_contiguous):
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype)} array")


def _copy_back(host: Any, device: GPUArray) -> None:
    if isinstance(host, np.ndarray) and device.size:
        device.get(host)


def _finish(*arguments: Any) -> None:
    """Wait for the kernels if any argument was a host array: its temporary device copy
    (held by the caller's locals until it returns) must outlive the kernels that read it.
    Never pass such a copy inline (``_ptr(_on_device(a))``): it would be freed before the
    launch, and the next allocation could reuse its memory."""
    if any(isinstance(a, np.ndarray) for a in arguments):
        synchronize()


def _fits_int32(*values: int) -> None:
    if max(values) > INT32_MAX:
        raise ValueError(f"sizes above {INT32_MAX} are not supported by the CUDA kernels")


# --------------------------------------------------------------------------------------
# Monte Carlo pi
# --------------------------------------------------------------------------------------

def pi_count_hits(seed: int, start: int, count: int) -> int:
    """Number of samples ``start <= i < start + count`` inside the unit circle; equal to
    numpy_backend.pi_count_hits for every argument (same SplitMix64 counter generator)."""
    if start < 0 or count < 0:
        raise ValueError("start and count must be non-negative")
    if count == 0:
        return 0
    hits = zeros(1, np.uint64)
    # Enough blocks to fill every multiprocessor; the kernel's grid-stride loop does the rest.
    blocks = min(_blocks(count, BLOCK), 32 * multiprocessors())
    _function("pi", "pi_count_hits").prepared_call(
        (blocks, 1), (BLOCK, 1, 1), int(seed) & UINT64_MASK, int(start), int(count), _ptr(hits))
    return int(hits.get()[0])


# --------------------------------------------------------------------------------------
# 2-D heat equation, Jacobi
# --------------------------------------------------------------------------------------

def _heat2d(u: Any, out: Any, residual: bool) -> float:
    if u.shape != out.shape or len(u.shape) != 2:
        raise ValueError("u and out must be 2-D arrays of the same shape")
    if u.shape[0] < 2 or u.shape[1] < 2:
        raise ValueError("u needs at least a one-cell halo on each side")
    same = (np.shares_memory(u, out) if isinstance(u, np.ndarray) and isinstance(out, np.ndarray)
            else isinstance(u, GPUArray) and isinstance(out, GPUArray) and _ptr(u) == _ptr(out))
    if same:
        raise ValueError("out must not overlap u: the Jacobi update needs a separate buffer")
    _check_output(out, np.float64, "out")
    nx, ny = u.shape[0] - 2, u.shape[1] - 2
    if nx == 0 or ny == 0:
        return 0.0
    grid = (_blocks(ny, HEAT_BLOCK), _blocks(nx, HEAT_ROWS))
    if grid[1] > MAX_GRID_Y:
        raise ValueError(f"heat2d: at most {MAX_GRID_Y * HEAT_ROWS} rows on one device")
    u_d = _on_device(u, np.float64, "u")
    out_d = _on_device(out, np.float64, "out")  # copied in too: its halo must survive
    total = 0.0
    if residual:
        partials = scratch("heat2d_partials", grid[0] * grid[1], np.float64)
        _function("heat2d", "heat2d_step_residual").prepared_call(
            grid, (HEAT_BLOCK, 1, 1), _ptr(u_d), _ptr(out_d), _ptr(partials), nx, ny)
        total = float(partials.get().sum())
    else:
        _function("heat2d", "heat2d_step").prepared_call(
            grid, (HEAT_BLOCK, 1, 1), _ptr(u_d), _ptr(out_d), nx, ny)
    _copy_back(out, out_d)
    _finish(u, out)
    return total


def heat2d_step(u: Any, out: Any) -> None:
    """One Jacobi sweep of the interior of ``u`` (shape (nx+2, ny+2)) into ``out``; the
    halo of ``out`` is never written. Bitwise equal to numpy_backend.heat2d_step."""
    _heat2d(u, out, residual=False)


def heat2d_step_residual(u: Any, out: Any) -> float:
    """Like heat2d_step, and return the sum over the interior of ``(out - u)**2``."""
    return _heat2d(u, out, residual=True)


# Halo sides for heat2d_unpack_halo_device: which halo parts a neighbour filled.
HALO_TOP, HALO_BOTTOM, HALO_LEFT, HALO_RIGHT = 1, 2, 4, 8


def heat2d_edge_layout(nx: int, ny: int) -> dict[str, slice]:
    """Where each part sits in the edge and halo buffers (2 * (nx + ny) doubles each):
    the edges are [row 1 | row nx | column 1 | column ny], the halo is
    [row 0 | row nx+1 | column 0 | column ny+1] in the same four places."""
    return {"first_row": slice(0, ny), "last_row": slice(ny, 2 * ny),
            "first_col": slice(2 * ny, 2 * ny + nx),
            "last_col": slice(2 * ny + nx, 2 * ny + 2 * nx)}


def heat2d_pack_edges_device(u: GPUArray, edges: GPUArray) -> None:
    """Copy the interior's outermost rows and columns of ``u`` into ``edges``."""
    _require(np.float64, u=u, edges=edges)
    nx, ny = u.shape[0] - 2, u.shape[1] - 2
    if edges.size != 2 * (nx + ny):
        raise ValueError("edges must hold 2 * (nx + ny) doubles")
    _function("heat2d", "heat2d_pack_edges").prepared_call(
        (_blocks(max(nx, ny), BLOCK), 1), (BLOCK, 1, 1), _ptr(u), _ptr(edges), nx, ny)


def heat2d_unpack_halo_device(halo: GPUArray, u: GPUArray, sides: int) -> None:
    """Copy the parts of ``halo`` named by ``sides`` (HALO_* flags) into u's halo."""
    _require(np.float64, halo=halo, u=u)
    nx, ny = u.shape[0] - 2, u.shape[1] - 2
    if halo.size != 2 * (nx + ny):
        raise ValueError("halo must hold 2 * (nx + ny) doubles")
    if sides:
        _function("heat2d", "heat2d_unpack_halo").prepared_call(
            (_blocks(max(nx, ny), BLOCK), 1), (BLOCK, 1, 1), _ptr(halo), _ptr(u), nx, ny,
            sides)


# --------------------------------------------------------------------------------------
# N-body, direct sum
# --------------------------------------------------------------------------------------

def _check_nbody_shapes(pos_local: Any, pos_all: Any, mass_all: Any) -> None:
    if (len(pos_local.shape) != 2 or pos_local.shape[0] != 3 or len(pos_all.shape) != 2
            or pos_all.shape[0] != 3):
        raise ValueError("positions must have shape (3, n): one row per coordinate")
    if tuple(mass_all.shape) != (pos_all.shape[1],):
        raise ValueError("mass_all must have one entry per column of pos_all")
    _fits_int32(pos_all.shape[1], pos_local.shape[1])


def nbody_pack_device(pos: GPUArray, mass: GPUArray | None, bodies: GPUArray) -> None:
    """Pack positions (3, n) and masses (n; None: zeros) into bodies (n, 4) rows
    [x, y, z, m] of bodies' dtype (float64, or float32 for the fast kernel)."""
    _require(np.float64, pos=pos, **({} if mass is None else {"mass": mass}))
    _require(np.float32 if bodies.dtype == np.float32 else np.float64, bodies=bodies)
    n = pos.shape[1]
    if pos.shape[0] != 3 or bodies.shape != (n, 4) or mass is not None and mass.size != n:
        raise ValueError("bodies must be (n, 4) and mass (n,) for positions (3, n)")
    if n == 0:
        return
    name = "nbody_pack_f64" if bodies.dtype == np.float64 else "nbody_pack_f32"
    _function("nbody", name).prepared_call(
        (_blocks(n, BLOCK), 1), (BLOCK, 1, 1), _ptr(pos), 0 if mass is None else _ptr(mass),
        _ptr(bodies), n, n)


def nbody_accel_bodies_device(targets: GPUArray, sources: GPUArray, eps2: float,
                              acc: GPUArray) -> None:
    """acc (3, n) float64 = acceleration of each target row from all source rows, both
    packed by nbody_pack_device; their dtype picks the float64 or float32 kernel."""
    n, n_sources = targets.shape[0], sources.shape[0]
    if targets.dtype != sources.dtype or acc.shape != (3, n) or acc.strides[1] != 8:
        raise ValueError("targets and sources must share a dtype; acc must be (3, n) float64")
    if n == 0:
        return
    if targets.dtype == np.float64:
        fn, soft = _function("nbody", "nbody_accel_f64"), float(eps2)
    else:
        fn, soft = _function("nbody", "nbody_accel_f32"), float(np.float32(eps2))
    fn.prepared_call((_blocks(n, NBODY_TILE), 1), (NBODY_TILE, 1, 1), _ptr(targets),
                     _ptr(sources), _ptr(acc), soft, n, n_sources, acc.strides[0] // 8)


def nbody_accel(pos_local: Any, pos_all: Any, mass_all: Any, eps2: float, acc_out: Any,
                precision: str = "float64") -> None:
    """Softened gravitational acceleration (G = 1) on each local body from all bodies,
    as numpy_backend.nbody_accel. precision "float64" gives numpy's bits; "float32" is the
    fast kernel (float32 arithmetic, float64 result)."""
    _check_nbody_shapes(pos_local, pos_all, mass_all)
    if tuple(acc_out.shape) != tuple(pos_local.shape):
        raise ValueError("acc_out must have the shape of pos_local")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    _check_output(acc_out, np.float64, "acc_out")
    n, n_all = pos_local.shape[1], pos_all.shape[1]
    if n == 0:
        return
    if n_all == 0:  # no sources: no force (an empty device array has no memory to pass)
        if isinstance(acc_out, GPUArray):
            drv.memset_d8(_ptr(acc_out), 0, acc_out.nbytes)
        else:
            acc_out[...] = 0.0
        return
    dtype = PRECISIONS[precision]
    local_d = _on_device(pos_local, np.float64, "pos_local")
    all_d = _on_device(pos_all, np.float64, "pos_all")
    mass_d = _on_device(mass_all, np.float64, "mass_all")
    targets, sources = empty((n, 4), dtype), empty((n_all, 4), dtype)
    nbody_pack_device(local_d, None, targets)
    nbody_pack_device(all_d, mass_d, sources)
    acc_d = _on_device(acc_out, np.float64, "acc_out") if isinstance(acc_out, GPUArray) \
        else empty((3, n))
    nbody_accel_bodies_device(targets, sources, eps2, acc_d)
    _copy_back(acc_out, acc_d)
    _finish(pos_local, pos_all, mass_all)


def nbody_potential(pos_local: Any, mass_local: Any, offset: int, pos_all: Any, mass_all: Any,
                    eps2: float) -> float:
    """Potential energy share of the local bodies (global indices offset, offset+1, ...),
    as numpy_backend.nbody_potential (float64, to round-off)."""
    _check_nbody_shapes(pos_local, pos_all, mass_all)
    n, n_all = pos_local.shape[1], pos_all.shape[1]
    if tuple(mass_local.shape) != (n,):
        raise ValueError("mass_local must have one entry per column of pos_local")
    if offset < 0 or offset + n > n_all:
        raise ValueError("the local bodies must be pos_all[:, offset:offset + n]")
    if n == 0:
        return 0.0
    local_d = _on_device(pos_local, np.float64, "pos_local")
    all_d = _on_device(pos_all, np.float64, "pos_all")
    mass_d = _on_device(mass_all, np.float64, "mass_all")
    targets, sources = empty((n, 4)), empty((n_all, 4))
    nbody_pack_device(local_d, None, targets)
    nbody_pack_device(all_d, mass_d, sources)
    pot = empty(n)
    _function("nbody", "nbody_potential_f64").prepared_call(
        (_blocks(n, NBODY_TILE), 1), (NBODY_TILE, 1, 1), _ptr(targets), _ptr(sources),
        _ptr(pot), float(eps2), n, n_all, int(offset))
    m = mass_local.get() if isinstance(mass_local, GPUArray) else np.asarray(mass_local)
    return float(np.dot(-0.5 * m, pot.get()))


def nbody_kick_device(vel: GPUArray, acc: GPUArray, h: float) -> None:
    """vel += h * acc, rounded as numpy's ``vel += h * acc``."""
    _require(np.float64, vel=vel, acc=acc)
    if vel.shape != acc.shape:
        raise ValueError("vel and acc must have the same shape")
    if vel.size:
        _function("nbody", "nbody_kick").prepared_call(
            (_blocks(vel.size, BLOCK), 1), (BLOCK, 1, 1), _ptr(vel), _ptr(acc), float(h),
            vel.size)


def nbody_drift_device(pos_all: GPUArray, vel: GPUArray, dt: float, first: int) -> None:
    """pos_all[:, first:first + n] += dt * vel for vel (3, n), rounded as numpy's
    ``pos + dt * vel``."""
    _require(np.float64, pos_all=pos_all, vel=vel)
    n, n_all = vel.shape[1], pos_all.shape[1]
    if vel.shape[0] != 3 or pos_all.shape[0] != 3 or not 0 <= first <= n_all - n:
        raise ValueError("vel must be (3, n) and fit into pos_all (3, N) at first")
    if n:
        _function("nbody", "nbody_drift").prepared_call(
            (_blocks(3 * n, BLOCK), 1), (BLOCK, 1, 1), _ptr(pos_all), _ptr(vel), float(dt), n,
            n_all, first)


# --------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------

def kmeans_assign(points: Any, centroids: Any, labels_out: Any) -> float:
    """Label each point (n, d) with its nearest centroid (k, d); return the inertia.
    Labels equal numpy_backend.kmeans_assign's (same rounding, ties to the lowest index)."""
    n, d = points.shape
    k = centroids.shape[0]
    if centroids.shape[1] != d:
        raise ValueError("points and centroids must have the same number of columns")
    if tuple(labels_out.shape) != (n,):
        raise ValueError("labels_out must have one entry per point")
    if k == 0:
        raise ValueError("need at least one centroid")
    _check_output(labels_out, np.int64, "labels_out")
    _fits_int32(n, k * d)
    if n == 0:
        return 0.0
    points_d = _on_device(points, np.float64, "points")
    centroids_d = _on_device(centroids, np.float64, "centroids")
    labels_d = (_on_device(labels_out, np.int64, "labels_out")
                if isinstance(labels_out, GPUArray) else empty(n, np.int64))
    blocks = _blocks(n, BLOCK)
    partials = scratch("kmeans_inertia", blocks, np.float64)
    staged = k * d * 8 <= MAX_STATIC_SHARED
    _function("kmeans", "kmeans_assign").prepared_call(
        (blocks, 1), (BLOCK, 1, 1), _ptr(points_d), _ptr(centroids_d), _ptr(labels_d),
        _ptr(partials), n, d, k, int(staged), shared_size=k * d * 8 if staged else 0)
    inertia = float(partials.get().sum())  # waits for the kernel
    _copy_back(labels_out, labels_d)
    return inertia


def kmeans_accumulate(points: Any, labels: Any, sums_out: Any, counts_out: Any) -> None:
    """Zero ``sums_out`` (k, d) and ``counts_out`` (k,), then add each point to its cluster.
    Host labels outside [0, k) raise ValueError as in numpy_backend; device labels are
    trusted (they come from kmeans_assign) and out-of-range ones are not counted."""
    n, d = points.shape
    k = sums_out.shape[0]
    if tuple(labels.shape) != (n,):
        raise ValueError("labels must have one entry per point")
    if tuple(sums_out.shape) != (k, d) or tuple(counts_out.shape) != (k,):
        raise ValueError("sums_out must be (k, d) and counts_out (k,)")
    if isinstance(labels, np.ndarray):
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"label {labels[i]} of point {i} is not in [0, {k})")
    _check_output(sums_out, np.float64, "sums_out")
    _check_output(counts_out, np.int64, "counts_out")
    _fits_int32(n, k * d)
    sums_d = (_on_device(sums_out, np.float64, "sums_out")
              if isinstance(sums_out, GPUArray) else empty((k, d)))
    counts_d = (_on_device(counts_out, np.int64, "counts_out")
                if isinstance(counts_out, GPUArray) else empty(k, np.int64))
    if n == 0:
        drv.memset_d8(_ptr(sums_d), 0, sums_d.nbytes)
        drv.memset_d8(_ptr(counts_d), 0, counts_d.nbytes)
    else:
        points_d = _on_device(points, np.float64, "points")
        labels_d = _on_device(labels, np.int64, "labels")
        blocks = _blocks(n, KMEANS_CHUNK)
        part_sums = scratch("kmeans_part_sums", blocks * k * d, np.float64)
        part_counts = scratch("kmeans_part_counts", blocks * k, np.int64)
        _function("kmeans", "kmeans_partial_sums").prepared_call(
            (blocks, 1), (BLOCK, 1, 1), _ptr(points_d), _ptr(labels_d), _ptr(part_sums),
            _ptr(part_counts), n, d, k)
        _function("kmeans", "kmeans_reduce_partials").prepared_call(
            (_blocks(k * d, BLOCK), 1), (BLOCK, 1, 1), _ptr(part_sums), _ptr(part_counts),
            _ptr(sums_d), _ptr(counts_d), blocks, d, k)
    _copy_back(sums_out, sums_d)
    _copy_back(counts_out, counts_d)
    _finish(points, labels)


def kmeans_update_device(sums: GPUArray, counts: GPUArray, centroids: GPUArray) -> None:
    """centroids = sums / counts for clusters with members (numpy's rounding); empty
    clusters keep their centroid."""
    _require(np.float64, sums=sums, centroids=centroids)
    _require(np.int64, counts=counts)
    k, d = centroids.shape
    if sums.shape != (k, d) or counts.shape != (k,):
        raise ValueError("sums must be (k, d) and counts (k,) for centroids (k, d)")
    _function("kmeans", "kmeans_update").prepared_call(
        (_blocks(k * d, BLOCK), 1), (BLOCK, 1, 1), _ptr(sums), _ptr(counts), _ptr(centroids),
        d, k)
