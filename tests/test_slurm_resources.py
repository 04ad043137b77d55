"""Resources: validation of every field, and its three renderings (#SBATCH, submitit, mpiexec)."""

from __future__ import annotations

import pytest

from hpc.errors import UserError
from hpc.mpi_env import find_mpiexec, mpiexec_flavor
from hpc.slurm.resources import Resources, format_time, parse_time

# Strings a shell would act on: each must be rejected in a Slurm name, never passed on.
HOSTILE = ["my job", "a'b", 'a"b', "a;rm -rf x", "$(touch pwned)", "`touch pwned`", "a\nb",
           "a|b", "a&b", "-x", ""]


def test_defaults_render_a_complete_header():
    r = Resources.create(mpi="pmix")
    assert r.sbatch_lines() == [
        "#SBATCH --job-name=hpc", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=1", "#SBATCH --time=00:10:00"]
    assert r.ntasks == 1 and r.srun_options() == ["--kill-on-bad-exit=1", "--mpi=pmix"]


def test_every_field_renders():
    r = Resources.create(
        nodes=2, ntasks_per_node=4, cpus_per_task=8, gpus_per_node=2, mem="64g",
        time="1-02:03:04", partition="gpu,gpu-long", account="proj_1", qos="high",
        constraint="a100&(ib|roce)", job_name="heat.big", modules=["gcc/12.3", "openmpi@4.1"],
        environment={"OMP_NUM_THREADS": "8"}, starter="srun", mpi="pmix", gpu_type="a100",
        gpu_directive="gres", starter_args=["--gpu-bind=closest"],
        extra_directives=["--exclusive", "--mail-type=END"])
    assert r.ntasks == 8
    assert r.sbatch_options() == [
        "--job-name=heat.big", "--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=8",
        "--time=1-02:03:04", "--mem=64G", "--partition=gpu,gpu-long", "--account=proj_1",
        "--qos=high", "--constraint=a100&(ib|roce)", "--gres=gpu:a100:2", "--exclusive",
        "--mail-type=END"]
    assert r.srun_options() == ["--kill-on-bad-exit=1", "--mpi=pmix", "--gpu-bind=closest"]
    assert Resources.create(gpus_per_node=4).sbatch_options()[-1] == "--gpus-per-node=4"


def test_unknown_field_lists_the_valid_ones():
    with pytest.raises(UserError) as err:
        Resources.create(nodes=1, ntask_per_node=2)
    message = str(err.value)
    assert "unknown resource field(s): ntask_per_node" in message
    for name in ("ntasks_per_node", "cpus_per_task", "partition", "starter", "modules"):
        assert name in message
    with pytest.raises(UserError, match="unknown resource field"):
        Resources.create().updated(gpus=1)


@pytest.mark.parametrize("field,value,phrase", [
    ("nodes", 0, "nodes must be at least 1, got 0"),
    ("nodes", -2, "nodes must be at least 1"),
    ("ntasks_per_node", 0, "ntasks_per_node must be at least 1"),
    ("cpus_per_task", 0, "cpus_per_task must be at least 1"),
    ("gpus_per_node", -1, "gpus_per_node must be at least 0"),
    ("nodes", 1.5, "nodes must be a whole number"),
    ("nodes", True, "nodes must be a whole number"),
    ("nodes", "two", "nodes must be a whole number"),
    ("mem", "0", "mem '0' is not allowed"),
    ("mem", "4 GB", "mem '4 GB' is not allowed"),
    ("mem", "4X", "unit K, M, G or T"),
    ("starter", "mpiexec", "starter 'mpiexec' is not one of srun, mpirun"),
    ("launcher", "srun", "resource field 'launcher' is now 'starter'"),
    ("gpu_directive", "gpus", "gpu_directive 'gpus' is not one of"),
    ("mpi", "PMIx 4", "srun --mpi plugin name"),
    ("modules", "gcc", "modules must be a list"),
    ("modules", ["gcc 12"], "module 'gcc 12' is not allowed"),
    ("environment", {"1X": "a"}, "environment variable '1X' is not allowed"),
    ("environment", {"X": None}, "value must be a string"),
    ("environment", "X=1", "environment must be a table"),
    ("starter_args", ["--bind-to core"], "starter argument '--bind-to core'"),
    ("extra_directives", ["exclusive"], "extra directive 'exclusive' is not allowed"),
])
def test_impossible_values_fail_clearly(field, value, phrase):
    with pytest.raises(UserError) as err:
        Resources.create({field: value})
    assert phrase in str(err.value)


@pytest.mark.parametrize("text,seconds", [
    ("30", 1800), ("90", 5400), ("5:30", 330), ("00:05:00", 300), ("1:00:00", 3600),
    ("100:00:00", 360000), ("2-0", 172800), ("1-12", 129600), ("1-00:30", 88200),
    ("1-02:03:04", 93784),
])
def test_slurm_time_formats(text, seconds):
    assert parse_time(text) == seconds
    assert parse_time(format_time(seconds)) == seconds  # canonical spelling round-trips


@pytest.mark.parametrize("text,phrase", [
    ("", "malformed"), ("5m", "malformed"), ("1:2:3:4", "malformed"), ("-1", "malformed"),
    ("00:60:00", "minutes must be below 60"), ("00:00:75", "seconds must be below 60"),
    ("1-24:00:00", "hours must be below 24"), ("0", "zero"), ("00:00:00", "zero"),
    ("1:00:00; rm x", "malformed"), ("$(date)", "malformed"),
])
def test_malformed_time_is_refused(text, phrase):
    with pytest.raises(UserError) as err:
        Resources.create(time=text)
    assert phrase in str(err.value)


@pytest.mark.parametrize("field", ["job_name", "partition", "account", "qos", "gpu_type"])
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_rejected(field, value):
    with pytest.raises(UserError) as err:
        Resources.create({field: value})
    assert "is not allowed" in str(err.value)
    assert "no spaces, quotes" in str(err.value)


@pytest.mark.parametrize("value", ["gpu;id", "gpu $(id)", "`id`", "a\nb", "a'b"])
def test_hostile_constraint_and_directives_are_rejected(value):
    with pytest.raises(UserError, match="is not allowed"):
        Resources.create(constraint=value)
    with pytest.raises(UserError, match="is not allowed"):
        Resources.create(extra_directives=[f"--comment={value}"])
    with pytest.raises(UserError, match="is not allowed"):
        Resources.create(starter_args=[value])


@pytest.mark.parametrize("directive,field", [
    ("--nodes=2", "nodes"), ("--time=5", "time"), ("--job-name=x", "job_name"),
    ("--gres=gpu:2", "gpus_per_node"), ("--output=x.log", None), ("--array=0-3", None)])
def test_directives_that_contradict_the_renderer_are_refused(directive, field):
    with pytest.raises(UserError) as err:
        Resources.create(extra_directives=[directive])
    assert "conflicts with what hpc writes" in str(err.value)
    if field:
        assert f"set the field {field} instead" in str(err.value)


def test_environment_values_may_hold_anything_but_nul():
    r = Resources.create(environment={"NOTE": "it's $(not) `run`; ok\nline 2", "N": 3})
    assert dict(r.environment) == {"NOTE": "it's $(not) `run`; ok\nline 2", "N": "3"}
    with pytest.raises(UserError, match="NUL"):
        Resources.create(environment={"X": "a\x00b"})


def test_updated_validates_and_keeps_other_fields():
    base = Resources.create(partition="debug", ntasks_per_node=2)
    r = base.updated(nodes=3, partition=None)
    assert (r.nodes, r.partition, r.ntasks_per_node) == (3, "debug", 2)
    with pytest.raises(UserError, match="nodes must be at least 1"):
        base.updated(nodes=0)


def test_submitit_parameters_describe_the_same_job():
    r = Resources.create(nodes=2, ntasks_per_node=3, cpus_per_task=2, time="00:01:30",
                         mem="8G", partition="debug", mpi="pmi2", gpus_per_node=1,
                         modules=["gcc/12"], environment={"X": "a b"},
                         extra_directives=["--exclusive"])
    p = r.submitit_parameters()
    assert (p["nodes"], p["ntasks_per_node"], p["cpus_per_task"]) == (2, 3, 2)
    assert p["time"] == 2  # whole minutes, rounded up: never less than asked for
    assert (p["mem"], p["partition"], p["job_name"]) == ("8G", "debug", "hpc")
    assert p["srun_args"] == ["--kill-on-bad-exit=1", "--mpi=pmi2"]
    assert p["setup"] == ["module load gcc/12", "export X='a b'"]
    assert p["additional_parameters"] == {"gpus-per-node": "1", "exclusive": True}
    # submitit itself accepts them: it renders its sbatch file from these names.
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="true", folder="/tmp/x", **p)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=3", "#SBATCH --time=2",
                 "#SBATCH --exclusive", "#SBATCH --gpus-per-node=1"):
        assert line in text
    assert "--mpi=pmi2" in text


def test_local_mpiexec_line():
    r = Resources.create(nodes=1, ntasks_per_node=3, environment={"HPC_X": "1"})
    argv, env = r.mpiexec_command(["python", "-c", "pass"])
    assert argv[0] == find_mpiexec() and argv[1:3] == ["-n", "3"]
    assert argv[-3:] == ["python", "-c", "pass"]
    assert env["HPC_X"] == "1" and env["OMP_NUM_THREADS"] == "1"


def test_auto_mpi_plugin_matches_the_local_mpi():
    r = Resources.create()
    assert r.mpi == "auto"
    with pytest.raises(ValueError, match="resolve"):
        r.srun_options()
    expected = {"openmpi": "pmix", "mpich": "pmi2"}.get(mpiexec_flavor(find_mpiexec()))
    assert r.with_mpi_resolved().mpi == expected
    assert Resources.create(mpi="pmix").with_mpi_resolved().mpi == "pmix"
