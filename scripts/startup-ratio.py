"""Start-up of `hpc run --np 2` against a bare mpiexec + mpi4py start (docs/PERFORMANCE.md).

Whole processes, interleaved in each round (the order rotates), the median of each
round's ratio to the bare start; also two floors: ranks that import numpy and nothing
else, and ranks that import numpy and h5py and nothing else. ``--old DIR`` adds the
same run of another source tree of the suite (its hpc and kernels folders, Cython
kernels built) through PYTHONPATH, for a before/after.

    .venv/bin/python scripts/startup-ratio.py [--rounds 30] [--old /tmp/old-tree]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--old", type=Path, help="another source tree, run as 'old'")
    args = parser.parse_args()
    python = sys.executable
    mpiexec = str(Path(python).parent / "mpiexec")
    out = Path(tempfile.mkdtemp())
    run = ["run", "pi", "--np", "2", "--samples", "1000", "--repeats", "1", "--warmup", "0",
           "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    commands = {
        "bare": ([mpiexec, "-n", "2", python, "-c", "from mpi4py import MPI"], env),
        "floor numpy": ([mpiexec, "-n", "2", python, "-c",
                         "import numpy; from mpi4py import MPI"], env),
        "floor": ([mpiexec, "-n", "2", python, "-c",
                   "import numpy, h5py; from mpi4py import MPI"], env),
        "hpc run": ([python, "-m", "hpc", *run, "--out", str(out / "new.h5")], env),
    }
    if args.old:
        commands["old hpc run"] = ([python, "-m", "hpc", *run, "--out", str(out / "old.h5")],
                                   {**env, "PYTHONPATH": str(args.old.resolve())})

    def seconds(name: str) -> float:
        argv, environ = commands[name]
        start = time.perf_counter()
        subprocess.run(argv, env=environ, cwd=out, check=True)
        return time.perf_counter() - start

    names = list(commands)
    for name in names:  # once each first: caches, byte code
        seconds(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(args.rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            times[name].append(seconds(name))
    print(f"bare: median {statistics.median(times['bare']):.3f} s over {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    for name in names[1:]:
        ratios = [t / b for t, b in zip(times[name], times["bare"], strict=True)]
        print(f"{name}: median {statistics.median(times[name]):.3f} s, ratio to bare: median "
              f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
