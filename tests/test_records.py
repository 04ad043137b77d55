"""HDF5 run records: written, read back field by field, and safe against a kill mid-write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from hpc.errors import UserError
from hpc.records import SCHEMA_VERSION, RunRecord, append_run, check_output_path, is_hdf5, read_runs


def make_record(**overrides) -> RunRecord:
    fields = dict(
        workload="heat2d", backend="cython", ranks=2, nodes=1, size=64, size_parameter="n",
        parameters={"n": 64, "steps": 5}, repeats=2, warmup=1,
        start_utc="2026-11-25T00:00:00.000000+00:00",
        end_utc="2026-11-25T00:00:01.000000+00:00", status="ok", verified=True,
        verification_method="serial reference", verification_detail="max |diff| = 0",
        phases=["total", "compute", "communication"],
        timings=np.arange(12, dtype=float).reshape(2, 2, 3),
        result={"checksum": 1.5, "field": np.eye(3), "grid": np.array([2, 1])},
        provenance={"git_commit": "abc", "git_dirty": False, "hostnames": ["a", "b"],
                    "packages": {"numpy": "2.0"}, "slurm": {}},
        run_id="r1",
    )
    fields.update(overrides)
    return RunRecord(**fields)


def test_round_trip_field_by_field(tmp_path):
    path = tmp_path / "r.h5"
    assert append_run(path, make_record()) == "runs/000001"
    assert append_run(path, make_record(run_id="r2", ranks=4)) == "runs/000002"
    runs = read_runs(path)
    assert [r["run_id"] for r in runs] == ["r1", "r2"]
    first = runs[0]
    assert first["workload"] == "heat2d" and first["backend"] == "cython"
    assert first["ranks"] == 2 and runs[1]["ranks"] == 4
    assert first["parameters"] == {"n": 64, "steps": 5}
    assert first["verified"] is True and first["status"] == "ok"
    assert first["phases"] == ["total", "compute", "communication"]
    np.testing.assert_array_equal(first["timings"], np.arange(12.0).reshape(2, 2, 3))
    assert first["result"]["checksum"] == 1.5
    np.testing.assert_array_equal(first["result"]["field"], np.eye(3))
    assert first["provenance"]["hostnames"] == ["a", "b"]
    assert first["provenance"]["packages"]["numpy"] == "2.0"


def test_readable_with_plain_h5py(tmp_path):
    """A user without this project can read everything with h5py alone."""
    path = tmp_path / "r.h5"
    append_run(path, make_record())
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        run = f["runs/000001"]
        assert run.attrs["workload"] == "heat2d"
        assert json.loads(run.attrs["parameters"])["steps"] == 5
        assert run["timings"].shape == (2, 2, 3)
        assert list(run["timings"].attrs["phases"]) == ["total", "compute", "communication"]
        assert run["timings"].attrs["units"] == "s"
        assert run["provenance"].attrs["git_commit"] == "abc"
        assert run["provenance/packages"].attrs["numpy"] == "2.0"


def test_non_hdf5_target_is_refused_and_untouched(tmp_path):
    path = tmp_path / "data.h5"
    path.write_text("not hdf5")
    with pytest.raises(UserError, match="not an HDF5 file"):
        append_run(path, make_record())
    assert path.read_text() == "not hdf5"


def test_is_hdf5_answers_as_h5py_does(tmp_path):
    """The signature check the launching process makes without h5py: files with and
    without a user block (the signature then at 512, 1024, 2048, ...), and look-alikes."""
    files = {}
    for userblock in (0, 512, 4096):
        files[f"ub{userblock}"] = tmp_path / f"ub{userblock}.h5"
        with h5py.File(files[f"ub{userblock}"], "w", userblock_size=userblock) as f:
            f["x"] = 1
    signature = files["ub0"].read_bytes()[:8]
    for name, data in {"text": b"not hdf5", "empty": b"", "short": signature[:5],
                       "at256": b"\0" * 256 + signature + b"\0" * 1024,
                       "at1024": b"\0" * 1024 + signature}.items():
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    answers = {name: is_hdf5(path) for name, path in files.items()}
    assert answers == {name: h5py.is_hdf5(path) for name, path in files.items()}
    assert answers["ub4096"] and answers["at1024"] and not answers["at256"]


def test_check_output_path_accepts_new_nested_file(tmp_path):
    assert check_output_path(tmp_path / "a" / "b" / "r.h5") == tmp_path / "a" / "b" / "r.h5"


WRITER = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from tests.test_records import make_record
from hpc.records import append_run
big = {{"big": np.random.default_rng(0).random(60_000_000)}}  # 480 MB: a long write
append_run({path!r}, make_record(run_id="doomed", result=big))
"""


def test_kill_during_append_keeps_earlier_runs(tmp_path):
    path = tmp_path / "r.h5"
    append_run(path, make_record(run_id="first"))
    append_run(path, make_record(run_id="second"))
    before = path.read_bytes()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, path=str(path))])
    temporaries = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and writer.poll() is None:
        temporaries = list(tmp_path.glob(".r.h5.*.tmp"))
        if temporaries and temporaries[0].stat().st_size > 10_000_000:
            break  # the writer is in the middle of writing the big dataset
        time.sleep(0.005)
    assert writer.poll() is None, "the writer finished before it could be killed"
    writer.send_signal(signal.SIGKILL)  # a real kill, mid-write
    writer.wait()

    assert path.read_bytes() == before
    assert [r["run_id"] for r in read_runs(path)] == ["first", "second"]
    # The next append still works and clears the dead writer's leftover copy.
    append_run(path, make_record(run_id="third"))
    assert [r["run_id"] for r in read_runs(path)] == ["first", "second", "third"]
    assert not list(tmp_path.glob(".r.h5.*.tmp"))


def test_strings_with_nul_bytes_are_stored(tmp_path):
    """Open MPI pads its library version string with NUL bytes; HDF5 strings cannot hold them."""
    path = tmp_path / "r.h5"
    append_run(path, make_record(provenance={"mpi_library_version": "Open MPI v4.1.4\x00"}))
    assert read_runs(path)[0]["provenance"]["mpi_library_version"] == "Open MPI v4.1.4"


@pytest.mark.skipif(shutil.which("h5dump") is None,
                    reason="h5dump not installed (Debian: apt-get install hdf5-tools)")
def test_h5dump_reads_a_record(tmp_path):
    """The records are plain HDF5: the HDF5 command-line tools read them (1.10 and later)."""
    path = tmp_path / "r.h5"
    append_run(path, make_record())
    out = subprocess.run(["h5dump", "-a", "/runs/000001/workload", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert '"heat2d"' in out.stdout
    out = subprocess.run(["h5dump", "-d", "/runs/000001/timings", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "( 2, 2, 3 )" in out.stdout, out.stdout
