#!/usr/bin/env bash
# The CUDA backend on a GPU machine: build PyCUDA there, then run the CUDA tests (GPU
# tests required, not skipped) and the benchmark with its performance bar.
#
# Run from the repository root on the GPU machine, with vendor/ from scripts/gpu-vendor.sh
# beside the sources (or VENDOR=another/folder):
#   bash scripts/gpu-check.sh [setup|test|bench|all]        (default: all)
#   setup  a venv in $GPU_VENV (default /tmp/hpc-gpu-venv) over the machine's python3
#          (its numpy, h5py, pytest), the carried wheels, PyCUDA (from vendor/pycuda-*.whl
#          if present, else built from the sdist with all cores), the Cython kernels
#   test   tests/test_cuda.py and tests/test_cuda_gpu.py with HPC_REQUIRE_GPU=1 (a GPU test
#          that cannot run fails) and HPC_BENCH_BAR=1 (the performance bar is asserted)
#   bench  hpc bench --quick --no-c (every backend, CUDA included) for the record
# Everything worth keeping goes to $OUT (default results/gpu-check): the logs, bench.json
# and the PyCUDA wheel built here (carry it as vendor/ next time: no build then).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:-all}
OUT=${OUT:-results/gpu-check}
VENV=${GPU_VENV:-/tmp/hpc-gpu-venv}
VENDOR=${VENDOR:-vendor}
PY=${PYTHON:-python3}
JOBS=$(nproc)
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
say() { echo "== $(date +%T) $*"; }

setup() {
  say "machine: $(nvidia-smi -L 2>/dev/null | head -1 || echo 'no nvidia-smi'); $($PY --version)"
  command -v nvcc >/dev/null || { echo "nvcc not on PATH" >&2; exit 1; }
  nvcc --version | tail -1
  ls "$VENDOR"/wheels/pip-*.whl >/dev/null 2>&1 || {
    echo "$VENDOR/wheels is incomplete: run scripts/gpu-vendor.sh where PyPI is reachable," \
         "then carry $VENDOR/ along" >&2; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    say "venv $VENV, seeing $PY's own packages (numpy, h5py, pytest) behind its own"
    # --without-pip: ensurepip may be missing; pip comes from the carried wheel instead.
    # $PY may itself be a venv, whose packages --system-site-packages would not show:
    # a .pth file adds its site-packages after the venv's own (so ours win).
    $PY -m venv --without-pip "$VENV"
    local base mine
    base=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    mine=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "import site; site.addsitedir('$base')" > "$mine/zz-base-site-packages.pth"
    local pip_wheel
    pip_wheel=$(ls "$VENDOR"/wheels/pip-*.whl)
    "$VENV/bin/python" "$pip_wheel/pip" install -q --no-index --no-deps "$pip_wheel"
  fi
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --upgrade "$VENDOR"/wheels/*.whl
  if ! "$VENV/bin/python" -c "import pycuda.driver" 2>/dev/null; then
    if ls "$VENDOR"/pycuda-*.whl >/dev/null 2>&1; then
      say "PyCUDA from the carried wheel"
      "$VENV/bin/python" -m pip install -q --no-index --no-deps "$VENDOR"/pycuda-*.whl
    else
      build_pycuda
    fi
  fi
  say "the suite and its Cython kernels"
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e .
  "$VENV/bin/hpc" info
  "$VENV/bin/hpc" cuda  # exits 2, saying why, when CUDA is unusable
}

build_pycuda() {
  local src=/tmp/pycuda-src cuda_root curand=""
  # The toolkit's root as nvcc itself reports it (nvcc on PATH may be a wrapper script).
  cuda_root=${CUDA_HOME:-$(nvcc --dryrun -x cu -c /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p')}
  cuda_root=$(readlink -f "$cuda_root")
  [ -f "$cuda_root/include/cuda.h" ] || { echo "no cuda.h under $cuda_root: set CUDA_HOME" >&2
                                          exit 1; }
  say "building PyCUDA against $cuda_root with $JOBS jobs"
  rm -rf "$src" && mkdir -p "$src"
  tar xzf "$VENDOR"/pycuda-*.tar.gz -C "$src" --strip-components=1
  # cuRAND is optional in PyCUDA and unused here: leave it out where the toolkit lacks it.
  ls "$cuda_root"/lib64/libcurand.so* >/dev/null 2>&1 || curand=--no-cuda-enable-curand
  (cd "$src" && "$VENV/bin/python" configure.py --cuda-root="$cuda_root" $curand \
     && "$VENV/bin/python" setup.py -q build_ext --parallel "$JOBS" \
     && "$VENV/bin/python" -m pip wheel -q --no-index --no-deps --no-build-isolation \
          -w "$src/dist" .) 2>&1 | tee "$OUT/pycuda-build.log" | tail -20
  "$VENV/bin/python" -m pip install -q --no-index --no-deps "$src"/dist/pycuda-*.whl
  cp "$src"/dist/pycuda-*.whl "$OUT/"
}

run_tests() {
  say "CUDA tests (GPU required, performance bar on)"
  local code=0
  set +e
  HPC_REQUIRE_GPU=1 HPC_BENCH_BAR=1 HPC_BENCH_OUT="$OUT/bench.json" \
    timeout --kill-after=15 1500 "$VENV/bin/python" -m pytest -ra -p no:cacheprovider \
    tests/test_cuda.py tests/test_cuda_gpu.py 2>&1 | tee "$OUT/pytest.log"
  code=$?
  set -e
  if [ -f "$OUT/bench.json" ]; then
    "$VENV/bin/python" -c "
import json, sys
from hpc.bench_cuda import format_cuda_section
print(format_cuda_section(json.load(open(sys.argv[1]))['bench']))" "$OUT/bench.json" \
      | tee "$OUT/bench.txt"
  fi
  return "$code"
}

run_bench() {
  say "hpc bench --quick --no-c (CPU backends beside CUDA)"
  "$VENV/bin/hpc" bench --quick --no-c | tee "$OUT/bench-all.txt"
}

case "$stage" in
  setup) setup ;;
  test) run_tests ;;
  bench) run_bench ;;
  all) setup; run_tests; run_bench ;;
  *) echo "usage: $0 [setup|test|bench|all]" >&2; exit 2 ;;
esac
