"""GPUs for MPI ranks: can CUDA run here (and if not, why), which device a rank takes,
whether the MPI library reads device memory, and what the run record says about it.

* ``probe()`` answers "is CUDA usable?" with the first thing that is missing: PyCUDA, the
  NVIDIA driver, a device, or nvcc for kernels not yet compiled.
* ``bind_device(comm)`` gives each rank a device by its node-local rank (an MPI
  shared-memory split), round-robin over the devices it may use, so ranks on one node
  share a GPU when there are more ranks than GPUs. ``CUDA_VISIBLE_DEVICES`` (Slurm sets
  it for ``--gpus``/``--gres``) already limits what CUDA shows a process; without it,
  Slurm's ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS``/``GPU_DEVICE_ORDINAL`` name the devices.
* ``cuda_aware_mpi()`` asks the MPI library itself (``MPIX_Query_cuda_support``, which
  Open MPI and MPICH export) and never assumes; ``HPC_CUDA_AWARE_MPI=0|1`` overrides.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc.errors import UserError

AWARE_ENV = "HPC_CUDA_AWARE_MPI"
SLURM_GPU_LISTS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL")
INSTALL_HINT = "pip install '.[cuda]' (PyCUDA builds against the CUDA toolkit)"


# --------------------------------------------------------------------------------------
# Is CUDA usable here?
# --------------------------------------------------------------------------------------

@dataclass
class CudaStatus:
    """What ``probe`` found; ``reason`` says why CUDA is unusable (None when usable)."""

    available: bool
    reason: str | None
    pycuda: str | None = None
    driver_version: str | None = None
    driver_cuda_version: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    nvcc: str | None = None


def _visible_devices_note(environ: Mapping[str, str]) -> str:
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return ""
    return f" (CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r} limits what CUDA shows)"


def probe(environ: Mapping[str, str] | None = None) -> CudaStatus:
    """Find out whether the CUDA backend can run in this process, without a context."""
    env = os.environ if environ is None else environ
    from kernels import cuda_build

    status = CudaStatus(False, None, nvcc=cuda_build.find_nvcc())
    if importlib.util.find_spec("pycuda") is None:
        status.reason = f"PyCUDA is not installed: {INSTALL_HINT}"
        return status
    try:
        import pycuda
        import pycuda.driver as drv
    except (ImportError, OSError) as exc:
        if "libcuda" in str(exc):
            status.reason = f"no NVIDIA driver: PyCUDA cannot load the driver library ({exc})"
        else:
            status.reason = f"PyCUDA is installed but does not import: {exc}"
        return status
    status.pycuda = pycuda.VERSION_TEXT
    try:
        drv.init()
        count = drv.Device.count()
    except drv.Error as exc:
        status.reason = (f"the NVIDIA driver found no usable device: {exc}"
                         f"{_visible_devices_note(env)}")
        return status
    status.driver_version = driver_version()
    status.driver_cuda_version = _cuda_version_text(drv.get_driver_version())
    if count == 0:
        status.reason = f"no CUDA device visible{_visible_devices_note(env)}"
        return status
    status.devices = [describe_device(drv.Device(i)) for i in range(count)]
    if status.nvcc is None:
        arches = {d["arch"] for d in status.devices}
        missing = [s.name for a in sorted(arches) for s in cuda_build.missing_builds(a)]
        if missing:
            status.reason = (f"nvcc not found, and {', '.join(missing)} not yet compiled for "
                             f"{', '.join(sorted(arches))} in {cuda_build.cache_dir()}: put the "
                             "CUDA toolkit's nvcc on PATH (or set HPC_NVCC)")
            return status
    status.available = True
    return status


def require_cuda() -> CudaStatus:
    """The probe's result, or UserError saying what is missing (exit code 2)."""
    status = probe()
    if not status.available:
        raise UserError(f"CUDA backend unavailable: {status.reason}")
    choose_device(0, len(status.devices), os.environ)  # bad Slurm GPU lists fail here
    forced_cuda_aware(os.environ)  # and so does a bad HPC_CUDA_AWARE_MPI
    return status


def _cuda_version_text(version: int) -> str:
    """cuDriverGetVersion's 13000 -> "13.0"."""
    return f"{version // 1000}.{version % 1000 // 10}"


def driver_version() -> str:
    """The NVIDIA driver's release (e.g. 580.159.04), or "unknown"."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        text = ""
    match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    if match:
        return match.group(1)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.split()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "unknown"


def nvcc_version() -> str:
    """Release of the nvcc that compiles the kernels (e.g. 13.0.88), or "not found"."""
    from kernels import cuda_build

    nvcc = cuda_build.find_nvcc()
    if nvcc is None:
        return "not found"
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"release [\d.]+, V([\d.]+)", out)
    return match.group(1) if match else "unknown"


# FP32 and FP64 lanes per multiprocessor, by compute capability (NVIDIA's tuning guides):
# the peak arithmetic rate is lanes x multiprocessors x clock x 2 (a fused multiply-add).
FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
              (9, 0): 128, (10, 0): 128, (12, 0): 128}
FP64_LANES = {(7, 0): 32, (8, 0): 32, (9, 0): 64, (10, 0): 64}


def describe_device(dev: Any) -> dict[str, Any]:
    """Name, architecture and the attributes the benchmark's peaks come from."""
    import pycuda.driver as drv

    from kernels import cuda_build

    attr = drv.device_attribute
    cc = dev.compute_capability()
    sms = dev.get_attribute(attr.MULTIPROCESSOR_COUNT)
    clock_khz = dev.get_attribute(attr.CLOCK_RATE)
    mem_khz = dev.get_attribute(attr.MEMORY_CLOCK_RATE)
    bus_bits = dev.get_attribute(attr.GLOBAL_MEMORY_BUS_WIDTH)
    lanes32, lanes64 = FP32_LANES.get(cc), FP64_LANES.get(cc)
    return {
        "name": dev.name(),
        "pci_bus_id": dev.pci_bus_id(),
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "arch": cuda_build.arch_of(cc),
        "memory_GiB": round(dev.total_memory() / 2**30, 2),
        "multiprocessors": sms,
        "clock_MHz": clock_khz / 1e3,
        "fp32_peak_GFLOPs": sms * lanes32 * 2 * clock_khz / 1e6 if lanes32 else None,
        "fp64_peak_GFLOPs": sms * lanes64 * 2 * clock_khz / 1e6 if lanes64 else None,
        # Double data rate: two transfers per memory clock on the whole bus.
        "memory_bandwidth_theoretical_GBps": 2 * mem_khz * 1e3 * bus_bits / 8 / 1e9,
    }


# --------------------------------------------------------------------------------------
# Which device a rank takes
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceChoice:
    ordinal: int  # CUDA device ordinal in this process (after CUDA_VISIBLE_DEVICES)
    how: str  # why this one, for the run record


def parse_gpu_ids(text: str) -> list[int]:
    """Slurm's GPU index lists: "0,1,3", "0-3", "0-1,4"."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"not a GPU index list: {text!r}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise ValueError(f"not a GPU index list: {text!r}")
        ids.extend(range(lo, hi + 1))
    return ids


def choose_device(local_rank: int, device_count: int, environ: Mapping[str, str]) -> DeviceChoice:
    """The device of node-local rank ``local_rank``: round-robin over the usable devices.

    With CUDA_VISIBLE_DEVICES set, CUDA already shows only the allowed devices (as 0..n-1),
    so every one of them is usable. Otherwise the first of Slurm's lists that is set
    names the usable devices; else all ``device_count`` are usable.
    """
    if device_count < 1:
        raise UserError(f"no CUDA device visible{_visible_devices_note(environ)}")
    usable, source = list(range(device_count)), "all devices"
    if "CUDA_VISIBLE_DEVICES" in environ:
        source = f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}"
    else:
        for var in SLURM_GPU_LISTS:
            text = environ.get(var, "").strip()
            if not text:
                continue
            try:
                ids = parse_gpu_ids(text)
            except ValueError as exc:
                raise UserError(f"{var}: {exc}") from None
            outside = [i for i in ids if i >= device_count]
            if outside:
                raise UserError(f"{var}={text} names GPU(s) {outside}, but this process sees "
                                f"{device_count} device(s): set CUDA_VISIBLE_DEVICES instead")
            usable, source = ids, f"{var}={text}"
            break
    ordinal = usable[local_rank % len(usable)]
    return DeviceChoice(ordinal, f"node-local rank {local_rank} -> device {ordinal}, "
                                 f"round-robin over {len(usable)} ({source})")


def node_local_rank(comm: Any) -> tuple[int, int]:
    """(rank, size) among the ranks on this node: an MPI shared-memory split."""
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        return local.rank, local.size
    finally:
        local.Free()


def slurm_local_rank(environ: Mapping[str, str]) -> int:
    """The node-local rank without MPI (bench, `hpc cuda`): SLURM_LOCALID, else 0."""
    text = environ.get("SLURM_LOCALID", "")
    return int(text) if text.isdigit() else 0


# --------------------------------------------------------------------------------------
# Can the MPI library read device memory?
# --------------------------------------------------------------------------------------

def _loaded_mpi_libraries() -> list[str]:
    """Files of MPI libraries this process has loaded (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.rstrip().endswith(".so")
                     or ".so." in line}
    except OSError:
        return []
    return sorted(p for p in paths if Path(p).name.startswith(("libmpi", "libmpich")))


def forced_cuda_aware(environ: Mapping[str, str]) -> bool | None:
    """The user's HPC_CUDA_AWARE_MPI setting: True, False or None (not set: detect)."""
    text = environ.get(AWARE_ENV)
    if text is None:
        return None
    if text.strip().lower() in ("1", "yes", "true", "on"):
        return True
    if text.strip().lower() in ("0", "no", "false", "off"):
        return False
    raise UserError(f"{AWARE_ENV} must be 0 or 1 (or unset, to ask the MPI library), "
                    f"got {text!r}")


def cuda_aware_mpi(environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(whether MPI may be given device buffers, how that was decided). Needs MPI_Init.

    MPIX_Query_cuda_support() (Open MPI, MPICH and their derivatives) tells whether the
    library was built with CUDA support and has it on at run time. A library without the
    function is treated as not CUDA-aware: device data then goes through host buffers.
    """
    env = os.environ if environ is None else environ
    forced = forced_cuda_aware(env)
    if forced is not None:
        return forced, f"{AWARE_ENV}={env[AWARE_ENV]} (set by the user)"
    for path in _loaded_mpi_libraries():
        try:
            query = ctypes.CDLL(path).MPIX_Query_cuda_support
        except (OSError, AttributeError):
            continue
        query.restype, query.argtypes = ctypes.c_int, []
        value = query()
        return bool(value), f"MPIX_Query_cuda_support() = {value} in {Path(path).name}"
    return False, "the MPI library has no MPIX_Query_cuda_support: using host buffers"


# --------------------------------------------------------------------------------------
# One device per rank, for the whole process
# --------------------------------------------------------------------------------------

class GpuSession:
    """This process's device and CUDA context (the device's primary context, the one the
    CUDA runtime and so a CUDA-aware MPI library also use)."""

    def __init__(self, local_rank: int, local_size: int, cuda_aware: bool, aware_how: str):
        import pycuda.driver as drv

        drv.init()
        self.local_rank, self.local_size = local_rank, local_size
        self.choice = choose_device(local_rank, drv.Device.count(), os.environ)
        self.device = drv.Device(self.choice.ordinal)
        self.context = self.device.retain_primary_context()
        self.context.push()
        self.info = describe_device(self.device)
        self.cuda_aware, self.aware_how = cuda_aware, aware_how
        self._open = True

    def close(self) -> None:
        """Unload the kernels and pop the context (at exit; arrays must be freed first)."""
        if not self._open:
            return
        self._open = False
        import sys

        backend = sys.modules.get("kernels.cuda_backend")
        if backend is not None:
            backend.release()
        self.context.pop()

    def provenance(self, comm: Any | None = None) -> dict[str, Any]:
        """What the run record keeps about the GPUs (collective when ``comm`` is given;
        the full dict on rank 0, an empty one elsewhere)."""
        mine = (self.choice.ordinal, self.info["pci_bus_id"], self.info["name"],
                self.local_rank, self.choice.how)
        ranks = [mine] if comm is None else comm.gather(mine, root=0)
        if comm is not None and comm.rank != 0:
            return {}
        import pycuda
        import pycuda.driver as drv

        return {
            "device_name": self.info["name"],
            "compute_capability": self.info["compute_capability"],
            "driver_version": driver_version(),
            "driver_cuda_version": _cuda_version_text(drv.get_driver_version()),
            "pycuda_version": pycuda.VERSION_TEXT,
            "pycuda_cuda_version": ".".join(str(v) for v in drv.get_version()),
            "nvcc_version": nvcc_version(),
            "cuda_aware_mpi": self.cuda_aware,
            "cuda_aware_mpi_detection": self.aware_how,
            "rank_device_ordinal": [r[0] for r in ranks],
            "rank_device_pci_bus_id": [r[1] for r in ranks],
            "rank_device_name": [r[2] for r in ranks],
            "rank_node_local_rank": [r[3] for r in ranks],
            "rank_device_choice": [r[4] for r in ranks],
        }


_session: GpuSession | None = None


def bind_device(comm: Any | None = None) -> GpuSession:
    """Give this process its device (once; later calls return the same session).

    With ``comm`` (collective): node-local rank from an MPI shared-memory split, and the
    MPI library asked whether it is CUDA-aware. Without: SLURM_LOCALID or 0, host buffers.
    """
    global _session
    if _session is None:
        if comm is not None:
            local_rank, local_size = node_local_rank(comm)
            aware, how = cuda_aware_mpi()
        else:
            local_rank, local_size = slurm_local_rank(os.environ), 1
            aware, how = False, "no MPI communicator: host buffers"
        _session = GpuSession(local_rank, local_size, aware, how)
        atexit.register(_session.close)
    return _session
