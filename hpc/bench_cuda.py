"""The CUDA part of ``hpc bench``: kernel throughput beside the device's own yardsticks.

Measured in the same run, on the device the kernels run on: the device-to-device copy
bandwidth (cuMemcpyDtoD, counting the bytes read and written), the reference for the
memory-bound heat2d stencil at one read and one write of 8 bytes per site update; and the
FP32 peak from the device's attributes (multiprocessors x FP32 lanes x 2 x clock), the
reference for the float32 n-body kernel at 20 flops per interaction. The n-body kernels are
also set against the Cython backend on one CPU core at the same N.

Kernel times come from CUDA events around the launches, the best of several after a
warm-up launch. The bar (issue 5) is evaluated at full size only, not with --quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

# The performance bar: heat2d at 70% of the copy bandwidth, float32 n-body at 40% of the
# FP32 peak, and n-body at N = 65536 at least 20x the Cython backend on one core.
BAR_HEAT2D_OF_COPY = 0.70
BAR_NBODY_F32_OF_PEAK = 0.40
BAR_NBODY_OVER_CYTHON = 20.0
NBODY_FLOPS = 20  # per interaction, the customary count (GPU Gems 3, ch. 31)


def event_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Best device time of ``fn`` (its launches, timed by CUDA events) after a warm-up."""
    import pycuda.driver as drv

    fn()
    start, end = drv.Event(), drv.Event()
    best = float("inf")
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, end.time_since(start) * 1e-3)
    return best


def copy_bandwidth(cu: Any, nbytes: int) -> float:
    """GB/s of a device-to-device copy, counting bytes read plus bytes written."""
    import pycuda.driver as drv

    src, dst = cu.zeros(nbytes // 8), cu.empty(nbytes // 8)
    seconds = event_seconds(lambda: drv.memcpy_dtod(dst.gpudata, src.gpudata, src.nbytes), 10)
    return 2 * src.nbytes / seconds / 1e9


def heat2d_rates(cu: Any, n: int, steps: int) -> dict[str, float]:
    """Site updates per second of heat2d_step and heat2d_step_residual on an n x n grid."""
    u, v = cu.zeros((n + 2, n + 2)), cu.zeros((n + 2, n + 2))

    def sweep(step: Callable[[Any, Any], Any]) -> None:
        a, b = u, v
        for _ in range(steps):
            step(a, b)
            a, b = b, a

    return {name: n * n * steps / event_seconds(lambda s=step: sweep(s), 3)
            for name, step in (("step", cu.heat2d_step),
                               ("step_residual", cu.heat2d_step_residual))}


def nbody_rates(cu: Any, n: int) -> dict[str, float]:
    """Interactions per second of the float64 and float32 kernels, all n on all n."""
    rng = np.random.default_rng(5)
    pos, mass = cu.to_device(rng.random((3, n))), cu.to_device(np.full(n, 1.0 / n))
    acc = cu.empty((3, n))
    rates = {}
    for precision, dtype in cu.PRECISIONS.items():
        bodies = cu.empty((n, 4), dtype)
        cu.nbody_pack_device(pos, mass, bodies)
        seconds = event_seconds(lambda b=bodies: cu.nbody_accel_bodies_device(b, b, 1e-4, acc),
                                3)
        rates[precision] = n * n / seconds
    return rates


def cython_nbody_rate(n: int, targets: int) -> float | None:
    """Interactions per second of the Cython kernel on one core at N = n, timed on the
    first ``targets`` bodies (each still summing over all n: the same inner loop, a
    fraction of the wait). None when the Cython kernels are not built."""
    from kernels import load_backend

    try:
        cb = load_backend("cython")
    except ImportError:
        return None
    rng = np.random.default_rng(5)
    pos, mass = rng.random((3, n)), np.full(n, 1.0 / n)
    local = np.ascontiguousarray(pos[:, :targets])
    acc = np.empty_like(local)
    cb.nbody_accel(local, pos, mass, 1e-4, acc)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        cb.nbody_accel(local, pos, mass, 1e-4, acc)
        best = min(best, time.perf_counter() - t0)
    return targets * n / best


def pi_rate(cu: Any, samples: int) -> float:
    seconds = event_seconds(lambda: cu.pi_count_hits(1, 0, samples), 3)
    return samples / seconds


def kmeans_rate(cu: Any, n: int, k: int = 8, dims: int = 4) -> float:
    """Point-centroid distances per second of kmeans_assign."""
    rng = np.random.default_rng(6)
    points, centroids = cu.to_device(rng.random((n, dims))), cu.to_device(rng.random((k, dims)))
    labels = cu.empty(n, np.int64)
    return n * k / event_seconds(lambda: cu.kmeans_assign(points, centroids, labels), 3)


def _figure(workload: str, backend: str, size: int, unit: str, value: float) -> dict:
    return {"workload": workload, "backend": backend, "size": size, "unit": unit,
            "value": value}


def cuda_section(quick: bool = False,
                 progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The CUDA figures, or {"skipped": why} where CUDA is unusable."""
    from hpc.gpu import bind_device, probe

    status = probe()
    if not status.available:
        return {"skipped": status.reason}
    session = bind_device()
    from kernels import load_backend

    cu = load_backend("cuda")
    progress(f"CUDA: {session.info['name']}; compiling/loading kernels ...")
    cu.load_all()
    n_grid, n_bodies = (2048, 8192) if quick else (16384, 65536)
    progress("CUDA: device copy bandwidth ...")
    copy = copy_bandwidth(cu, 2**26 if quick else 2**30)
    progress(f"CUDA: heat2d {n_grid}^2 ...")
    heat = heat2d_rates(cu, n_grid, 10)
    progress(f"CUDA: nbody N={n_bodies}, float64 and float32 ...")
    nbody = nbody_rates(cu, n_bodies)
    progress(f"CUDA: nbody N={n_bodies} on one CPU core (Cython) ...")
    cython = cython_nbody_rate(n_bodies, 256 if quick else 2048)
    progress("CUDA: pi and kmeans ...")
    samples, points = (2**24, 10**6) if quick else (2**30, 10**7)
    pi, kmeans = pi_rate(cu, samples), kmeans_rate(cu, points)
    cu.release()

    heat_of_copy = 16 * heat["step"] / 1e9 / copy
    f32_gflops = NBODY_FLOPS * nbody["float32"] / 1e9
    peak = session.info["fp32_peak_GFLOPs"]
    f32_of_peak = f32_gflops / peak if peak else None
    over_cython = ({p: r / cython for p, r in nbody.items()} if cython else {})
    full = not quick
    return {
        "device": session.info,
        "copy_bandwidth_GBps": copy,
        "kernels": [
            _figure("heat2d", "cuda", n_grid, "MLUP/s", heat["step"] / 1e6),
            _figure("heat2d+residual", "cuda", n_grid, "MLUP/s", heat["step_residual"] / 1e6),
            _figure("nbody", "cuda", n_bodies, "Minteractions/s", nbody["float64"] / 1e6),
            _figure("nbody", "cuda-f32", n_bodies, "Minteractions/s", nbody["float32"] / 1e6),
            _figure("kmeans", "cuda", points, "Mdistances/s", kmeans / 1e6),
            _figure("pi", "cuda", samples, "Msamples/s", pi / 1e6),
        ],
        "heat2d_GBps_at_16_bytes_per_site": 16 * heat["step"] / 1e9,
        "heat2d_fraction_of_copy": heat_of_copy,
        "nbody_f32_GFLOPs_at_20_flops": f32_gflops,
        "nbody_f32_fraction_of_fp32_peak": f32_of_peak,
        "nbody_cython_one_core_Minteractions": cython / 1e6 if cython else None,
        "nbody_speedup_over_cython": over_cython,
        "bar": {
            "heat2d_70pct_of_copy": heat_of_copy >= BAR_HEAT2D_OF_COPY if full else None,
            "nbody_f32_40pct_of_fp32_peak": (f32_of_peak >= BAR_NBODY_F32_OF_PEAK
                                             if full and f32_of_peak is not None else None),
            "nbody_65536_20x_cython": (over_cython["float64"] >= BAR_NBODY_OVER_CYTHON
                                       if full and over_cython else None),
        },
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def format_cuda_section(cuda: dict[str, Any]) -> str:
    """The human-readable CUDA part of `hpc bench`."""
    from hpc.show import format_table

    if "skipped" in cuda:
        return f"CUDA: skipped: {cuda['skipped']}"
    dev = cuda["device"]
    rows = [(f["workload"], f["backend"], str(f["size"]), f"{f['value']:.1f}", f["unit"])
            for f in cuda["kernels"]]
    speedup = cuda["nbody_speedup_over_cython"]
    bar = {k: ("not evaluated (--quick)" if v is None else "PASS" if v else "FAIL")
           for k, v in cuda["bar"].items()}
    lines = [
        f"CUDA device: {dev['name']} (sm {dev['compute_capability']}, "
        f"{dev['multiprocessors']} SMs at {dev['clock_MHz']:.0f} MHz, "
        f"{dev['memory_GiB']:.0f} GiB)",
        format_table(rows, ("workload", "backend", "size", "value", "unit")),
        f"device copy bandwidth (read + write): {cuda['copy_bandwidth_GBps']:.0f} GB/s "
        f"(theoretical {dev['memory_bandwidth_theoretical_GBps']:.0f} GB/s)",
        f"heat2d: {cuda['heat2d_GBps_at_16_bytes_per_site']:.0f} GB/s at 16 bytes per site = "
        f"{_pct(cuda['heat2d_fraction_of_copy'])} of the copy bandwidth "
        f"[bar 70%: {bar['heat2d_70pct_of_copy']}]",
        f"nbody float32: {cuda['nbody_f32_GFLOPs_at_20_flops']:.0f} GFLOP/s at 20 flops per "
        f"interaction = {_pct(cuda['nbody_f32_fraction_of_fp32_peak'])} of the FP32 peak "
        f"{dev['fp32_peak_GFLOPs'] or float('nan'):.0f} GFLOP/s "
        f"[bar 40%: {bar['nbody_f32_40pct_of_fp32_peak']}]",
    ]
    if speedup:
        lines.append(
            f"nbody vs Cython on one core ({cuda['nbody_cython_one_core_Minteractions']:.0f} "
            f"Minteractions/s): float64 {speedup['float64']:.0f}x, float32 "
            f"{speedup['float32']:.0f}x [bar 20x: {bar['nbody_65536_20x_cython']}]")
    else:
        lines.append("nbody vs Cython: Cython kernels not built")
    return "\n".join(lines)
