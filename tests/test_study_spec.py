"""Study files: the ladder and sizes generated from the spec, and every bad input refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc.errors import UserError
from hpc.study.cli import resolve_study_path
from hpc.study.plan import plan_study
from hpc.study.spec import StudySpec, load_study, parse_study, shipped_studies_folder
from hpc.workloads import WORKLOADS
from tests.conftest import run_hpc
from tests.test_cli_errors import assert_clean_error

HEAT = {"workload": "heat2d", "kind": "strong", "ranks": [1, 2, 4], "size": 64,
        "params": {"steps": 5}}


def study(**changes) -> StudySpec:
    data = {**HEAT, **changes}
    return parse_study({k: v for k, v in data.items() if v is not None}, "test.toml")


def refused(*phrases: str, **changes) -> None:
    with pytest.raises(UserError) as info:
        study(**changes)
    for phrase in phrases:
        assert phrase in str(info.value), (phrase, str(info.value))


# -- the ladder -------------------------------------------------------------------------

@pytest.mark.parametrize(("ranks", "ladder"), [
    ({"from": 1, "to": 16}, (1, 2, 4, 8, 16)),
    ({"from": 3, "to": 20}, (3, 6, 12)),
    ({"from": 2, "to": 8, "step": 2}, (2, 4, 6, 8)),
    ([4, 1, 2], (1, 2, 4)),
])
def test_ladder_generated_from_the_spec(ranks, ladder):
    assert study(ranks=ranks).ranks == ladder


def test_baseline_is_the_smallest_rank_count_whatever_the_order():
    spec = study(ranks=[8, 2, 4], kind="weak")
    points = plan_study(spec)
    assert [p.ranks for p in points] == [2, 4, 8]
    assert points[0].size == 64  # the given size belongs to the smallest rank count


# -- sizes --------------------------------------------------------------------------------

def test_strong_study_keeps_the_size():
    assert {p.size for p in plan_study(study())} == {64}


@pytest.mark.parametrize(("workload", "size", "params"), [
    ("heat2d", 256, {"steps": 5}),     # work ∝ n²: n grows as √p
    ("nbody", 512, {"steps": 2}),      # work ∝ n²
    ("kmeans", 10000, {}),             # work ∝ points
    ("pi", 1_000_000, {}),
])
def test_weak_study_keeps_work_per_rank_constant(workload, size, params):
    spec = study(workload=workload, kind="weak", size=size, params=params,
                 ranks={"from": 1, "to": 64})
    points = plan_study(spec)
    cls = WORKLOADS[workload]
    per_rank = [cls.work(p.params) / p.ranks for p in points]
    assert max(per_rank) / min(per_rank) < 1.01, per_rank
    # The growth is applied to the workload's own size parameter, nothing else.
    assert [p.params[cls.size_param] for p in points] == [p.size for p in points]
    assert points[-1].size > points[0].size


def test_heat2d_weak_sizes_grow_as_the_square_root_of_ranks():
    sizes = [p.size for p in plan_study(study(kind="weak", size=1000, ranks=[1, 4, 16]))]
    assert sizes == [1000, 2000, 4000]


def test_external_command_weak_sizes_follow_its_work_exponent():
    spec = parse_study({"kind": "weak", "ranks": [1, 2, 4], "size": 100,
                        "command": {"run": "mpiexec -n {ranks} ./app {size}",
                                    "work_exponent": 3}}, "t.toml")
    assert [p.size for p in plan_study(spec)] == [100, 126, 159]


# -- bad input ----------------------------------------------------------------------------

def test_unknown_key_lists_the_valid_ones():
    refused("unknown key(s) rank", "valid keys:", "ranks", "workload", rank=[1, 2])


def test_unknown_ladder_key_lists_the_valid_ones():
    refused("unknown key(s) upto", "from, step, to", ranks={"from": 1, "upto": 8})


@pytest.mark.parametrize(("key", "value", "phrase"), [
    ("repeats", "3", "repeats must be an integer, got '3'"),
    ("size", 1.5, "size must be an integer"),
    ("ranks", "1,2,4", "ranks must be a list or a table"),
    ("params", [1], "params must be a table"),
    ("repeats", True, "repeats must be an integer"),
    ("timeout", "1h", "timeout must be an integer or a number"),
])
def test_wrong_types(key, value, phrase):
    refused(phrase, **{key: value})


@pytest.mark.parametrize("ranks", [[], {"from": 8, "to": 4}])
def test_empty_ladder(ranks):
    refused("empty", ranks=ranks)


def test_single_rung_ladder():
    refused("at least two rank counts", ranks=[4])


@pytest.mark.parametrize(("ranks", "phrase"), [
    ([1, 2, 2], "repeat"), ([0, 1], "positive"), ([1, 2.5], "whole numbers"),
    ({"from": 1, "to": 8, "step": 0}, "step must be at least 1")])
def test_malformed_ladders(ranks, phrase):
    refused(phrase, ranks=ranks)


def test_weak_study_of_a_command_without_a_work_model():
    with pytest.raises(UserError, match="needs a work model"):
        parse_study({"kind": "weak", "ranks": [1, 2], "size": 10,
                     "command": {"run": "mpiexec -n {ranks} ./app {size}"}}, "t.toml")


@pytest.mark.parametrize(("changes", "phrase"), [
    ({"kind": "medium"}, "kind must be one of strong, weak"),
    ({"workload": "heat3d"}, "unknown workload 'heat3d'"),
    ({"backend": "fortran"}, "backend must be one of"),
    ({"launcher": "pbs"}, "launcher must be one of local, slurm, submitit"),
    ({"repeats": 1}, "repeats must be at least 2"),
    ({"params": {"stepz": 3}}, "unknown parameter(s) for heat2d: stepz"),
    ({"params": {"n": 64}}, "set the size with size = N"),
    ({"name": "a b;rm -rf"}, "must be 1-64 letters"),
])
def test_bad_values_are_refused_with_the_reason(changes, phrase):
    refused(phrase, **changes)


def test_an_impossible_point_fails_the_plan_before_anything_runs():
    with pytest.raises(UserError, match=r"point with 8 ranks \(n=3\) is impossible"):
        plan_study(study(size=3, ranks=[1, 8]))


def test_workload_and_command_are_exclusive():
    refused("exactly one", command={"run": "mpiexec -n {ranks} ./app"})


@pytest.mark.parametrize(("command", "phrase"), [
    ({"run": "mpiexec -n {ranks} ./app {cores}"}, "uses {cores}"),
    ({"run": "{mpirun}x ./app"}, "{mpirun} must be a word of its own"),
    ({"run": "{mpirun} ./app {x}", "derived": {"x": "__import__('os')"}},
     "only whole numbers"),
    ({"run": "{mpirun} ./app {x}", "derived": {"x": "ranks / 2"}}, "no Div"),
    ({"run": "{mpirun} ./app {x}", "derived": {"x": "cores * 2"}}, "uses 'cores'"),
    ({"run": "{mpirun} ./app", "inputs": ["no-such-input.dat"]},
     "'no-such-input.dat' does not exist"),
    ({"run": "mpiexec -n {ranks} ./app {size!r}"}, "uses {size}"),
    ({"run": "./app --size {size}"}, "must start its ranks: begin it with {mpirun}"),
    ({"run": "mpiexec -n {ranks} './app"}, "cannot be split"),
    ({"run": "mpiexec -n {ranks} ./app", "time_regex": "no group"}, "needs a group"),
    ({"run": "mpiexec -n {ranks} ./app", "time_regex": "(["}, "not a valid regular"),
    ({"run": "mpiexec -n {ranks} ./app", "time": "json"}, "needs time_json_key"),
    ({"run": "mpiexec -n {ranks} ./app", "time": "cpu"}, "must be wall, regex or json"),
    ({"run": "mpiexec -n {ranks} ./app", "shell": True}, "unknown key(s) shell"),
])
def test_bad_commands(command, phrase):
    with pytest.raises(UserError) as info:
        parse_study({"kind": "strong", "ranks": [1, 2], "size": 3, "command": command}, "t")
    assert phrase in str(info.value)


def test_shell_syntax_in_a_command_stays_literal_words():
    spec = parse_study({"kind": "strong", "ranks": [1, 2], "size": 3, "command": {
        "run": "{mpirun} app '$(touch /tmp/x); `id`' {size} {cells}",
        "derived": {"cells": "size * ranks"}}}, "t")
    from hpc.study.external import command_argv

    argv = command_argv(spec, plan_study(spec)[1], 0, ["mpiexec", "-n", "2"])
    assert argv == ["mpiexec", "-n", "2", "app", "$(touch /tmp/x); `id`", "3", "6"]


def test_spec_survives_the_round_trip_through_the_study_file():
    for spec in (study(), parse_study({"kind": "weak", "ranks": [1, 2], "size": 3, "command": {
            "run": "mpiexec -n {ranks} ./app {size}", "work_exponent": 2,
            "time_regex": "t=([0-9.]+)"}}, "t")):
        again = StudySpec.from_json(spec.to_json(), source=spec.source)
        assert again == spec


# -- files and the CLI --------------------------------------------------------------------

def test_every_shipped_study_is_valid_and_plans():
    files = sorted(shipped_studies_folder().glob("*.toml"))
    assert len(files) >= 6
    for path in files:
        spec = load_study(path)
        assert spec.name == path.stem
        assert len(plan_study(spec)) >= 2


def test_shipped_study_found_by_name():
    assert resolve_study_path("heat2d-weak") == shipped_studies_folder() / "heat2d-weak.toml"


def test_invalid_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("kind = strong\n")
    assert_clean_error(run_hpc("study", "run", str(path)), "not valid TOML")


def test_missing_study_file_names_the_shipped_ones(tmp_path):
    assert_clean_error(run_hpc("study", "run", str(tmp_path / "nope.toml")),
                       "not found", "heat2d-weak.toml")


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('workload = "heat2d"\nkind = "weak"\nranks = {from = 1, to = 4}\n'
                    'size = 100\n')
    proc = run_hpc("study", "run", str(path), "--dry-run", "--out", str(tmp_path / "s.h5"))
    assert proc.returncode == 0, proc.stderr
    assert "weak scaling of heat2d" in proc.stdout
    assert [line.split()[1:4] for line in proc.stdout.splitlines()[2:5]] == [
        ["1", "1", "100"], ["2", "1", "141"], ["4", "1", "200"]]
    # Then what the local launcher would run for each point, exactly.
    assert "-n 4 " in proc.stdout and "hpc run heat2d" in proc.stdout
    assert not (tmp_path / "s.h5").exists()


def test_srun_plugin_that_the_programs_mpi_does_not_speak_is_warned_about():
    from hpc.study.application import warn_mpi_mismatch

    mpich = "libmpi.so.12 => /venv/lib/libmpi.so.12"
    openmpi = "libmpi.so.40 => /lib/x86_64-linux-gnu/libmpi.so.40"
    assert "speaks --mpi=pmix, but srun is given --mpi=pmi2" in warn_mpi_mismatch(
        openmpi, "srun", "pmi2")
    assert "speaks --mpi=pmi2" in warn_mpi_mismatch(mpich, "srun", "pmix")
    assert warn_mpi_mismatch(mpich, "srun", "pmi2") is None
    assert warn_mpi_mismatch(openmpi, "srun", "pmix_v4") is None


def test_threads_as_a_dimension_plans_ranks_times_threads():
    spec = parse_study({"kind": "weak", "ranks": [1, 2], "threads": [1, 4], "size": 10,
                        "command": {"run": "{mpirun} app {threads}", "work_exponent": 1}},
                       "t")
    assert [(p.ranks, p.threads, p.cores, p.size) for p in plan_study(spec)] == [
        (1, 1, 1, 10), (1, 4, 4, 40), (2, 1, 2, 20), (2, 4, 8, 80)]
    assert StudySpec.from_json(spec.to_json(), source="t") == spec


@pytest.mark.parametrize(("data", "phrase"), [
    ({"ranks": [1, 2], "threads": [1, 2]}, "give the same number of cores twice"),
    ({"ranks": [1], "threads": [2]}, "needs at least two rank counts (or two thread"),
    ({"ranks": [1, 2], "threads": [0]}, "threads must be a whole number >= 1"),
    ({"ranks": [1, 2], "threads": [2, 2]}, "thread counts repeat"),
])
def test_bad_thread_counts(data, phrase):
    with pytest.raises(UserError) as info:
        parse_study({"kind": "strong", "size": 3, "command": {"run": "{mpirun} app"},
                     **data}, "t")
    assert phrase in str(info.value)


def test_threads_as_a_dimension_is_for_commands():
    with pytest.raises(UserError) as info:
        parse_study({"kind": "strong", "ranks": [1, 4], "workload": "pi",
                     "threads": [1, 2]}, "t")
    assert "threads as a dimension is for a [command]" in str(info.value)


# -- node ladders ---------------------------------------------------------------------------

def nodes_study(**changes) -> StudySpec:
    return study(**{"ranks": None, "nodes": {"from": 1, "to": 4}, "ranks_per_node": 2,
                    **changes})


@pytest.mark.parametrize(("nodes", "expected"), [
    ({"from": 1, "to": 4}, (1, 2, 4)),
    ({"from": 1, "to": 3, "step": 1}, (1, 2, 3)),
    ([4, 2], (2, 4)),
])
def test_node_ladder_gives_nodes_times_ranks_per_node(nodes, expected):
    spec = study(ranks=None, nodes=nodes, ranks_per_node=2)
    assert spec.nodes == expected and spec.ranks_per_node == 2
    assert spec.ranks == tuple(2 * n for n in expected)
    points = plan_study(spec)
    # The analysis still runs over ranks, baseline the smallest.
    assert [(p.nodes, p.ranks) for p in points] == [(n, 2 * n) for n in expected]
    assert points[0].describe("n").startswith(f"nodes={expected[0]} ranks={2 * expected[0]}")
    again = StudySpec.from_json(spec.to_json(), source=spec.source)
    assert again == spec


def test_a_weak_node_ladder_grows_with_the_ranks():
    points = plan_study(nodes_study(kind="weak"))
    assert [p.size for p in points] == [64, 91, 128]


@pytest.mark.parametrize(("changes", "phrases"), [
    ({"ranks": [1, 2]}, ("give ranks or nodes, not both",)),
    ({"ranks_per_node": None}, ("nodes needs ranks_per_node",)),
    ({"ranks_per_node": 0}, ("ranks_per_node must be from 1 to 4096",)),
    ({"ranks_per_node": 5000}, ("ranks_per_node must be from 1 to 4096",)),
    ({"ranks_per_node": "2"}, ("ranks_per_node must be an integer",)),
    ({"nodes": {"from": 4, "to": 1}}, ("nodes from 4 to 1 is empty",)),
    ({"nodes": {"from": 1}}, ("nodes needs both 'from' and 'to'",)),
    ({"nodes": {"from": 1, "to": 4, "by": 2}}, ("nodes: unknown key(s) by",)),
    ({"nodes": {"from": 1, "to": 1 << 19}}, ("nodes to 524288 is beyond 262144",)),
    ({"nodes": [1, 1 << 19]}, ("node count 524288 is beyond 262144",)),
    ({"nodes": [2, 2]}, ("node counts repeat",)),
    ({"nodes": [0, 1]}, ("node counts must be positive",)),
    ({"nodes": [1.5]}, ("nodes must be whole numbers",)),
    ({"nodes": []}, ("the node ladder is empty",)),
    ({"nodes": [4]}, ("at least two rank counts",)),
    ({"nodes": [1, 1 << 18], "ranks_per_node": 8}, ("beyond 1048576 ranks",)),
    ({"resources": {"ntasks_per_node": 4}}, ("[resources] ntasks_per_node: a node ladder",)),
])
def test_bad_node_ladders_are_refused(changes, phrases):
    with pytest.raises(UserError) as info:
        nodes_study(**changes)
    for phrase in phrases:
        assert phrase in str(info.value), (phrase, str(info.value))


def test_ranks_per_node_without_a_node_ladder_is_refused():
    refused("ranks_per_node goes with a node ladder", ranks_per_node=2)


def test_node_ladder_study_file_errors_exit_2(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('workload = "heat2d"\nkind = "strong"\nsize = 64\n'
                    'nodes = {from = 1, to = 2}\n')
    assert_clean_error(run_hpc("study", "run", str(path), "--dry-run"),
                       "nodes needs ranks_per_node")


def test_the_local_launcher_refuses_a_multi_node_point_before_anything_runs(tmp_path):
    out = tmp_path / "n.h5"
    proc = run_hpc("study", "run", "heat2d-nodes", "--launcher", "local", "--out", str(out))
    assert_clean_error(proc, "a point on 2 and 4 nodes cannot run here",
                       "run it with --launcher slurm or submitit")
    assert "heat2d-nodes.toml: " in proc.stderr  # the file it came from is named
    assert not out.exists()


def test_the_local_launcher_takes_one_node_points_only():
    from hpc.launchers.local import LocalLauncher
    from hpc.study.runner import point_run

    spec = nodes_study()
    runs = [point_run(spec, p, Path("s.h5")) for p in plan_study(spec)]
    assert [r.nodes for r in runs] == [1, 2, 4]
    LocalLauncher.check_runs(runs[:1])  # a 1-node point runs here
    with pytest.raises(UserError, match="a point on 2 nodes cannot run here"):
        LocalLauncher.check_runs(runs[:2])
