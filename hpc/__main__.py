"""`python -m hpc` is the same as the `hpc` command (and what mpiexec runs on each rank)."""

import sys

from hpc.cli import main

if __name__ == "__main__":
    sys.exit(main())
