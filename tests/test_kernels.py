"""The compute kernels: Cython agrees with numpy, and both agree with the definitions."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from kernels import CPU_BACKENDS, find_backend, load_backend


@pytest.fixture(scope="module")
def nb():
    return load_backend("numpy")


@pytest.fixture(scope="module")
def cb():
    # Skipped, not failed, where the extension is not built; CI always builds it.
    try:
        return load_backend("cython")
    except ImportError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.getfixturevalue({"numpy": "nb", "cython": "cb"}[request.param])


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


# ---------------------------------------------------------------------------------------
# load_backend
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [load_backend, find_backend])
def test_load_backend_unknown_name_lists_valid_ones(check):
    with pytest.raises(ValueError, match="'numpy', 'cython'"):
        check("fortran")


@pytest.mark.parametrize("check", [load_backend, find_backend])
def test_load_backend_cython_not_built(monkeypatch, check):
    monkeypatch.setitem(sys.modules, "kernels.cython_backend", None)  # import now fails
    with pytest.raises(ImportError, match=r"Cython kernels are not built: run `make setup`"):
        check("cython")


def test_backends_have_the_same_functions(nb, cb):
    names = [
        "pi_count_hits", "heat2d_step", "heat2d_step_box", "heat2d_step_row",
        "heat2d_step_residual", "nbody_accel", "nbody_potential", "kmeans_assign",
        "kmeans_accumulate", "busy_work", "triad",
    ]  # fmt: skip
    for name in names:
        assert callable(getattr(nb, name)) and callable(getattr(cb, name)), name


# ---------------------------------------------------------------------------------------
# pi
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed,start,count", [(0, 0, 1), (1, 0, 1000), (42, 12345, 99991), (2**64 - 1, 7, 5000)]
)
def test_pi_cython_equals_numpy(nb, cb, seed, start, count):
    assert cb.pi_count_hits(seed, start, count) == nb.pi_count_hits(seed, start, count)


def test_pi_numpy_chunks_do_not_change_the_count(nb, cb):
    # More than one numpy chunk of 2**20 samples, starting off a chunk boundary.
    assert nb.pi_count_hits(3, 5, 2**20 + 17) == cb.pi_count_hits(3, 5, 2**20 + 17)


def test_pi_first_sample_by_hand(backend):
    # Sample 0 uses counters 1 and 2: x = mix(seed + GAMMA), y = mix(seed + 2 GAMMA).
    def mix(z):
        mask = 2**64 - 1
        z &= mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    gamma = 0x9E3779B97F4A7C15
    for seed in range(20):
        x = (mix(seed + gamma) >> 11) * 2.0**-53
        y = (mix(seed + 2 * gamma) >> 11) * 2.0**-53
        assert backend.pi_count_hits(seed, 0, 1) == int(x * x + y * y < 1.0)


@pytest.mark.parametrize("a,b", [(0, 10), (1, 1), (333, 667), (2**20 - 1, 3)])
def test_pi_is_additive_over_decompositions(backend, a, b):
    seed = 99
    whole = backend.pi_count_hits(seed, 0, a + b)
    assert whole == backend.pi_count_hits(seed, 0, a) + backend.pi_count_hits(seed, a, b)


def test_pi_estimate_within_five_sigma(backend):
    n = 10**6
    estimate = 4.0 * backend.pi_count_hits(2024, 0, n) / n
    sigma = 4.0 * math.sqrt(math.pi / 4 * (1 - math.pi / 4) / n)
    assert abs(estimate - math.pi) < 5 * sigma


def test_pi_rejects_negative_ranges(backend):
    with pytest.raises(ValueError):
        backend.pi_count_hits(1, -1, 10)


# ---------------------------------------------------------------------------------------
# heat2d
# ---------------------------------------------------------------------------------------

NX, NY = 37, 53


def test_heat2d_cython_equals_numpy_bitwise(nb, cb, rng):
    u = rng.random((NX + 2, NY + 2))
    out_np, out_cy = np.zeros_like(u), np.zeros_like(u)
    nb.heat2d_step(u, out_np)
    cb.heat2d_step(u, out_cy)
    assert np.array_equal(out_np, out_cy)
    res_np = nb.heat2d_step_residual(u, out_np)
    res_cy = cb.heat2d_step_residual(u, out_cy)
    assert np.array_equal(out_np, out_cy)
    assert res_cy == pytest.approx(res_np, rel=1e-12)


@pytest.mark.parametrize("sides", range(16))  # which of the four halos a neighbour sends
@pytest.mark.parametrize("nx,ny", [(NX, NY), (1, 1), (1, 5), (2, 2), (3, 1), (4, 3)])
def test_heat2d_inside_then_rim_is_bitwise_one_sweep(backend, rng, nx, ny, sides):
    """The overlapped heat2d step's split (hpc.workloads.heat2d.split_block and bands)
    covers every point once and gives the bits of one whole sweep."""
    from hpc.workloads.heat2d import bands, split_block

    u = rng.random((nx + 2, ny + 2))
    whole, parts = np.zeros_like(u), np.full_like(u, np.nan)
    parts[0, :] = parts[-1, :] = parts[:, 0] = parts[:, -1] = 0.0  # the untouched halo
    whole[...] = parts
    backend.heat2d_step(u, whole)
    inside, rim = split_block(nx, ny, *(bool(sides >> k & 1) for k in range(4)))
    for box in [*bands(inside, 4), *rim]:
        assert np.all(np.isnan(parts[box[0]:box[1], box[2]:box[3]])), "a point updated twice"
        backend.heat2d_step_box(u, parts, *box)
    assert np.array_equal(parts, whole)


def test_heat2d_row_from_rows_anywhere_is_bitwise_the_sweep(backend, rng):
    """heat2d_step_row on copies of three rows (as a rank reads its neighbours' edges in
    shared memory) gives that row of one whole sweep; bad rows are refused."""
    u = rng.random((NX + 2, NY + 2))
    whole = np.zeros_like(u)
    backend.heat2d_step(u, whole)
    for i in range(1, NX + 1):
        out = np.zeros(NY + 2)
        backend.heat2d_step_row(u[i - 1].copy(), u[i].copy(), u[i + 1].copy(), out)
        assert np.array_equal(out[1:-1], whole[i, 1:-1]) and out[0] == out[-1] == 0.0
    row = u[1].copy()
    with pytest.raises(ValueError, match="rows of one length"):
        backend.heat2d_step_row(row, row, row[:-1].copy(), np.zeros(NY + 2))
    with pytest.raises(ValueError, match="must not be one of the rows"):
        backend.heat2d_step_row(u[0].copy(), row, u[2].copy(), row)


def test_heat2d_box_outside_the_interior_is_refused(backend, rng):
    u = rng.random((6, 7))
    with pytest.raises(ValueError, match="leave the interior"):
        backend.heat2d_step_box(u, np.zeros_like(u), 0, 3, 1, 4)
    with pytest.raises(ValueError, match="leave the interior"):
        backend.heat2d_step_box(u, np.zeros_like(u), 1, 3, 1, 7)
    backend.heat2d_step_box(u, np.zeros_like(u), 3, 3, 0, 99)  # empty: nothing to refuse


def test_heat2d_matches_definition(backend, rng):
    u = rng.random((NX + 2, NY + 2))
    out = np.zeros_like(u)
    backend.heat2d_step(u, out)
    i, j = 5, 17
    expected = 0.25 * (((u[i - 1, j] + u[i + 1, j]) + u[i, j - 1]) + u[i, j + 1])
    assert out[i, j] == expected
    out2 = np.zeros_like(u)
    residual = backend.heat2d_step_residual(u, out2)
    assert np.array_equal(out, out2)
    diff = out[1:-1, 1:-1] - u[1:-1, 1:-1]
    assert residual == pytest.approx(float(np.sum(diff**2)), rel=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_heat2d_leaves_the_halo_of_out_untouched(backend, rng, residual):
    u = rng.random((NX + 2, NY + 2))
    out = np.full_like(u, -7.0)
    step = backend.heat2d_step_residual if residual else backend.heat2d_step
    step(u, out)
    halo = np.ones(out.shape, dtype=bool)
    halo[1:-1, 1:-1] = False
    assert np.all(out[halo] == -7.0)
    assert not np.any(out[1:-1, 1:-1] == -7.0)


def test_heat2d_rejects_out_aliasing_u(backend, rng):
    u = rng.random((NX + 2, NY + 2))
    with pytest.raises(ValueError):
        backend.heat2d_step(u, u)


# ---------------------------------------------------------------------------------------
# nbody
# ---------------------------------------------------------------------------------------

N_BODIES = 101
EPS2 = 1e-3


@pytest.fixture
def bodies(rng):
    return rng.random((3, N_BODIES)), rng.uniform(0.5, 1.5, N_BODIES)


def test_nbody_accel_cython_equals_numpy(nb, cb, bodies):
    pos, mass = bodies
    acc_np, acc_cy = np.empty_like(pos), np.empty_like(pos)
    nb.nbody_accel(pos, pos, mass, EPS2, acc_np)
    cb.nbody_accel(pos, pos, mass, EPS2, acc_cy)
    np.testing.assert_allclose(acc_cy, acc_np, rtol=1e-12)


def test_nbody_accel_matches_definition(backend, bodies):
    pos, mass = bodies
    acc = np.empty_like(pos)
    backend.nbody_accel(pos, pos, mass, EPS2, acc)
    for i in (0, 50, 100):
        d = pos - pos[:, i : i + 1]
        r2 = np.sum(d * d, axis=0) + EPS2
        expected = np.sum(mass * d / r2**1.5, axis=1)
        np.testing.assert_allclose(acc[:, i], expected, rtol=1e-10)


@pytest.mark.parametrize("n_all", [N_BODIES, 300])  # 300: slices cross the 256-body tile
def test_nbody_accel_slices_equal_full_bitwise(backend, rng, n_all):
    pos, mass = rng.random((3, n_all)), rng.uniform(0.5, 1.5, n_all)
    full = np.empty_like(pos)
    backend.nbody_accel(pos, pos, mass, EPS2, full)
    for lo, hi in [(0, 1), (0, 37), (37, 38), (37, 74), (74, n_all), (n_all - 1, n_all)]:
        local = np.ascontiguousarray(pos[:, lo:hi])
        acc = np.empty_like(local)
        backend.nbody_accel(local, pos, mass, EPS2, acc)
        assert np.array_equal(acc, full[:, lo:hi]), (lo, hi)


def test_nbody_potential_cython_equals_numpy(nb, cb, bodies):
    pos, mass = bodies
    for eps2 in (EPS2, 0.0):
        e_np = nb.nbody_potential(pos, mass, 0, pos, mass, eps2)
        e_cy = cb.nbody_potential(pos, mass, 0, pos, mass, eps2)
        assert e_cy == pytest.approx(e_np, rel=1e-12)


def test_nbody_potential_matches_definition_and_sums_over_ranks(backend, bodies):
    pos, mass = bodies
    d = pos[:, :, None] - pos[:, None, :]
    r = np.sqrt(np.sum(d * d, axis=0) + EPS2)
    pair = mass[:, None] * mass[None, :] / r
    np.fill_diagonal(pair, 0.0)
    expected = -0.5 * pair.sum()
    assert backend.nbody_potential(pos, mass, 0, pos, mass, EPS2) == pytest.approx(
        expected, rel=1e-12
    )
    cuts = [0, 30, 31, 77, N_BODIES]  # uneven "ranks", one of a single body
    shares = [
        backend.nbody_potential(
            np.ascontiguousarray(pos[:, lo:hi]), mass[lo:hi], lo, pos, mass, EPS2
        )
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    assert sum(shares) == pytest.approx(expected, rel=1e-12)


def test_nbody_potential_rejects_bad_offset(backend, bodies):
    pos, mass = bodies
    with pytest.raises(ValueError):
        backend.nbody_potential(pos, mass, 1, pos, mass, EPS2)


# ---------------------------------------------------------------------------------------
# kmeans
# ---------------------------------------------------------------------------------------


def test_kmeans_assign_cython_equals_numpy(nb, cb, rng):
    points, centroids = rng.random((1001, 3)), rng.random((7, 3))
    labels_np = np.empty(1001, dtype=np.int64)
    labels_cy = np.empty(1001, dtype=np.int64)
    inertia_np = nb.kmeans_assign(points, centroids, labels_np)
    inertia_cy = cb.kmeans_assign(points, centroids, labels_cy)
    assert np.array_equal(labels_np, labels_cy)
    assert inertia_cy == pytest.approx(inertia_np, rel=1e-12)
    d2 = np.sum((points[:, None, :] - centroids[None, :, :]) ** 2, axis=2)
    assert np.array_equal(labels_np, np.argmin(d2, axis=1))
    assert inertia_np == pytest.approx(float(d2.min(axis=1).sum()), rel=1e-12)


def test_kmeans_assign_ties_go_to_the_first_centroid(backend):
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    centroids = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    labels = np.full(3, -1, dtype=np.int64)
    inertia = backend.kmeans_assign(points, centroids, labels)
    assert labels.tolist() == [1, 0, 0]  # the middle point is equidistant from all four
    assert inertia == 0.25


def test_kmeans_accumulate_by_hand(backend):
    points = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    labels = np.array([2, 0, 2, 2], dtype=np.int64)
    sums = np.full((3, 2), 99.0)  # garbage: the kernel must zero it first
    counts = np.full(3, 99, dtype=np.int64)
    backend.kmeans_accumulate(points, labels, sums, counts)
    assert sums.tolist() == [[3.0, 4.0], [0.0, 0.0], [13.0, 16.0]]
    assert counts.tolist() == [1, 0, 3]


def test_kmeans_accumulate_cython_equals_numpy(nb, cb, rng):
    points = rng.random((1001, 5))
    labels = rng.integers(0, 7, 1001).astype(np.int64)
    sums_np, sums_cy = np.empty((7, 5)), np.empty((7, 5))
    counts_np, counts_cy = np.empty(7, dtype=np.int64), np.empty(7, dtype=np.int64)
    nb.kmeans_accumulate(points, labels, sums_np, counts_np)
    cb.kmeans_accumulate(points, labels, sums_cy, counts_cy)
    np.testing.assert_allclose(sums_cy, sums_np, rtol=1e-12)
    assert np.array_equal(counts_np, counts_cy)


@pytest.mark.parametrize("bad", [-1, 3])
def test_kmeans_accumulate_rejects_out_of_range_labels(backend, bad):
    points = np.ones((2, 2))
    labels = np.array([0, bad], dtype=np.int64)
    with pytest.raises(ValueError, match="not in"):
        backend.kmeans_accumulate(points, labels, np.empty((3, 2)), np.empty(3, dtype=np.int64))


# ---------------------------------------------------------------------------------------
# busy_work and triad
# ---------------------------------------------------------------------------------------


def test_busy_work_is_deterministic(backend):
    first = backend.busy_work(2)
    assert math.isfinite(first)
    assert backend.busy_work(2) == first
    assert backend.busy_work(0) == backend.busy_work(0)
    with pytest.raises(ValueError):
        backend.busy_work(-1)


def test_triad(backend, rng):
    b, c = rng.random(1001), rng.random(1001)
    a = np.empty(1001)
    backend.triad(a, b, c, 3.0)
    assert np.array_equal(a, b + 3.0 * c)
    expected = b + 2.0 * c
    backend.triad(b, b, c, 2.0)  # in place: a may be b
    assert np.array_equal(b, expected)


# ---------------------------------------------------------------------------------------
# shared-memory step counters (heat2d's shared exchange)
# ---------------------------------------------------------------------------------------


def test_step_counters_publish_wait_and_a_signal_ends_a_wait():
    """publish/wait between two counter sets over one int64 pair (as two ranks over their
    window); a wait for a neighbour that never publishes ends when a signal handler
    raises, within a few milliseconds (the real cross-process case runs in tests/mpi)."""
    import signal

    from kernels.shm_flags import StepCounters

    pair = np.zeros(2, dtype=np.int64)
    a = StepCounters(pair[0:1], [pair[1:2]])
    b = StepCounters(pair[1:2], [pair[0:1]])
    a.publish(3)
    b.wait(3)  # a published 3: returns at once
    b.publish(3)
    assert list(pair) == [3, 3]

    def stop(signum, frame):
        raise TimeoutError("stopped waiting")

    previous = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(TimeoutError, match="stopped waiting"):
            a.wait(4)  # b never publishes 4
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ValueError, match="at most 8 neighbours"):
        StepCounters(pair[0:1], [pair[1:2]] * 9)
