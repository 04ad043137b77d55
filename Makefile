# Two commands do everything on a fresh machine: `make demo` and `make test`.
# `make setup` (run by both when needed) creates .venv with an MPI, mpi4py, h5py and the
# Cython kernels built for this machine. It is idempotent: it reinstalls only when the
# build inputs changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# MPI=mpich installs MPICH from PyPI into the venv (laptops, CI). MPI=system uses the
# mpiexec already on PATH (a cluster's module), and builds nothing extra.
MPI    ?= mpich
STAMP  := $(VENV)/.installed-$(MPI)
# pytest-xdist workers for the serial test files (each test starts its own processes;
# most of them wait on mpiexec). Tests marked `alone` run afterwards without workers.
TEST_WORKERS ?= 2
# Every MPI test run is bounded so that a failing rank can never hang CI.
MPI_TEST_TIMEOUT ?= 900
# SLURM=auto: `make test` starts the local Slurm cluster (scripts/slurm-cluster.sh) when
# this machine can (root with apt) and runs the Slurm tests on it; SLURM=off leaves Slurm
# alone. Without a cluster the Slurm tests are skipped, with the reason.
SLURM  ?= auto
# ... and, beside it, the multi-node cluster (scripts/slurm-nodes.sh: hosts in network
# namespaces, its own state in /tmp/hpc-mnode) that the tests in tests/mnode need.
MNODE_NODES ?= 2

.PHONY: setup demo test lint bench clean help slurm-start slurm-stop mnode-start mnode-stop
help:
	@echo "make demo   - set up, then run every workload with 1 and 2 ranks into results/"
	@echo "make test   - set up, then run the whole test suite (serial and MPI)"
	@echo "make bench  - single-rank kernel throughput against C and memory bandwidth"
	@echo "make setup  - create $(VENV) and install everything (idempotent)"
	@echo "make slurm-start / slurm-stop - the local single-node Slurm cluster (root, apt)"
	@echo "make mnode-start / mnode-stop - the multi-node cluster in namespaces (root, apt)"

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard kernels/*.pyx)
	@echo "Setting up $(VENV) (MPI=$(MPI)); the first time takes about a minute"
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { echo "error: $(PYTHON) cannot \
	create virtual environments; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip "setuptools>=77" wheel "Cython>=3.0"
	$(PY) -m pip install -q $(if $(filter mpich,$(MPI)),mpich) mpi4py
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/hpc info
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup
	$(BIN)/ruff check hpc kernels tests setup.py
ifeq ($(SLURM),auto)
	@bash scripts/slurm-cluster.sh start || echo "make test: no local Slurm cluster (the \
	reason is above); the Slurm tests will be skipped"
	@bash scripts/slurm-cluster.sh start --nodes $(MNODE_NODES) || echo "make test: no \
	multi-node cluster (the reason is above); the multi-node tests will be skipped"
endif
	$(PY) -m pytest -ra -n $(TEST_WORKERS) --dist loadgroup -m "not alone" --durations=15 \
	tests --ignore=tests/mpi --ignore=tests/mnode
	$(PY) -m pytest -ra -m alone --durations=15 tests --ignore=tests/mpi --ignore=tests/mnode
	@# One at a time, in a pass of their own: they kill and cut the nodes they share.
	$(PY) -m pytest -ra --durations=10 tests/mnode
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/mpi-tests.sh 2 4

slurm-start:
	bash scripts/slurm-cluster.sh start
slurm-stop:
	bash scripts/slurm-cluster.sh stop
mnode-start:
	bash scripts/slurm-cluster.sh start --nodes $(MNODE_NODES)
mnode-stop:
	bash scripts/slurm-cluster.sh stop --nodes

bench: setup
	$(BIN)/hpc bench

lint: setup
	$(BIN)/ruff check hpc kernels tests setup.py
	$(BIN)/ruff format --check hpc kernels tests setup.py

clean:
	rm -rf build *.egg-info kernels/*.so kernels/*.c .pytest_cache
