"""Runtime hardening (issue 9): ranks die with their launcher and a run that lost it
records nothing; one `hpc study run` per study file; user regexes under a time limit.

All real: real mpiexec and ranks, real kill -9, real HDF5 read back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from hpc.launchers.local import hpc_program
from hpc.mpi_env import mpiexec_command
from hpc.records import read_runs
from tests.conftest import ROOT, assert_ok, run_hpc
from tests.test_study_run import descendants, write_study

# A heat2d run of 2 ranks that takes several seconds even on a quiet machine (1e10 cell
# updates); it is killed one second in.
LONG_RUN = ["run", "heat2d", "--np", "2", "--size", "1024", "--steps", "10000", "--repeats",
            "1", "--warmup", "0"]


def hpc_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "HYDRA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def start_hpc(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpc", *args], cwd=ROOT, env=hpc_env(),
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def rank_pids(launcher: int, count: int, timeout: float = 60) -> list[int]:
    """The pids of the ranks (``-m hpc run`` below mpiexec) once ``count`` or more run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks = [pid for pid in descendants(launcher) if _is_rank(pid)]
        if len(ranks) >= count:
            return ranks
        time.sleep(0.05)
    pytest.fail(f"{count} ranks never started below pid {launcher}")


# A rank's command line after the interpreter: python -P -m hpc run ... (not mpiexec ...)
RANK_WORDS = [*(w.encode() for w in hpc_program()[1:]), b"run"]


def _is_rank(pid: int) -> bool:
    with contextlib.suppress(OSError):
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
        return words[1:1 + len(RANK_WORDS)] == RANK_WORDS
    return False


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after ``timeout`` seconds (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_ranks_die_with_their_launcher_and_record_nothing(tmp_path, how):
    out = tmp_path / "r.h5"
    proc = start_hpc(*LONG_RUN, "--out", str(out))
    ranks: list[int] = []
    try:
        ranks = rank_pids(proc.pid, 2)
        time.sleep(1.0)  # well into the run: the ranks are computing and exchanging halos
        os.kill(proc.pid, how)  # the launcher alone, as `timeout` or a lost shell would
        proc.wait(timeout=30)
        survivors = wait_gone(ranks, timeout=10)
        assert not survivors, f"ranks {survivors} outlived their launcher"
    finally:  # the ranks were reparented when the launcher died: kill them by pid
        for pid in [*descendants(proc.pid), *ranks]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Every rank is gone, so nothing can append later: the file must not exist.
    assert not out.exists()


def _shadowing_checkout(folder: Path) -> None:
    """An `hpc` package in ``folder`` that fails when imported (another checkout)."""
    (folder / "hpc").mkdir()
    for name in ("__init__.py", "__main__.py"):
        (folder / "hpc" / name).write_text("raise ImportError('the working folder hpc')\n")


# The launching process, as a script (the working folder not on sys.path), saying which
# of the libraries only ranks need it imported: none, so that it starts them sooner.
LAUNCHER = ("import sys; del sys.path[0]; from hpc.cli import main; code = main(sys.argv[1:]); "
            "print(sorted(m for m in ('numpy', 'h5py', 'mpi4py') if m in sys.modules)); "
            "sys.exit(code)")


def test_ranks_run_this_installation_whatever_the_working_folder_holds(tmp_path):
    """`hpc run --np` started inside another checkout of the suite: its ranks import this
    installation's hpc, not the working folder's (`python -m` would put it first). The
    launching process imports neither numpy, h5py nor mpi4py, with --out existing."""
    _shadowing_checkout(tmp_path)
    for _ in range(2):  # the second run appends: --out is checked as an existing file
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, "run", "pi", "--np", "2",
                               "--samples", "1000", "--repeats", "1", "--warmup", "0",
                               "--quiet", "--out", "r.h5"], cwd=tmp_path, env=hpc_env(),
                              capture_output=True, text=True, timeout=120, check=False)
        assert_ok(proc)
        assert proc.stdout.splitlines()[-1] == "[]", proc.stdout
    assert len(read_runs(tmp_path / "r.h5")) == 2
    # Python 3.10 has no -P: the launcher's other way must skip the folder as well.
    old = subprocess.run([*hpc_program((3, 10)), "--version"], cwd=tmp_path, env=hpc_env(),
                         capture_output=True, text=True, timeout=60, check=False)
    assert_ok(old)
    assert old.stdout.startswith("hpc "), old.stdout


def test_a_rank_whose_launcher_is_gone_does_not_append(tmp_path):
    """Started by mpiexec directly with the identity of a launcher that has ended."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / "r.h5"
    argv, env = mpiexec_command(2, [sys.executable, "-m", "hpc", "run", "pi", "--size",
                                    "1000", "--out", str(out)])
    env["HPC_LAUNCHER"] = f"{gone}:1"
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode != 0
    assert "is gone" in proc.stderr
    assert not out.exists()


SIZE = 300_000_000  # pi samples: each point busy for seconds
SLOW_STUDY = f"""
    workload = "pi"
    kind = "strong"
    ranks = [1, 2, 3]
    size = {SIZE}
    repeats = 2
    warmup = 0
    """


def wait_for_runs(out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if out.exists() and h5py.is_hdf5(out) and len(read_runs(out)) >= count:
                return
        time.sleep(0.05)
    pytest.fail(f"{out} never held {count} run(s)")


def point_keys(out: Path) -> list[tuple[int, int]]:
    return sorted((int(r["ranks"]), int(r["size"])) for r in read_runs(out))


def test_a_second_run_of_the_same_study_says_who_holds_it(tmp_path):
    study = write_study(tmp_path, SLOW_STUDY)
    out = tmp_path / "s.h5"
    first = start_hpc("study", "run", str(study), "--out", str(out), "--no-report")
    try:
        lock = tmp_path / ".s.h5.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run_hpc("study", "run", str(study), "--out", str(out), "--no-report",
                         timeout=60)
        assert second.returncode == 4, second.stderr
        assert f"pid {first.pid} on host " in second.stderr and " since 20" in second.stderr
        assert "Traceback" not in second.stderr
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    assert point_keys(out) == [(1, SIZE), (2, SIZE), (3, SIZE)]
    assert not (tmp_path / ".s.h5.lock").exists()


def test_killing_only_the_study_then_rerunning_at_once_records_each_point_once(tmp_path):
    study = write_study(tmp_path, SLOW_STUDY)
    out = tmp_path / "s.h5"
    first = start_hpc("study", "run", str(study), "--out", str(out), "--no-report")
    try:
        wait_for_runs(out, 1)
        ranks = rank_pids(first.pid, 2)  # a later point (2 or 3 ranks) is running
        os.kill(first.pid, signal.SIGKILL)  # the study process alone
        first.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    rerun = run_hpc("study", "run", str(study), "--out", str(out), "--no-report", timeout=300)
    assert_ok(rerun)
    assert not wait_gone(ranks, timeout=1)
    keys = point_keys(out)
    assert keys == [(1, SIZE), (2, SIZE), (3, SIZE)], keys


def test_a_backtracking_time_regex_fails_its_point_within_the_timeout(tmp_path):
    # (a+)+b against 40 a's takes 2**40 steps: hours, not seconds.
    study = write_study(tmp_path, f"""
        kind = "strong"
        ranks = [1, 2]
        size = 1
        repeats = 2
        warmup = 0
        timeout = 3
        [command]
        run = "{sys.executable} -c 'print(40 * chr(97))' {{ranks}}"
        time_regex = '(a+)+b'
        """)
    out = tmp_path / "s.h5"
    start = time.monotonic()
    proc = run_hpc("study", "run", str(study), "--out", str(out), "--no-report", timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert "catastrophic backtracking" in proc.stderr and "took longer than" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("catastrophic backtracking") == 2  # each point, in its time
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert read_runs(out) == []

