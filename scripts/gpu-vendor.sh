#!/usr/bin/env bash
# Fill vendor/ (git-ignored) with what the GPU machine cannot download: it reaches no
# package registry. Run here, where PyPI is reachable; then carry vendor/ to the device
# and run scripts/gpu-check.sh there (docs/CUDA.md says how).
#
#   vendor/pycuda-2026.1.tar.gz   PyCUDA's source: it is built on the GPU machine, against
#                                 that machine's CUDA toolkit (a wheel built there can be
#                                 carried back as vendor/pycuda-*.whl to skip the build)
#   vendor/wheels/*.whl           PyCUDA's pure-Python dependencies, MPICH and mpi4py (one
#                                 MPI per environment, the one CI uses), pytest-mpi, and the
#                                 setuptools, Cython and pip the builds need, for CPython $PYVER
#
# PYVER (default 3.12) must be the GPU machine's python3 version; VENDOR (default vendor)
# is the folder to fill.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
PIP=${PIP:-python3 -m pip}
VENDOR=${VENDOR:-vendor}
mkdir -p "$VENDOR/wheels"
$PIP download --no-deps --no-binary :all: -d "$VENDOR" pycuda==2026.1
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
$PIP download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$VENDOR/wheels" \
  pytools==2026.1.1 platformdirs==4.14.8 siphash24==1.9 typing-extensions==4.16.0 \
  mako==1.4.3 markupsafe==3.0.4 \
  mpich==5.0.2 mpi4py==4.1.2 pytest-mpi==0.6 setuptools==84.2.1 Cython==3.3.1 pip==26.0
du -sh "$VENDOR"
