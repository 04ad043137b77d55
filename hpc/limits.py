"""Bounds on what a run may ask for, checked before anything starts.

Validation must stay quick whatever the input: a rank count of 2**62 once spent minutes
factoring a process grid before its error. So ranks, nodes, repeats and integers are
capped here first, and a job's memory is estimated from the workload's declared memory
model (``Workload.memory_bytes``) and compared with what the machine or the allocation has.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Any

from hpc.errors import UserError

MAX_RANKS = 1 << 20          # the largest machines run about 10**7 cores; MPI jobs far fewer
MAX_NODES = 1 << 18          # Fugaku has 158,976 nodes
MAX_TASKS_PER_NODE = 1 << 12
MAX_REPEATS = 100_000        # the timings array is repeats x ranks x phases
MAX_POINTS = 256             # points in one study's rank ladder
INT64_MAX = (1 << 63) - 1    # every integer ends up in HDF5 attributes and C kernels
# A rank is a Python process with numpy, mpi4py and h5py loaded: about 60-80 MB resident
# (measured with ps on these machines); the lower figure, so that no real run is refused.
RANK_OVERHEAD_BYTES = 60 * 2**20

_SLURM_MEM = re.compile(r"([1-9][0-9]{0,15})([KMGT]?)")
_MEM_UNITS = {"K": 2**10, "": 2**20, "M": 2**20, "G": 2**30, "T": 2**40}


def check_ranks(ranks: int, what: str = "--np") -> int:
    """``ranks`` as a rank count, or a UserError saying why not."""
    if isinstance(ranks, bool) or not isinstance(ranks, int):
        raise UserError(f"{what} must be a whole number of ranks, got {ranks!r}")
    if ranks < 1:
        raise UserError(f"{what} must be a positive number of ranks, got {ranks}")
    if ranks > MAX_RANKS:
        raise UserError(f"{what} {ranks} is beyond the {MAX_RANKS} ranks this suite runs")
    return ranks


def check_seconds(value: Any, what: str) -> float:
    """A positive, finite number of seconds (a timeout), or a UserError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{what} must be a positive, finite number of seconds, got {value!r}")
    return seconds


def available_memory() -> int:
    """Bytes of memory a new job can have on this machine now: Linux's MemAvailable (what
    can be allocated without swapping), else the whole physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# How check_memory names what it compared with: "... but only 1.0 GiB <where>".
HERE = "is available on this machine now"


def slurm_mem_bytes(mem: str) -> int:
    """Bytes in a Slurm --mem value (4000 = MB, 4G, 1T)."""
    m = _SLURM_MEM.fullmatch(str(mem).upper())
    if m is None:
        raise UserError(f"mem {mem!r} is malformed; e.g. 4G or 4000 (MB)")
    return int(m.group(1)) * _MEM_UNITS[m.group(2)]


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(cls: type, params: dict[str, Any], ranks: int, nodes: int,
                 node_memory: int, where: str = HERE) -> None:
    """Refuse a job whose busiest node needs more memory than ``node_memory`` bytes
    (``where`` completes "but only N GiB ...": hpc.limits.HERE, or the --mem asked for).

    The busiest node holds rank 0 (which gathers the result and may compute the serial
    reference) and its share of the other ranks.
    """
    per_rank, rank0_extra = cls.memory_bytes(params, ranks)
    on_node = math.ceil(ranks / max(1, nodes))
    need = on_node * (per_rank + RANK_OVERHEAD_BYTES) + rank0_extra
    if need > node_memory:
        size = f"--{cls.size_param.replace('_', '-')} {params[cls.size_param]}"
        raise UserError(
            f"{cls.name} {size} on {ranks} rank(s) needs about {_gib(need)} of memory on "
            f"one node (estimated from the workload's arrays and {on_node} rank(s) there), "
            f"but only {_gib(node_memory)} {where}; use a smaller size, fewer ranks per node "
            "or more nodes")


# argparse types: the same checks, so that a bad option fails as argparse usage (exit 2).
def rank_count(text: str) -> int:
    """argparse type of a rank count: a whole number from 1 to hpc.limits.MAX_RANKS."""
    try:
        return check_ranks(int(text), "the rank count")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    """argparse type of a timeout: positive, finite seconds (not nan, inf, 0 or -1)."""
    try:
        return check_seconds(float(text), "the time")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") \
            from None
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
