"""Stopping a run with SIGUSR1 and checking its resume: shared by the checkpoint tests of
every backend (tests/test_checkpoint.py on the CPU, tests/test_cuda_gpu.py on a GPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np

from hpc.checkpoint import EXIT_CHECKPOINTED, FORMAT_NAME
from hpc.records import read_runs
from tests.conftest import ROOT, RUN_TIMEOUT, assert_ok, run_hpc

HEAT = ("heat2d", "--size", "128", "--steps", "3000")
NBODY = ("nbody", "--size", "601", "--steps", "150")


def start_run(*args: str) -> subprocess.Popen:
    """`hpc run` in the background, its stderr readable line by line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "HYDRA_"))}
    return subprocess.Popen([sys.executable, "-m", "hpc", "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, text: str) -> None:
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"the run ended (exit {proc.wait()}) before printing {text!r}")


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    """Exit code and the rest of stderr (read from the same buffer as wait_for_line)."""
    deadline = threading.Timer(RUN_TIMEOUT, proc.kill)  # a hang fails instead of stalling
    deadline.start()
    try:
        rest = proc.stderr.read()
        return proc.wait(), rest
    finally:
        deadline.cancel()


def rank_pids(launcher: int) -> dict[int, int]:
    """MPI rank -> pid of the Python processes started under ``launcher``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    ranks, todo = {}, list(children.get(launcher, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((v[len(b"PMI_RANK="):] for v in env if v.startswith(b"PMI_RANK=")), None)
        if rank is not None and "python" in (Path("/proc") / str(pid) / "comm").read_text():
            ranks[int(rank)] = pid
    return ranks


def stop_in_last_repeat(tmp_path: Path, workload: tuple[str, ...], ranks: int,
                        signal_rank: int | None) -> tuple[Path, Path, tuple[str, ...], dict]:
    """Run 2 timed repeats; after the first, send SIGUSR1 to one rank, or to the launcher
    (mpiexec passes it on to every rank). Returns the record and checkpoint paths, the
    arguments of the run and the timings saved in the checkpoint."""
    out, ckpt = tmp_path / "runs.h5", tmp_path / "run.ckpt.h5"
    args = (*workload, "--np", str(ranks), "--repeats", "2", "--warmup", "0", "--out", str(out),
            "--checkpoint", str(ckpt))
    proc = start_run(*args)
    wait_for_line(proc, "repeat 1/2")
    if signal_rank is None:
        proc.send_signal(signal.SIGUSR1)
    else:
        os.kill(rank_pids(proc.pid)[signal_rank], signal.SIGUSR1)
    code, output = finish(proc)
    assert code == EXIT_CHECKPOINTED, output
    assert "state saved to" in output and not out.exists()
    with h5py.File(ckpt, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME
        assert f.attrs["iteration"] == 1  # the second, last repeat
        assert 0 < f["state"].attrs["step"] < int(workload[4])
        assert f["timings"].shape == (1, ranks, 3) and f["partial"].shape == (ranks, 3)
        saved = {"first_repeat": f["timings"][0], "partial": f["partial"][()]}
    return out, ckpt, args, saved


def uninterrupted(tmp_path: Path, workload: tuple[str, ...], ranks: int) -> dict:
    path = tmp_path / "reference.h5"
    assert_ok(run_hpc("run", *workload, "--np", str(ranks), "--repeats", "1", "--warmup", "0",
                      "--out", str(path)))
    return read_runs(path)[0]


def check_resumed(out: Path, ckpt: Path, ranks: int, saved: dict) -> dict:
    [run] = read_runs(out)
    assert run["segments"] == 2 and run["resumed"] is True
    assert len(run["segments_utc"]) == 2 and run["start_utc"] == run["segments_utc"][0][0]
    timings = run["timings"]
    assert timings.shape == (2, ranks, 3)
    # The finished repeat is carried over as measured; the stopped one adds both parts.
    assert np.array_equal(timings[0], saved["first_repeat"])
    assert np.all(timings[1] > saved["partial"])
    assert run["verified"] and not ckpt.exists()  # a recorded run leaves nothing to resume
    return run
