"""A full disk (a real, small tmpfs): the write fails with a clear message and exit 5,
never a segfault; earlier runs stay intact; the new run is saved elsewhere, not lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpc.errors import NoSpace
from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.test_study_run import write_study

TMPFS_KB = 256


@pytest.fixture
def full(tmp_path):
    """A tmpfs of TMPFS_KB KiB, mounted for the test (root only; skipped otherwise)."""
    mount = tmp_path / "full"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_KB}k", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave_kb: int) -> None:
    """Fill ``folder``'s file system up to ``leave_kb`` KiB of free space."""
    filler = folder / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(folder)
    size = max(st.f_bavail * st.f_frsize - leave_kb * 1024, 0)
    with open(filler, "wb") as fh:
        fh.write(b"\0" * size)


def saved_path(stderr: str) -> Path:
    found = re.search(r"This run was saved to (\S+?); ", stderr)
    assert found, f"no saved path in:\n{stderr}"
    return Path(found.group(1))


def assert_clean_no_space(proc: subprocess.CompletedProcess, code: int) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr}"
    assert "no space left on the device of" in proc.stderr
    assert "Traceback" not in proc.stderr and "Segmentation" not in proc.stderr


@pytest.mark.parametrize("leave_kb", [0, 4, 12, 20, 28])
def test_run_on_a_full_disk_keeps_earlier_runs_and_saves_the_new_one(full, leave_kb):
    out = full / "runs.h5"
    assert_ok(run_hpc("run", "pi", "--np", "2", "--size", "1000", "--out", str(out)))
    before = out.read_bytes()
    fill(full, leave_kb)
    proc = run_hpc("run", "pi", "--np", "2", "--size", "2000", "--out", str(out), timeout=120)
    assert_clean_no_space(proc, NoSpace.exit_code)
    assert out.read_bytes() == before
    assert not list(full.glob(".runs.h5.*.tmp"))
    saved = saved_path(proc.stderr)
    try:
        assert [(r["workload"], r["size"]) for r in read_runs(saved)] == [("pi", 2000)]
    finally:
        saved.unlink()


def test_study_append_on_a_full_disk_keeps_its_points_and_saves_the_new_one(full, tmp_path):
    # The program itself fills the disk at its second point (2 ranks), before the append.
    app = tmp_path / "app.py"
    app.write_text(f"import sys\nif sys.argv[1] == '2':\n"
                   f"    with open({str(full / 'filler')!r}, 'wb') as fh:\n"
                   "        try:\n"
                   f"            fh.write(b'0' * {TMPFS_KB * 1024})\n"
                   "        except OSError:\n"
                   "            pass  # full, as intended\n"
                   "print('done')\n")
    study = write_study(tmp_path, f"""
        kind = "strong"
        ranks = [1, 2]
        size = 10
        repeats = 2
        warmup = 0
        [command]
        run = "{sys.executable} {app} {{ranks}}"
        """)
    out = full / "s.h5"
    proc = run_hpc("study", "run", str(study), "--out", str(out), "--no-report", timeout=120)
    assert_clean_no_space(proc, NoSpace.exit_code)
    assert [r["ranks"] for r in read_runs(out)] == [1]
    saved = saved_path(proc.stderr)
    try:
        assert [(r["workload"], r["ranks"]) for r in read_runs(saved)] == [("command", 2)]
    finally:
        saved.unlink()
