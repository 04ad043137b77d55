"""``hpc bench``: single-rank kernel throughput, beside the machine's own yardsticks.

Measured in the same run: the memory bandwidth of a STREAM-like triad (the ceiling of
the memory-bound heat2d stencil), and, when a C compiler is present, plain C versions of
heat2d and nbody built with -O3 -march=native -fno-math-errno (kernels/c/reference.c)
and the core's FP64 peak (chains of vector FMAs, the ceiling of nbody), so the kernels
are judged against C and against the physical limits of this machine, not against
numbers from elsewhere. Each kernel is printed as a fraction of its limit.
Every figure is the best of several timed calls after a warm-up call. Where CUDA is
usable, the CUDA kernels follow with their own yardsticks (hpc/bench_cuda.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc.errors import UserError
from hpc.show import format_table

C_SOURCE = Path(__file__).resolve().parent.parent / "kernels" / "c" / "reference.c"
# -fno-math-errno: sqrt becomes the bare instruction and gcc vectorises the n-body loop.
C_FLAGS = ("-O3", "-march=native", "-fno-math-errno")
# Bytes of memory traffic per heat2d site update: read u (its neighbours come from the
# cache), write out, and read out first (write-allocate).
HEAT2D_BYTES_PER_SITE = 24
# Flops per n-body interaction as the kernels compute it: 3 subtractions, r2 (3 mul +
# 3 add), sqrt, mul, division, and the three accumulations (3 mul + 3 add).
NBODY_FLOPS = 18


@dataclass
class Figure:
    workload: str
    backend: str
    size: int
    unit: str
    value: float


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: page faults, caches, lazy initialisation
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def triad_bandwidth(kernels: Any, n: int) -> float:
    """GB/s of a[i] = b[i] + s*c[i], counting 32 bytes per element: b, c, and a written
    and first read into the cache (write-allocate)."""
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    return 32 * n / best_seconds(lambda: kernels.triad(a, b, c, 3.0), 5) / 1e9


def bench_backend(name: str, kernels: Any, quick: bool) -> list[Figure]:
    slow = name == "numpy"
    n_grid = 1024 if quick else 4096
    n_bodies = 1024 if quick else 4096
    n_points = 200_000 if quick else 1_000_000
    n_samples = 1_000_000 if quick else (10_000_000 if slow else 100_000_000)
    reps = 2 if slow else 5

    u = np.random.default_rng(0).random((n_grid + 2, n_grid + 2))
    v = u.copy()
    t_heat = best_seconds(lambda: kernels.heat2d_step(u, v), reps)

    rng = np.random.default_rng(1)
    pos, mass = rng.random((3, n_bodies)), np.full(n_bodies, 1.0 / n_bodies)
    acc = np.empty_like(pos)
    t_nbody = best_seconds(lambda: kernels.nbody_accel(pos, pos, mass, 1e-4, acc), reps)

    k, dims = 8, 4
    points, centroids = rng.random((n_points, dims)), rng.random((k, dims))
    labels = np.empty(n_points, dtype=np.int64)
    t_kmeans = best_seconds(lambda: kernels.kmeans_assign(points, centroids, labels), reps)

    t_pi = best_seconds(lambda: kernels.pi_count_hits(1, 0, n_samples), reps)
    return [
        Figure("heat2d", name, n_grid, "MLUP/s", n_grid**2 / t_heat / 1e6),
        Figure("nbody", name, n_bodies, "Minteractions/s", n_bodies**2 / t_nbody / 1e6),
        Figure("kmeans", name, n_points, "Mdistances/s", n_points * k / t_kmeans / 1e6),
        Figure("pi", name, n_samples, "Msamples/s", n_samples / t_pi / 1e6),
    ]


def c_reference(quick: bool) -> tuple[list[Figure], str | None]:
    """Figures of plain C on this machine, or why there are none."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return [], "no C compiler (cc) found"
    if not C_SOURCE.exists():
        return [], f"{C_SOURCE} is missing"
    n = 1024 if quick else 4096
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "reference"
        build = subprocess.run([cc, *C_FLAGS, "-o", str(exe), str(C_SOURCE), "-lm"],
                               capture_output=True, text=True, check=False)
        if build.returncode != 0:
            return [], f"C reference did not compile: {build.stderr.strip()[:300]}"
        figures = []
        for workload, size, steps in (("heat2d", n, 20), ("nbody", n, 5),
                                      ("peak", 50 if quick else 400, 5)):
            out = subprocess.run([str(exe), workload, str(size), str(steps)],
                                 capture_output=True, text=True, check=False, timeout=600)
            if out.returncode != 0:
                return figures, f"C reference {workload} failed: {out.stderr.strip()[:300]}"
            line = json.loads(out.stdout.strip().splitlines()[-1])
            figures.append(Figure(line["workload"], "c", int(line["size"]), line["unit"],
                                  float(line["value"])))
    return figures, None


def run_bench(quick: bool = False, c_reference_wanted: bool = True,
              progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    from kernels import load_backend

    figures: list[Figure] = []
    bandwidth_kernels = load_backend("numpy")
    for name in ("cython", "numpy"):
        try:
            kernels = load_backend(name)
        except ImportError as exc:
            progress(f"skipping {name}: {exc}")
            continue
        if name == "cython":
            bandwidth_kernels = kernels
        progress(f"benchmarking the {name} kernels ...")
        figures += bench_backend(name, kernels, quick)
    progress("measuring memory bandwidth (triad) ...")
    bandwidth = triad_bandwidth(bandwidth_kernels, 2**22 if quick else 2**25)
    reference, why_not = ([], "skipped (--no-c)")
    if c_reference_wanted:
        progress("compiling and running the plain C reference ...")
        reference, why_not = c_reference(quick)
    from hpc.bench_cuda import cuda_section

    peak = [f for f in reference if f.workload == "fp64_peak"]
    reference = [f for f in reference if f.workload != "fp64_peak"]
    limits = {
        "memory_bandwidth_GBps": bandwidth,
        "heat2d_MLUPs": bandwidth * 1e3 / HEAT2D_BYTES_PER_SITE,
        "fp64_peak_GFLOPs": peak[0].value if peak else None,
        "nbody_Minteractions": peak[0].value * 1e3 / NBODY_FLOPS if peak else None,
    }
    return {
        "kernels": [asdict(f) for f in figures],
        "memory_bandwidth_GBps": bandwidth,
        "c_reference": [asdict(f) for f in reference],
        "c_reference_flags": " ".join(C_FLAGS),
        "c_reference_note": why_not,
        "limits": limits,
        "fraction_of_limit": fractions_of_limit(figures + reference, limits),
        "cuda": cuda_section(quick, progress),
    }


def fractions_of_limit(figures: list[Figure], limits: dict[str, Any]) -> list[dict[str, Any]]:
    """heat2d against the memory-bandwidth bound, nbody against the FP64 peak."""
    bound = {"heat2d": limits["heat2d_MLUPs"], "nbody": limits["nbody_Minteractions"]}
    return [{"workload": f.workload, "backend": f.backend, "size": f.size,
             "fraction": f.value / bound[f.workload]}
            for f in figures if bound.get(f.workload)]


def ratios_to_c(report: dict[str, Any]) -> dict[str, float]:
    """Cython figure / C figure, for the workloads C was measured on."""
    c = {f["workload"]: f for f in report["c_reference"]}
    return {f["workload"]: f["value"] / c[f["workload"]]["value"]
            for f in report["kernels"]
            if f["backend"] == "cython" and f["workload"] in c
            and f["size"] == c[f["workload"]]["size"]}


def cmd_bench(as_json: bool = False, quick: bool = False, c_reference: bool = True,
              sections: str = "all", nranks: int = 2) -> int:
    """``sections``: "all", "kernels" (--no-mpi) or "mpi" (--mpi)."""
    from hpc.bench_mpi import format_mpi_section, mpi_section

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if sections != "kernels" and nranks < 2:
        raise UserError(f"the MPI section of hpc bench needs --np 2 or more, got {nranks}")
    report: dict[str, Any] = {}
    if sections != "mpi":
        report = run_bench(quick, c_reference, progress)
        report["cython_over_c"] = ratios_to_c(report)
    if sections != "kernels":
        report["mpi"] = mpi_section(nranks, quick, _fastest_cpu_backend(), progress)
        if sections == "mpi" and "note" in report["mpi"]:
            raise UserError(f"hpc bench --mpi: {report['mpi']['note']}")  # nothing measured
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    if sections != "mpi":
        print(format_kernel_sections(report))
    if sections != "kernels":
        print(f"\n{format_mpi_section(report['mpi'])}")
    return 0


def format_kernel_sections(report: dict[str, Any]) -> str:
    ratios = report["cython_over_c"]
    limit = {(f["workload"], f["backend"], f["size"]): f["fraction"]
             for f in report["fraction_of_limit"]}
    rows = [(f["workload"], f["backend"], str(f["size"]), f"{f['value']:.1f}", f["unit"],
             f"{ratios[f['workload']]:.0%}" if f["backend"] == "cython"
             and f["workload"] in ratios else "",
             _percent(limit.get((f["workload"], f["backend"], f["size"]))))
            for f in report["kernels"] + report["c_reference"]]
    lines = [format_table(rows, ("workload", "backend", "size", "value", "unit", "vs C",
                                 "of limit"))]
    limits = report["limits"]
    lines.append(f"\nlimits on this machine (one core, measured in this run):\n"
                 f"  memory bandwidth (triad, write-allocate counted): "
                 f"{limits['memory_bandwidth_GBps']:.1f} GB/s -> heat2d at most "
                 f"{limits['heat2d_MLUPs']:.0f} MLUP/s ({HEAT2D_BYTES_PER_SITE} bytes per site "
                 "update: read u, write out and read it first)")
    if limits["fp64_peak_GFLOPs"]:
        lines.append(f"  FP64 peak (vector FMA chains, kernels/c/reference.c peak): "
                     f"{limits['fp64_peak_GFLOPs']:.1f} GFLOP/s -> nbody at most "
                     f"{limits['nbody_Minteractions']:.0f} Minteractions/s ({NBODY_FLOPS} "
                     "flops per interaction, sqrt and division counted as one each)")
    lines.append(f"C reference built with: cc {report['c_reference_flags']}")
    if report["c_reference_note"]:
        lines.append(f"C reference: {report['c_reference_note']}")
    from hpc.bench_cuda import format_cuda_section

    lines.append(f"\n{format_cuda_section(report['cuda'])}")
    return "\n".join(lines)


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return ""
    return f"{fraction:.0%}" if fraction >= 0.1 else f"{fraction:.1%}"


def _fastest_cpu_backend() -> str:
    from kernels import load_backend

    try:
        load_backend("cython")
    except ImportError:
        return "numpy"  # not built: the halo is still measured, with slower updates
    return "cython"
