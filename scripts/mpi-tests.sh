#!/usr/bin/env bash
# The MPI test suite (tests/mpi, pytest-mpi) under mpiexec, once per rank count given,
# e.g. `scripts/mpi-tests.sh 2 4`. More ranks than cores is fine (oversubscribed).
# Every run is bounded by a timeout so that a rank that fails before a collective can
# never hang CI; `python -m mpi4py` aborts all ranks when one raises.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${MPI_TEST_TIMEOUT:-900}
[ "$#" -gt 0 ] || set -- 2 4
for n in "$@"; do
  echo "== tests/mpi on $n ranks (timeout ${limit}s)"
  timeout --kill-after=15 "$limit" \
    mpiexec -n "$n" python -m mpi4py -m pytest --with-mpi -q -p no:cacheprovider tests/mpi
done
