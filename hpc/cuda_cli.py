"""``hpc cuda``: is the CUDA backend usable here, which device this process would take,
and (``--bench``) the CUDA benchmark alone. Exit code 2, with the reason, when CUDA is
unusable, so scripts can test for it: ``hpc cuda >/dev/null || echo no GPU``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any

from hpc.errors import UserError


def add_parsers(commands: argparse._SubParsersAction) -> None:
    cuda = commands.add_parser(
        "cuda", help="is the CUDA backend usable here (exit 2 and the reason if not)",
        description="Describe the CUDA devices, the device this process would use and the "
        "kernel cache; with --bench, run the CUDA benchmark alone. Exits with 2 and says "
        "what is missing (PyCUDA, the NVIDIA driver, a device, nvcc) when CUDA is unusable.")
    cuda.add_argument("--json", action="store_true", help="print one JSON object")
    cuda.add_argument("--bench", action="store_true",
                      help="also run the CUDA benchmark (copy bandwidth, heat2d, nbody "
                      "float64/float32 against the FP32 peak and Cython, kmeans, pi)")
    cuda.add_argument("--quick", action="store_true", help="small benchmark sizes")
    cuda.set_defaults(handler=cmd_cuda)


def describe() -> dict[str, Any]:
    """The probe, plus this process's device choice and the kernel cache (CUDA usable)."""
    from hpc.gpu import choose_device, require_cuda, slurm_local_rank
    from kernels import cuda_build

    status = require_cuda()
    local_rank = slurm_local_rank(os.environ)
    choice = choose_device(local_rank, len(status.devices), os.environ)
    cached = {d["arch"]: [s.name for s in cuda_build.kernel_sources()
                          if s not in cuda_build.missing_builds(d["arch"])]
              for d in status.devices}
    return asdict(status) | {
        "device_choice": {"local_rank": local_rank, "ordinal": choice.ordinal,
                          "how": choice.how},
        "kernel_cache": str(cuda_build.cache_dir()),
        "compiled_kernels": cached,
    }


def cmd_cuda(args: argparse.Namespace, argv: list[str]) -> int:
    report = describe()  # UserError (exit 2) when CUDA is unusable
    if args.bench:
        from hpc.bench_cuda import cuda_section

        report["bench"] = cuda_section(args.quick, lambda s: print(s, file=sys.stderr))
        if "skipped" in report["bench"]:
            raise UserError(f"CUDA benchmark skipped: {report['bench']['skipped']}")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"CUDA usable: PyCUDA {report['pycuda']}, driver {report['driver_version']} "
          f"(CUDA {report['driver_cuda_version']}), nvcc {report['nvcc'] or 'not found'}")
    for i, dev in enumerate(report["devices"]):
        print(f"  device {i}: {dev['name']} (sm {dev['compute_capability']}, "
              f"{dev['memory_GiB']:.0f} GiB, PCI {dev['pci_bus_id']})")
    print(f"this process: {report['device_choice']['how']}")
    print(f"kernel cache: {report['kernel_cache']}")
    if args.bench:
        from hpc.bench_cuda import format_cuda_section

        print(format_cuda_section(report["bench"]))
    return 0
