"""Your own MPI application as a study, on the local launcher: a real program compiled
here with mpicc, run through {mpirun}, each repeat in its own folder, checked."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from hpc.records import read_runs
from tests.conftest import assert_ok, run_hpc
from tests.mpi_app import build
from tests.test_cli_errors import assert_clean_error

STUDY = """
    name = "app-study"
    kind = "strong"
    ranks = [1, 2]
    size = 20000
    repeats = 2
    warmup = 1
    launcher = "local"
    timeout = 300
    [command]
    run = "{mpirun} ./app {n} EXTRA"
    time_regex = 'time: ([0-9.]+)'
    version = "./app --version"
    inputs = ["params.txt"]
    [command.derived]
    n = "size * 5"
    [command.metrics]
    checksum = { regex = 'checksum: ([0-9]+)', unit = "1" }
    [env]
    APP_MODE = "studied"
    [check]
    match = ['ranks: {ranks}\\n', 'mode: studied']
    agree = { checksum = 0 }
    [resources]
    time = "00:05:00"
    """


def write_study(folder: Path, extra: str = "", **replace: str) -> Path:
    text = textwrap.dedent(STUDY)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / "study.toml"
    path.write_text(text + textwrap.dedent(extra))
    (folder / "params.txt").write_text("an input the program could read\n")
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("app"))


def test_own_application_runs_in_its_folders_and_passes_its_checks(app, tmp_path):
    (tmp_path / "app").symlink_to(app)
    study = write_study(tmp_path, EXTRA="")
    out = tmp_path / "results" / "app-study.h5"
    proc = run_hpc("study", "run", str(study), "--out", str(out), "--format", "md")
    assert_ok(proc)
    assert "report:" in proc.stdout
    runs = read_runs(out)
    assert [(r["ranks"], r["status"]) for r in runs] == [(1, "ok"), (2, "ok")]
    for run in runs:
        result, app_info = run["result"], run["provenance"]["application"]
        checksums = result["metrics"]["checksum"]["values"].tolist()
        assert len(checksums) == 2 and len(set(checksums)) == 1
        assert f"ranks: {run['ranks']}" in result["output"][0]
        # {mpirun} became this machine's mpiexec with the point's ranks.
        assert f"-n {run['ranks']} " in app_info["command"]
        assert app_info["command"].endswith("/app 100000")
        assert app_info["executable_sha256"] == hashlib.sha256(app.read_bytes()).hexdigest()
        assert "libmpi" in app_info["linked_mpi"]
        assert app_info["version"] == "mpi_app 1.0"
        assert run["verification_detail"].endswith("every [check] passed")
    # A fresh folder per point and repeat, warm-up apart, each with the input and output.
    folders = sorted((tmp_path / "results" / "app-study.points").glob("point-*/*"))
    assert [f.name for f in folders] == ["repeat-0", "repeat-1", "warmup-1"] * 2
    for folder in folders:
        assert (folder / "params.txt").read_text().startswith("an input")
        assert float((folder / "result.txt").read_text()) == checksums[0]
        assert "mode: studied" in (folder / "stdout.txt").read_text()


def test_rank_dependent_checksum_fails_its_point_with_both_values(app, tmp_path):
    (tmp_path / "app").symlink_to(app)
    study = write_study(tmp_path, EXTRA="--rank-dependent")
    out = tmp_path / "s.h5"
    proc = run_hpc("study", "run", str(study), "--out", str(out), "--no-report")
    assert proc.returncode == 1, proc.stderr
    first, second = read_runs(out)
    assert first["status"] == "ok" and second["status"] == "verification_failed"
    a = int(first["result"]["metrics"]["checksum"]["values"][-1])
    b = int(second["result"]["metrics"]["checksum"]["values"][-1])
    assert b == a + 1  # the 2-rank run added 2, the 1-rank one 1
    for text in (second["verification_detail"], proc.stderr):
        assert f"checksum: {float(b)!r} here, {float(a)!r} at ranks=1" in text


def test_program_of_another_mpi_runs_as_one_rank_copies_and_fails_the_rank_check(tmp_path):
    system_mpicc = Path("/usr/bin/mpicc")
    if not system_mpicc.exists():
        pytest.skip("no system MPI (Open MPI) compiler to build a program of another MPI")
    app = build(tmp_path, str(system_mpicc), name="app")
    study = write_study(tmp_path, EXTRA="", **{"[1, 2]": "[2, 3]"})
    # Open MPI singletons started together sometimes fail to start their daemon
    # ("Unable to start a daemon on the local node"); isolated ones need none.
    proc = run_hpc("study", "run", str(study), "--out", str(tmp_path / "s.h5"),
                   "--no-report", env={"OMPI_MCA_ess_singleton_isolated": "1"})
    assert proc.returncode == 1, proc.stderr
    assert "hpc: warning: the program links openmpi" in proc.stderr
    assert "[check] match 'ranks: 2\\\\n' not found" in proc.stderr
    assert app.exists()


@pytest.mark.parametrize(("change", "phrase"), [
    ({"{n} EXTRA": "{n} {x}"}, "uses {x}"),
    ({'inputs = ["params.txt"]': 'inputs = ["missing.dat"]'}, "'missing.dat' does not exist"),
    ({'APP_MODE = "studied"': '"1BAD" = "x"'}, "[env]: environment variable '1BAD'"),
    ({'time = "00:05:00"': 'gpus = 1'}, "[resources] unknown resource field(s): gpus"),
    ({'time = "00:05:00"': 'nodes = 0'}, "[resources] nodes must be at least 1"),
    ({'inputs = ["params.txt"]': 'workdir = "../elsewhere"'}, "outside the study's folder"),
    ({'n = "size * 5"': 'n = "size / 5"'}, "[command.derived] n"),
])
def test_bad_study_fails_before_anything_runs(tmp_path, change, phrase):
    study = write_study(tmp_path, **change)
    out = tmp_path / "s.h5"
    proc = run_hpc("study", "run", str(study), "--out", str(out))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert phrase in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "s.points").exists()


def test_rerun_measures_points_again_and_keeps_the_old_records(app, tmp_path):
    (tmp_path / "app").symlink_to(app)
    study = write_study(tmp_path, EXTRA="")
    out = tmp_path / "s.h5"
    assert_ok(run_hpc("study", "run", str(study), "--out", str(out), "--no-report"))
    again = run_hpc("study", "run", str(study), "--out", str(out), "--no-report",
                    "--rerun", "1")
    assert_ok(again)
    assert "1 earlier record(s) kept, marked superseded" in again.stderr
    runs = read_runs(out)
    assert [(r["ranks"], bool(r.get("superseded"))) for r in runs] == [
        (1, False), (2, True), (2, False)]
    assert_clean_error(run_hpc("study", "run", str(study), "--out", str(out), "--rerun",
                               "7"), "--rerun 7: give point indexes 0 to 1")


@pytest.mark.parametrize(("launcher", "phrases"), [
    ("local", ["point 1 runs (repeat 0): ", "mpiexec -n 2 ", "/app 100000\n",
               "-m hpc study point "]),
    ("slurm", ["point 1 runs (repeat 0): srun --mpi=pmi2 --nodes=1 --ntasks=2 ",
               "#SBATCH --array=0-0", "--starter srun --mpi pmi2", "study report"]),
])
def test_dry_run_prints_each_points_command_and_the_job_script(tmp_path, launcher, phrases):
    study = write_study(tmp_path, EXTRA="", **{
        'launcher = "local"': f'launcher = "{launcher}"\nprofile = "local"'})
    proc = run_hpc("study", "run", str(study), "--out", str(tmp_path / "s.h5"), "--dry-run")
    assert_ok(proc)
    for phrase in phrases:
        assert phrase in proc.stdout, (phrase, proc.stdout)
    assert not (tmp_path / "s.h5").exists()


def test_dry_run_on_slurm_gives_each_shape_its_own_array_and_the_report_waits_for_all(
        tmp_path):
    """Slurm sizes every task of an array alike: points of 1, 2 and 4 ranks are three
    arrays of exactly their ranks (3 threads: cpus-per-task 3), not one of 4 ranks each;
    array_throttle = 2 chains each array after the one two before it."""
    study = write_study(tmp_path, EXTRA="", **{
        'launcher = "local"': 'launcher = "slurm"\nprofile = "local"\narray_throttle = 2',
        "ranks = [1, 2]": "ranks = [1, 2, 4]\nthreads = [1, 3]"})
    proc = run_hpc("study", "run", str(study), "--out", str(tmp_path / "s.h5"), "--dry-run")
    assert_ok(proc)
    scripts = proc.stdout.split("# job ")[1:]
    assert len(scripts) == 7, proc.stdout
    shapes = [[line.split("=", 1)[1] for line in text.splitlines()
               if line.startswith(("#SBATCH --ntasks-per-node", "#SBATCH --cpus-per-task",
                                   "#SBATCH --array"))] for text in scripts]
    assert shapes == [["1", "1", "0-0"], ["1", "3", "0-0"], ["2", "1", "0-0"],
                      ["2", "3", "0-0"], ["4", "1", "0-0"], ["4", "3", "0-0"],
                      ["1", "1"]], shapes
    assert "point 4 runs (repeat 0): srun --mpi=pmi2 --nodes=1 --ntasks=4 " in proc.stdout
    assert [text.splitlines()[0].split("cpu(s)")[1] for text in scripts[:6]] == [
        "", ""] + [f", after job {n} ended (array_throttle)" for n in (1, 2, 3, 4)]
    assert scripts[6].startswith("7 of 7: 1 step(s) on 1 node(s) x 1 task(s) x 1 cpu(s), "
                                 "after every job above (--dependency=afterany on all 6 "
                                 "array jobs)")
    assert "study report" in scripts[6]


def test_threads_dimension_sets_omp_threads_per_point(app, tmp_path):
    (tmp_path / "app").symlink_to(app)
    study = write_study(tmp_path, EXTRA="", **{
        "ranks = [1, 2]": "ranks = [1]\nthreads = [1, 2]",
        "match = [": "match = ['threads: {threads}\\n', "})
    out = tmp_path / "s.h5"
    proc = run_hpc("study", "run", str(study), "--out", str(out), "--format", "md")
    assert_ok(proc)
    runs = read_runs(out)
    assert [(r["ranks"], r["parameters"]["threads"], r["status"]) for r in runs] == [
        (1, 1, "ok"), (1, 2, "ok")]
    assert "threads: 2\n" in runs[1]["result"]["output"][0]
    assert [r["machine"]["ranks_times_threads_per_node"] for r in runs] == [1, 2]
    assert "| threads per rank | 1, 2 |" in (tmp_path / "s.md").read_text()
