"""The CUDA backend on a GPU: kernels and whole runs against the numpy backend.

Skipped, with the reason, where CUDA is unusable (CI has no GPU). On the GPU machine
scripts/gpu-check.sh runs them with HPC_REQUIRE_GPU=1, which turns that skip into a
failure, so a broken GPU set-up cannot pass by skipping. The performance bar runs only with
HPC_BENCH_BAR=1: it measures speed, which the test suite never asserts otherwise.

Equality: pi hit counts, heat2d fields, float64 n-body accelerations, leapfrog updates and
k-means labels are bitwise those of numpy (the kernels round every operation as numpy
does); sums whose order differs on the GPU (residuals, inertia, potential, cluster sums)
agree to round-off; float32 n-body agrees to float32 round-off.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hpc.gpu import probe
from hpc.records import read_runs
from kernels import load_backend
from tests.checkpointing import check_resumed, stop_in_last_repeat, uninterrupted
from tests.conftest import assert_ok, run_hpc

CUDA = probe()
REQUIRED = os.environ.get("HPC_REQUIRE_GPU") == "1"
pytestmark = pytest.mark.skipif(not CUDA.available and not REQUIRED,
                                reason=f"needs a usable CUDA GPU: {CUDA.reason}")


@pytest.fixture(scope="module")
def cu():
    if not CUDA.available:
        pytest.fail(f"HPC_REQUIRE_GPU=1 but CUDA is unusable: {CUDA.reason}")
    from hpc.gpu import bind_device

    bind_device()
    backend = load_backend("cuda")
    backend.load_all()
    return backend


@pytest.fixture(scope="module")
def nb():
    return load_backend("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(20251125)


# ---------------------------------------------------------------------------------------
# Kernels, one by one
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, start, count", [
    (0, 0, 1), (1, 0, 1000), (42, 12345, 99991), (2**64 - 1, 7, 5000), (3, 5, 2**20 + 17),
    (2026, 10**9, 3 * 10**6)])
def test_pi_hits_equal_numpy(cu, nb, seed, start, count):
    assert cu.pi_count_hits(seed, start, count) == nb.pi_count_hits(seed, start, count)


def test_pi_is_additive_and_rejects_negative_ranges(cu):
    assert cu.pi_count_hits(9, 0, 10**6) == cu.pi_count_hits(9, 0, 333_333) + \
        cu.pi_count_hits(9, 333_333, 10**6 - 333_333)
    assert cu.pi_count_hits(9, 5, 0) == 0
    with pytest.raises(ValueError, match="non-negative"):
        cu.pi_count_hits(1, -1, 10)


# Shapes: one block; several strips and column blocks with ragged edges; a single row.
HEAT_SHAPES = [(6, 9), (100, 300), (3, 1000)]


@pytest.mark.parametrize("shape", HEAT_SHAPES)
def test_heat2d_step_is_bitwise_numpy_and_keeps_the_halo(cu, nb, rng, shape):
    u, out_np = rng.random(shape), rng.random(shape)
    out_cu = out_np.copy()
    nb.heat2d_step(u, out_np)
    cu.heat2d_step(u, out_cu)
    assert np.array_equal(out_cu, out_np)  # interior bitwise, halo untouched in both


@pytest.mark.parametrize("shape", HEAT_SHAPES)
def test_heat2d_residual_to_round_off(cu, nb, rng, shape):
    u = rng.random(shape)
    out_np, out_cu = np.zeros(shape), np.zeros(shape)
    expected = nb.heat2d_step_residual(u, out_np)
    got = cu.heat2d_step_residual(u, out_cu)
    assert np.array_equal(out_cu, out_np)
    assert got == pytest.approx(expected, rel=1e-12)


def test_heat2d_on_device_arrays_and_refuses_aliasing(cu, nb, rng):
    u = rng.random((40, 70))
    u_d, v_d = cu.to_device(u), cu.to_device(u)
    cu.heat2d_step(u_d, v_d)
    expected = u.copy()
    nb.heat2d_step(u, expected)
    assert np.array_equal(v_d.get(), expected)
    with pytest.raises(ValueError, match="must not overlap"):
        cu.heat2d_step(u_d, u_d)


def test_heat2d_halo_pack_and_unpack(cu, rng):
    nx, ny = 5, 7
    u = rng.random((nx + 2, ny + 2))
    u_d = cu.to_device(u)
    edges = cu.empty(2 * (nx + ny))
    cu.heat2d_pack_edges_device(u_d, edges)
    part = cu.heat2d_edge_layout(nx, ny)
    e = edges.get()
    assert np.array_equal(e[part["first_row"]], u[1, 1:-1])
    assert np.array_equal(e[part["last_row"]], u[nx, 1:-1])
    assert np.array_equal(e[part["first_col"]], u[1:-1, 1])
    assert np.array_equal(e[part["last_col"]], u[1:-1, ny])
    halo = rng.random(2 * (nx + ny))
    halo_d = cu.to_device(halo)  # held until the kernel is done (not inline)
    cu.heat2d_unpack_halo_device(halo_d, u_d, cu.HALO_TOP | cu.HALO_RIGHT)
    expected = u.copy()
    expected[0, 1:-1] = halo[part["first_row"]]
    expected[1:-1, ny + 1] = halo[part["last_col"]]
    assert np.array_equal(u_d.get(), expected)  # bottom and left halo left as they were


@pytest.fixture
def bodies(rng):
    n = 300  # not a multiple of the 128-body tile
    return rng.normal(size=(3, n)), rng.random(n) / n


@pytest.mark.parametrize("lo, hi", [(0, 300), (50, 250), (299, 300)])
def test_nbody_accel_float64_is_bitwise_numpy(cu, nb, bodies, lo, hi):
    pos, mass = bodies
    local = np.ascontiguousarray(pos[:, lo:hi])
    expected, got = np.empty_like(local), np.empty_like(local)
    nb.nbody_accel(local, pos, mass, 0.01, expected)
    cu.nbody_accel(local, pos, mass, 0.01, got)
    assert np.array_equal(got, expected), np.max(np.abs(got - expected))


def test_nbody_accel_float32_to_float32_round_off(cu, nb, bodies):
    pos, mass = bodies
    expected, got = np.empty_like(pos), np.empty_like(pos)
    nb.nbody_accel(pos, pos, mass, 0.01, expected)
    cu.nbody_accel(pos, pos, mass, 0.01, got, precision="float32")
    assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected))


def test_nbody_potential_to_round_off_and_over_ranks(cu, nb, bodies):
    pos, mass = bodies
    whole = nb.nbody_potential(pos, mass, 0, pos, mass, 0.01)
    assert cu.nbody_potential(pos, mass, 0, pos, mass, 0.01) == pytest.approx(whole, rel=1e-12)
    parts = sum(cu.nbody_potential(np.ascontiguousarray(pos[:, a:b]), mass[a:b], a, pos, mass,
                                   0.01) for a, b in ((0, 100), (100, 217), (217, 300)))
    assert parts == pytest.approx(whole, rel=1e-12)
    with pytest.raises(ValueError, match="offset"):
        cu.nbody_potential(pos[:, :10], mass[:10], 295, pos, mass, 0.01)


def test_nbody_leapfrog_updates_are_bitwise_numpy(cu, rng):
    pos, vel, acc = rng.random((3, 50)), rng.random((3, 20)), rng.random((3, 20))
    dt, lo = 1e-3, 17
    pos_d, vel_d, acc_d = cu.to_device(pos), cu.to_device(vel), cu.to_device(acc)
    cu.nbody_kick_device(vel_d, acc_d, 0.5 * dt)
    vel = vel + 0.5 * dt * acc  # the workload's numpy expression
    assert np.array_equal(vel_d.get(), vel)
    cu.nbody_drift_device(pos_d, vel_d, dt, lo)
    pos[:, lo:lo + 20] = pos[:, lo:lo + 20] + dt * vel
    assert np.array_equal(pos_d.get(), pos)


@pytest.mark.parametrize("n, k, d", [(1, 1, 1), (5000, 7, 3), (70_000, 4, 2), (3000, 1000, 8)])
def test_kmeans_assign_labels_equal_numpy(cu, nb, rng, n, k, d):
    # (3000, 1000, 8): 64 KB of centroids, beyond shared memory: read from global memory.
    points, centroids = rng.normal(size=(n, d)), rng.normal(size=(k, d))
    expected, got = np.empty(n, np.int64), np.empty(n, np.int64)
    inertia = nb.kmeans_assign(points, centroids, expected)
    assert cu.kmeans_assign(points, centroids, got) == pytest.approx(inertia, rel=1e-12)
    assert np.array_equal(got, expected)


def test_kmeans_ties_go_to_the_first_centroid(cu):
    labels = np.empty(2, np.int64)
    cu.kmeans_assign(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]),
                     labels)
    assert list(labels) == [0, 0]


def test_kmeans_accumulate_and_update(cu, nb, rng):
    n, k, d = 9000, 6, 3  # several 2048-point chunks
    points, labels = rng.normal(size=(n, d)), rng.integers(0, k - 1, size=n)  # one empty
    sums, counts = np.empty((k, d)), np.empty(k, np.int64)
    sums_cu, counts_cu = np.empty((k, d)), np.empty(k, np.int64)
    nb.kmeans_accumulate(points, labels, sums, counts)
    cu.kmeans_accumulate(points, labels, sums_cu, counts_cu)
    assert np.array_equal(counts_cu, counts) and counts[-1] == 0
    assert np.allclose(sums_cu, sums, rtol=1e-12, atol=1e-12)
    centroids = rng.normal(size=(k, d))
    centroids_d = cu.to_device(centroids)
    sums_d, counts_d = cu.to_device(sums), cu.to_device(counts, np.int64)
    cu.kmeans_update_device(sums_d, counts_d, centroids_d)
    filled = counts > 0
    centroids[filled] = sums[filled] / counts[filled, None]  # lloyd's numpy update
    assert np.array_equal(centroids_d.get(), centroids)
    with pytest.raises(ValueError, match="label 9 of point 0"):
        cu.kmeans_accumulate(points[:1], np.array([9]), sums_cu, counts_cu)


def test_mpi_stage_host_path_copies_only_what_is_asked(cu, rng):
    from hpc.gpu_comm import MpiStage

    data = rng.random((3, 10))
    device = cu.to_device(data)
    stage = MpiStage(device, cuda_aware=False)
    buf = stage.for_mpi([slice(2, 5)])
    assert np.array_equal(buf[2:5], data.reshape(-1)[2:5])
    buf[:] = -1.0  # what MPI would write
    stage.from_mpi([slice(7, 9)])
    expected = data.reshape(-1).copy()
    expected[7:9] = -1.0
    assert np.array_equal(device.get().reshape(-1), expected)


# ---------------------------------------------------------------------------------------
# Whole runs: --backend cuda equals numpy, on 1 rank and on 2 ranks sharing the GPU
# ---------------------------------------------------------------------------------------

RUNS = {
    "pi": ["--samples", "1000003"],
    "heat2d": ["--n", "130", "--steps", "23", "--residual-every", "5"],
    "nbody": ["--n", "300", "--steps", "5"],
    "kmeans": ["--points", "20000", "--k", "5", "--dims", "3", "--iterations", "6",
               "--predict-points", "3001"],
}


def run_record(tmp_path, workload, backend, ranks, env=None):
    out = tmp_path / f"{workload}-{backend}-{ranks}.h5"
    proc = run_hpc("run", workload, "--backend", backend, "--np", str(ranks), "--repeats", "2",
                   "--warmup", "1", "--out", str(out), *RUNS[workload], env=env)
    assert_ok(proc)
    assert "verified=yes" in proc.stdout
    return read_runs(out)[-1]


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("workload", list(RUNS))
def test_cuda_run_equals_numpy(cu, tmp_path, workload, ranks):
    got = run_record(tmp_path, workload, "cuda", ranks)
    ref = run_record(tmp_path, workload, "numpy", 1)
    assert got["backend"] == "cuda" and got["verified"]
    a, b = got["result"], ref["result"]
    if workload == "pi":
        assert a["hits"] == b["hits"]
    elif workload == "heat2d":
        assert np.array_equal(a["field"], b["field"])
        assert np.allclose(a["residual_history"], b["residual_history"], rtol=1e-10)
    elif workload == "nbody":
        assert np.allclose(a["positions"], b["positions"], rtol=0, atol=1e-12)
        assert np.allclose(a["velocities"], b["velocities"], rtol=0, atol=1e-12)
    else:
        assert np.allclose(a["centroids"], b["centroids"], rtol=0, atol=1e-10)
        assert np.array_equal(a["predict_counts"], b["predict_counts"])
    cuda = got["provenance"]["cuda"]
    assert cuda["device_name"] and cuda["driver_version"] != "unknown"
    assert cuda["pycuda_cuda_version"] and cuda["driver_cuda_version"]
    assert list(cuda["rank_node_local_rank"]) == list(range(ranks))
    assert list(cuda["rank_device_ordinal"]) == [0] * ranks  # both ranks share the one GPU
    assert cuda["cuda_aware_mpi_detection"]


# Large enough that the second repeat is still running when the signal arrives.
GPU_CHECKPOINT = {
    "heat2d": (("heat2d", "--size", "2048", "--steps", "40000", "--backend", "cuda"),
               ("checksum", "residual_history")),
    "nbody": (("nbody", "--size", "32768", "--steps", "1000", "--backend", "cuda"),
              ("positions", "velocities", "energy_final")),
}


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("workload", list(GPU_CHECKPOINT))
def test_cuda_checkpoint_resumes_bit_for_bit(cu, tmp_path, workload, ranks):
    """SIGUSR1 in the last repeat: the CUDA run saves its device state and exits 75;
    started again it resumes and ends equal to an uninterrupted CUDA run, bit for bit."""
    args, keys = GPU_CHECKPOINT[workload]
    out, ckpt, resume_args, saved = stop_in_last_repeat(tmp_path, args, ranks=ranks,
                                                        signal_rank=None)
    assert_ok(run_hpc("run", *resume_args, timeout=900))
    run = check_resumed(out, ckpt, ranks=ranks, saved=saved)
    reference = uninterrupted(tmp_path, args, ranks=ranks)
    for key in keys:
        assert np.array_equal(run["result"][key], reference["result"][key]), key


def test_cached_kernels_run_without_nvcc(cu, tmp_path):
    """Compiled once: after the first run the kernels load from the cache, nvcc or not."""
    record = run_record(tmp_path, "heat2d", "cuda", 1, env={"HPC_NVCC": "/nonexistent/nvcc"})
    assert record["verified"]


def test_no_visible_device_is_a_clean_error(tmp_path):
    proc = run_hpc("run", "pi", "--backend", "cuda", "--size", "1000", "--out",
                   str(tmp_path / "r.h5"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "CUDA backend unavailable" in proc.stderr
    assert "CUDA_VISIBLE_DEVICES=''" in proc.stderr
    assert not (tmp_path / "r.h5").exists()


def test_hpc_cuda_describes_the_device(cu):
    proc = run_hpc("cuda", "--json")
    assert_ok(proc)
    report = json.loads(proc.stdout)
    assert report["available"] and report["devices"][0]["name"]
    assert report["device_choice"]["ordinal"] == 0


@pytest.mark.skipif(os.environ.get("HPC_BENCH_BAR") != "1",
                    reason="the performance bar runs with HPC_BENCH_BAR=1 (scripts/gpu-check.sh)")
def test_performance_bar(cu):
    proc = run_hpc("cuda", "--bench", "--json", timeout=900)
    assert_ok(proc)
    if os.environ.get("HPC_BENCH_OUT"):  # scripts/gpu-check.sh keeps the figures
        Path(os.environ["HPC_BENCH_OUT"]).write_text(proc.stdout)
    bench = json.loads(proc.stdout)["bench"]
    assert bench["bar"] == {"heat2d_70pct_of_copy": True, "nbody_f32_40pct_of_fp32_peak": True,
                            "nbody_65536_20x_cython": True}, bench
