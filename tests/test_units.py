"""Pure-Python parts: decompositions, parameters, work models, timers, environment."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from hpc.errors import UserError
from hpc.mpi_env import inside_mpi_job, mpiexec_flavor
from hpc.provenance import git_state, relevant_environment
from hpc.timing import PhaseTimer
from hpc.workloads import WORKLOADS, get_workload
from hpc.workloads.decomp import balanced_dims, block_counts, block_range


@pytest.mark.parametrize("n, parts", [(10, 3), (7, 7), (5, 1), (100, 8), (3, 4)])
def test_block_ranges_tile_without_gaps(n, parts):
    ranges = [block_range(n, parts, i) for i in range(parts)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    sizes = [hi - lo for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert list(block_counts(n, parts)) == sizes


@pytest.mark.parametrize("p, dims", [(1, (1, 1)), (2, (2, 1)), (4, (2, 2)), (6, (3, 2)),
                                     (7, (7, 1)), (12, (4, 3)), (16, (4, 4))])
def test_balanced_dims(p, dims):
    assert balanced_dims(p) == dims


def test_unknown_workload_names_the_valid_ones():
    with pytest.raises(UserError, match="valid: pi, heat2d, nbody, kmeans, amdahl"):
        get_workload("nope")


def test_resolve_params_fills_defaults_and_rejects_unknown():
    heat = WORKLOADS["heat2d"]
    assert heat.resolve_params({"n": 64}, 2) == {"n": 64, "steps": 200, "residual_every": 10,
                                                 "exchange": "auto"}
    with pytest.raises(UserError, match="unknown parameter.*stepz.*valid: n, steps"):
        heat.resolve_params({"stepz": 3}, 1)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_weak_scaling_keeps_work_per_rank(name):
    cls = WORKLOADS[name]
    params = cls.defaults()
    base = cls.work(params)
    for ranks in (2, 4, 8):
        grown = dict(params, **{cls.size_param: cls.weak_scaled_size(params[cls.size_param],
                                                                     ranks)})
        assert cls.work(grown) / ranks == pytest.approx(base, rel=0.01)


def test_phase_timer_accumulates():
    ticks = iter([0.0, 1.0, 5.0, 7.5])
    timer = PhaseTimer(["compute", "communication"], clock=lambda: next(ticks))
    with timer.phase("compute"):
        pass
    with timer.phase("compute"):
        pass
    assert list(timer.seconds) == [3.5, 0.0]
    timer.reset()
    assert list(timer.seconds) == [0.0, 0.0]


def test_inside_mpi_job_detection():
    assert not inside_mpi_job({"PATH": "/bin", "SLURM_JOB_ID": "3"})
    assert inside_mpi_job({"PMI_RANK": "0"})
    assert inside_mpi_job({"OMPI_COMM_WORLD_SIZE": "2"})
    assert inside_mpi_job({"PMIX_RANK": "1"})


def test_relevant_environment_keeps_only_known_prefixes():
    env = {"SLURM_JOB_ID": "1", "OMP_NUM_THREADS": "2", "AWS_SECRET_ACCESS_KEY": "x",
           "HOME": "/root"}
    assert relevant_environment(env) == {"OMP_NUM_THREADS": "2", "SLURM_JOB_ID": "1"}


@pytest.mark.parametrize("name, value, phrase", [
    ("steps", 2.7, "whole number"), ("steps", True, "whole number"),
    ("steps", "10", "whole number"), ("steps", 2**70, "64-bit"),
    ("dt", float("nan"), "finite"), ("dt", float("inf"), "finite"), ("dt", "0.1", "number"),
    ("seed", float("inf"), "whole number"),
])
def test_parameters_are_checked_as_their_types(name, value, phrase):
    """No silent truncation or bool-as-int: nbody --steps 2.7 used to run 2 steps."""
    with pytest.raises(UserError, match=phrase):
        get_workload("nbody").resolve_params({name: value}, 1)


def test_numpy_integers_are_whole_numbers():
    assert get_workload("nbody").resolve_params({"steps": np.int64(3)}, 1)["steps"] == 3


@pytest.mark.parametrize("name, size, at_least_gib", [
    ("heat2d", 20_000, 15), ("nbody", 10**8, 9), ("kmeans", 10**9, 50)])
def test_memory_models_count_the_big_arrays(name, size, at_least_gib):
    cls = get_workload(name)
    params = cls.resolve_params({cls.size_param: size}, 1)
    per_rank, rank0 = cls.memory_bytes(params, 1)
    assert per_rank + rank0 >= at_least_gib * 2**30
    # Spread over more ranks, each rank holds less (nbody: every rank holds all positions).
    assert cls.memory_bytes(params, 4)[0] <= per_rank


def test_package_versions_match_importlib_metadata(tmp_path):
    """The one-pass scan of the record's package versions gives importlib.metadata's
    answers, and reads an unversioned egg-info folder's PKG-INFO like it does."""
    from importlib import metadata

    from hpc.provenance import PACKAGES, installed_versions, package_versions

    versions = package_versions()
    for name in PACKAGES:
        try:
            expected = metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name not in versions
            continue
        assert versions[name] == expected, name
    egg = tmp_path / "Some.Pkg.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: Some.Pkg\nVersion: 1.2.3\n")
    (tmp_path / "other_pkg-4.5.dist-info").mkdir()
    assert installed_versions([str(tmp_path)]) == {"some_pkg": "1.2.3", "other_pkg": "4.5"}


def test_mpiexec_flavor_is_asked_once_until_mpiexec_changes(tmp_path, monkeypatch):
    """`mpiexec --version` runs on the first launch only; a changed mpiexec is asked again.
    A real executable stands in for mpiexec and counts how often it was asked."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    asked = tmp_path / "asked"
    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!/bin/sh\necho x >> {asked}\necho 'HYDRA build details:'\n")
    fake.chmod(0o755)

    def flavor() -> str:
        mpiexec_flavor.cache_clear()  # a new process each time, as each launch is
        return mpiexec_flavor(str(fake))

    assert [flavor(), flavor()] == ["mpich", "mpich"]
    assert asked.read_text().count("x") == 1
    fake.write_text(f"#!/bin/sh\necho x >> {asked}\necho 'Open MPI 5.0.3'\n")
    assert flavor() == "openmpi"
    assert asked.read_text().count("x") == 2


def test_git_state_reads_commit_and_dirtiness_as_git_does(tmp_path):
    """On a real repository: the commit rev-parse names, dirty only for changed tracked
    files; no repository (or no commit yet) is "unknown"."""
    assert git_state(tmp_path) == {"git_commit": "unknown", "git_dirty": False}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c",
                               "user.email=t@t", *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "a.py").write_text("1\n")
    git("add", "a.py")
    assert git_state(tmp_path) == {"git_commit": "unknown", "git_dirty": False}
    git("commit", "-q", "-m", "a")
    head = git("rev-parse", "HEAD")
    (tmp_path / "untracked.py").write_text("x\n")
    assert git_state(tmp_path) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "a.py").write_text("2\n")
    assert git_state(tmp_path) == {"git_commit": head, "git_dirty": True}
