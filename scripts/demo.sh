#!/usr/bin/env bash
# The demo: every workload on 1 and 2 ranks, one HDF5 record file per workload in
# results/, then a table of all the runs. Run by `make demo` (which sets up .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results
workloads=(pi heat2d nbody kmeans amdahl)
for w in "${workloads[@]}"; do rm -f "results/demo-$w.h5"; done
for w in "${workloads[@]}"; do
  for np in 1 2; do
    hpc run "$w" --np "$np" --repeats 3 --out "results/demo-$w.h5" --timeout 600
  done
done
echo
files=(); for w in "${workloads[@]}"; do files+=("results/demo-$w.h5"); done
hpc show "${files[@]}"
echo
echo "Run records: results/demo-*.h5 (open them with h5py or h5dump; schema in docs/SCHEMA.md)"
