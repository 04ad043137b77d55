"""Reading commands (show, study report, study compare) never write their inputs.

As root, chmod does not stop a write, so every test checks that nothing was written
(checksum and modification time) rather than trusting permissions; one test reads from
a real read-only bind mount, where any write would fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.conftest import run_hpc


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_report_and_compare_leave_their_inputs_as_they_were(study_file, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    shutil.copy(study_file, a)
    shutil.copy(study_file, b)
    before = {p: fingerprint(p) for p in (a, b)}
    compare = run_hpc("study", "compare", str(a), str(b))
    assert compare.returncode == 0, compare.stderr
    report = run_hpc("study", "report", str(a), "--out", str(tmp_path / "out" / "r.md"),
                     "--format", "md")
    assert report.returncode == 0, report.stderr
    assert run_hpc("show", str(a), str(b)).returncode == 0
    assert {p: fingerprint(p) for p in (a, b)} == before
    with h5py.File(a, "r") as f:
        assert "analysis" not in f.attrs  # no cached analysis: nobody asked for one
    assert (tmp_path / "out" / "r.md").is_file()


def test_compare_with_a_garbage_file_touches_neither(study_file, tmp_path):
    a, junk = tmp_path / "a.h5", tmp_path / "junk.h5"
    shutil.copy(study_file, a)
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 300)  # an HDF5 signature, then nothing
    before = {p: fingerprint(p) for p in (a, junk)}
    proc = run_hpc("study", "compare", str(a), str(junk))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(junk) in proc.stderr, proc.stderr
    assert {p: fingerprint(p) for p in (a, junk)} == before


def test_store_analysis_caches_only_when_asked(study_file, tmp_path):
    a = tmp_path / "a.h5"
    shutil.copy(study_file, a)
    proc = run_hpc("study", "report", str(a), "--out", str(tmp_path / "r.md"), "--format",
                   "md", "--store-analysis")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(a, "r") as f:
        assert "analysis" in f.attrs


def test_read_only_file_in_a_read_only_folder(study_file, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    a = folder / "a.h5"
    shutil.copy(study_file, a)
    a.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = fingerprint(a)
        report = run_hpc("study", "report", str(a), "--out", str(tmp_path / "r.md"),
                         "--format", "md")
        compare = run_hpc("study", "compare", str(a), str(a))
        assert report.returncode == 0, report.stderr
        assert compare.returncode == 0, compare.stderr
        assert fingerprint(a) == before
        assert sorted(p.name for p in folder.iterdir()) == ["a.h5"]
    finally:
        folder.chmod(stat.S_IRWXU)


def _read_only_mount_works(src: Path, mnt: Path) -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$1" && '
         'mount -o remount,bind,ro "$1" && ! touch "$1/probe" 2>/dev/null', str(src), str(mnt)],
        capture_output=True, text=True, timeout=30, check=False)
    return None if probe.returncode == 0 else f"no read-only bind mount here: {probe.stderr}"


def test_really_read_only_mount(study_file, tmp_path):
    """Inputs on a read-only bind mount (in a private mount namespace): any write fails."""
    src, mnt, out = tmp_path / "src", tmp_path / "mnt", tmp_path / "out"
    for folder in (src, mnt, out):
        folder.mkdir()
    shutil.copy(study_file, src / "a.h5")
    shutil.copy(study_file, src / "b.h5")
    why = _read_only_mount_works(src, mnt)
    if why:
        pytest.skip(why)
    before = fingerprint(src / "a.h5")
    hpc = [sys.executable, "-m", "hpc"]
    script = (
        'mount --bind "$SRC" "$MNT" && mount -o remount,bind,ro "$MNT" || exit 99\n'
        '"$@" study compare "$MNT/a.h5" "$MNT/b.h5" > "$OUT/compare.txt" 2>&1;'
        ' echo $? >> "$OUT/rc"\n'
        '"$@" study report "$MNT/a.h5" --out "$OUT/r.md" --format md > "$OUT/report.txt" 2>&1;'
        ' echo $? >> "$OUT/rc"\n'
        '"$@" show "$MNT/a.h5" > "$OUT/show.txt" 2>&1; echo $? >> "$OUT/rc"\n'
        # No --out: the default target beside the input cannot be written; say so.
        '"$@" study report "$MNT/a.h5" > "$OUT/beside.txt" 2>&1; echo $? >> "$OUT/rc"\n')
    env = {**os.environ, "SRC": str(src), "MNT": str(mnt), "OUT": str(out)}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *hpc], env=env,
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode != 99, proc.stderr
    codes = (out / "rc").read_text().split()
    logs = {name: (out / f"{name}.txt").read_text()
            for name in ("compare", "report", "show", "beside")}
    assert codes == ["0", "0", "0", "2"], (codes, logs)
    assert "not writable" in logs["beside"] and "--out" in logs["beside"], logs["beside"]
    assert "Traceback" not in "".join(logs.values())
    assert (out / "r.md").is_file()
    assert fingerprint(src / "a.h5") == before
