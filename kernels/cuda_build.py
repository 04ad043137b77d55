"""Compile the CUDA kernels (kernels/cuda/*.cu) with nvcc, once, into an on-disk cache.

No PyCUDA and no GPU needed here: CI uses this module to compile every kernel to PTX, and
the CUDA backend (kernels/cuda_backend.py) to get a cubin for the device it runs on.

A build is cached under ``$HPC_CUDA_CACHE`` (default ``~/.cache/hpc-suite/cuda``) in a
file named after the source, the target architecture and a digest of everything that
shapes the output: the source, the headers beside it and the nvcc flags. A later process
(the next run, another rank) loads the cached file without calling nvcc. Builds are
written to a temporary file and renamed into place, under a lock, so ranks that start at
the same time compile once and never read a half-written file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "cuda"
# -O3: optimise host and device code. --ftz=true: float32 denormals flush to zero (only
# the float32 n-body kernel has float32 arithmetic; float64 is never flushed).
# -lineinfo: source lines for profilers (Nsight Compute), free at run time.
NVCC_FLAGS = ("-O3", "--ftz=true", "-lineinfo")
# Launch geometry compiled into the kernels (-D) and used by the launches in
# kernels/cuda_backend.py: one definition for both sides.
GEOMETRY = {
    "HEAT_ROWS": 32,  # rows each heat2d thread walks down
    "NBODY_TILE": 128,  # bodies per n-body tile = threads per block
    "KMEANS_CHUNK": 2048,  # points per block in the k-means sums
}
# Each kernel's arguments in PyCUDA's Function.prepare format: P pointer, Q uint64,
# d double, f float, i int32. Pointers come first in every kernel, so the packed
# arguments have the C parameter layout (tests/test_cuda.py checks these against the PTX).
KERNEL_SIGNATURES = {
    "pi": {"pi_count_hits": "QQQP"},
    "heat2d": {"heat2d_step": "PPii", "heat2d_step_residual": "PPPii",
               "heat2d_pack_edges": "PPii", "heat2d_unpack_halo": "PPiii"},
    "nbody": {"nbody_accel_f64": "PPPdiii", "nbody_accel_f32": "PPPfiii",
              "nbody_potential_f64": "PPPdiii", "nbody_pack_f64": "PPPii",
              "nbody_pack_f32": "PPPii", "nbody_kick": "PPdi", "nbody_drift": "PPdiii"},
    "kmeans": {"kmeans_assign": "PPPPiiii", "kmeans_partial_sums": "PPPPiii",
               "kmeans_reduce_partials": "PPPPiii", "kmeans_update": "PPPii"},
}
KINDS = ("cubin", "ptx")
NVCC_TIMEOUT = 300  # seconds; one kernel file compiles in a few seconds


class CudaBuildError(RuntimeError):
    """nvcc is missing or failed; the message says which and shows its output."""


def find_nvcc() -> str | None:
    """``$HPC_NVCC``, else nvcc on PATH, else under ``$CUDA_HOME`` or /usr/local/cuda."""
    explicit = os.environ.get("HPC_NVCC")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(Path(root, "bin", "nvcc"), os.X_OK):
            return str(Path(root, "bin", "nvcc"))
    return None


def kernel_sources() -> list[Path]:
    """Every kernel file, in a fixed order."""
    return sorted(SOURCE_DIR.glob("*.cu"))


def source_path(name: str) -> Path:
    """The .cu file of kernel group ``name`` (``"heat2d"`` -> kernels/cuda/heat2d.cu)."""
    path = SOURCE_DIR / f"{name}.cu"
    if not path.is_file():
        known = ", ".join(p.stem for p in kernel_sources())
        raise ValueError(f"no CUDA kernel file {path.name}; known: {known}")
    return path


def arch_of(compute_capability: tuple[int, int]) -> str:
    """nvcc's name for a device of compute capability (major, minor): (9, 0) -> "sm_90"."""
    major, minor = compute_capability
    return f"sm_{major}{minor}"


def cache_dir() -> Path:
    explicit = os.environ.get("HPC_CUDA_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpc-suite" / "cuda"


def nvcc_flags() -> list[str]:
    return [*NVCC_FLAGS, *(f"-D{name}={value}" for name, value in GEOMETRY.items())]


def build_digest(source: Path, arch: str, kind: str) -> str:
    """Digest of what determines the build: source, sibling headers, flags, arch, kind."""
    h = hashlib.sha256()
    for part in (arch, kind, *nvcc_flags()):
        h.update(part.encode() + b"\0")
    h.update(source.read_bytes() + b"\0")
    for header in sorted(source.parent.glob("*.cuh")):  # what a kernel may #include
        h.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cached_path(source: Path, arch: str, kind: str = "cubin") -> Path:
    return cache_dir() / f"{source.stem}-{arch}-{build_digest(source, arch, kind)}.{kind}"


def nvcc_command(nvcc: str, source: Path, arch: str, kind: str, output: Path) -> list[str]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return [nvcc, f"-{kind}", f"-arch={arch}", *nvcc_flags(), "-o", str(output), str(source)]


def run_nvcc(source: Path, arch: str, kind: str, output: Path,
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Compile ``source`` into ``output``; raises CudaBuildError when nvcc fails."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise CudaBuildError(
            "nvcc not found (looked at $HPC_NVCC, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): "
            f"it is needed once to compile {source.name} for {arch}; install the CUDA "
            "toolkit or put nvcc on PATH")
    argv = nvcc_command(nvcc, source, arch, kind, output)
    argv[1:1] = list(extra)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=NVCC_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CudaBuildError(f"nvcc took over {NVCC_TIMEOUT} s on {source.name}") from None
    if done.returncode != 0:
        raise CudaBuildError(f"nvcc failed on {source.name} for {arch} "
                             f"(exit {done.returncode}):\n{done.stderr.strip()}")
    return done


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def compiled(source: Path, arch: str, kind: str = "cubin") -> Path:
    """Path of the cached build of ``source`` for ``arch``, compiling it if needed."""
    target = cached_path(source, arch, kind)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent):
        if target.is_file():  # another process built it while we waited for the lock
            return target
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            run_nvcc(source, arch, kind, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def missing_builds(arch: str) -> list[Path]:
    """The kernel sources that have no cached cubin for ``arch`` (nvcc needed for them)."""
    return [s for s in kernel_sources() if not cached_path(s, arch).is_file()]
