"""Job scripts: rendered scripts against stored expected files, profiles, and the quoting
proved by running the rendered script in bash.

Regenerate the expected files after an intended template change with
``HPC_UPDATE_EXPECTED=1 pytest tests/test_slurm_render.py`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpc.errors import UserError
from hpc.slurm.profiles import available_profiles, load_profile
from hpc.slurm.render import JobScript, Step, render_script

EXPECTED = Path(__file__).parent / "slurm_expected"
PYTHON = "/opt/venv/bin/python"  # fixed, so the expected files do not depend on this machine
HOSTILE_OUT = "/data/my results/it's $(touch pwned) `touch pwned`; x\ny.h5"


def heat_step(out: str = "/data/runs.h5", ntasks: int | None = None) -> Step:
    return Step((PYTHON, "-m", "hpc", "run", "heat2d", "--n", "64", "--out", out), ntasks)


# name: (profile, resource overrides, steps, array throttle[, other JobScript fields])
CASES = {
    "local-heat2d": ("local", {"ntasks_per_node": 2, "job_name": "heat2d"},
                     [heat_step()], None),
    # mpi pinned: "auto" follows the machine's MPI (tested in test_slurm_resources).
    "default-pi": ("default", {"mpi": "pmix", "nodes": 2, "ntasks_per_node": 4,
                               "time": "90"},
                   [Step((PYTHON, "-m", "hpc", "run", "pi", "--out", "/data/pi.h5"))], None),
    "example-cray-gpu": ("example-cray-gpu", {"nodes": 2, "job_name": "nbody"},
                         [Step((PYTHON, "-m", "hpc", "run", "nbody", "--out", "/s/nb.h5"))],
                         None),
    "example-openmpi-gres": ("example-openmpi-gres", {}, [heat_step()], None),
    "local-array": ("local", {"ntasks_per_node": 4, "job_name": "ladder"},
                    [heat_step("/data/ladder.h5", n) for n in (1, 2, 4)], 2),
    "local-quoting": ("local", {"environment": {"NOTE": "it's $(x) `y`; z"},
                                "modules": ["gcc/12.3"]}, [heat_step(HOSTILE_OUT)], None),
    "local-checkpoint": ("local", {"ntasks_per_node": 2, "time": "1"},
                         [Step((PYTHON, "-m", "hpc", "run", "heat2d", "--out", "/d/r.h5",
                                "--checkpoint", "/d/heat.ckpt.h5"))], None,
                         {"checkpoint_signal": 50}),
    # A study's point on Slurm: an array of its own allocation shape (hpc.launchers.slurm),
    # here one task of 2 ranks x 3 threads; no throttle on a single task.
    "local-array-shape": ("local", {"ntasks_per_node": 2, "cpus_per_task": 3,
                                    "job_name": "shape"},
                          [heat_step("/data/shape.h5", 2)], None, {"array": True}),
}


def render_case(name: str) -> str:
    profile_name, overrides, steps, throttle, *more = CASES[name]
    profile = load_profile(profile_name)
    job = JobScript(profile.resources.updated(overrides), tuple(steps), throttle=throttle,
                    **(more[0] if more else {}))
    return render_script(job, profile)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_script_matches_expected_file(name):
    text = render_case(name)
    path = EXPECTED / f"{name}.sh"
    if os.environ.get("HPC_UPDATE_EXPECTED"):
        path.write_text(text)
    assert path.exists(), f"no expected file {path}; run with HPC_UPDATE_EXPECTED=1"
    assert text == path.read_text(), f"{name}: rendered script differs from {path}"


def test_every_shipped_profile_loads_and_renders():
    assert {"default", "local", "example-cray-gpu", "example-openmpi-gres"} <= set(
        available_profiles())
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.description
        text = render_script(JobScript(profile.resources.updated(mpi="pmix")
                                       if profile.resources.mpi == "auto"
                                       else profile.resources, (heat_step(),)), profile)
        assert text.startswith("#!/bin/bash\n#SBATCH --job-name=")
        # A task that fails (even before MPI_Init) ends the whole step at once.
        steps = [line for line in text.splitlines() if line.startswith("srun ")]
        assert all(" --kill-on-bad-exit=1 " in line for line in steps), steps


def _run_script(text: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a rendered script in bash with srun and mpirun replaced by shell functions that
    record their arguments: this checks the shell's reading of the script (the quoting),
    which is all there is to check here; real Slurm runs are in test_slurm_cluster."""
    script = folder / "job.sh"
    script.write_text(text)
    recorder = 'printf "%s\\0" "$@" > argv.bin; printf "%s" "${NOTE:-}" > note.txt'
    full_env = {"PATH": os.environ["PATH"], "HOME": str(folder), "STEP_EXIT": "0", **env}
    return subprocess.run(
        ["bash", "-c", f'srun() {{ {recorder}; return "$STEP_EXIT"; }}; '
         f'mpirun() {{ {recorder}; }}; module() {{ echo "module $*" >> modules.txt; }}; '
         'scontrol() { echo "$*" >> scontrol.txt; }; '
         'export -f srun mpirun module scontrol; bash job.sh'],
        cwd=folder, env=full_env, capture_output=True, text=True, timeout=30, check=False)


def test_hostile_strings_reach_the_program_verbatim_and_run_nothing(tmp_path):
    proc = _run_script(render_case("local-quoting"), tmp_path, {"SLURM_JOB_ID": "42"})
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv.bin").read_bytes().split(b"\0")[:-1]
    args = [a.decode() for a in argv]
    assert args[:3] == ["--kill-on-bad-exit=1", "--mpi=pmi2", "--ntasks=1"]
    assert args[3:] == list(heat_step(HOSTILE_OUT).argv)
    assert (tmp_path / "note.txt").read_text() == "it's $(x) `y`; z"
    assert (tmp_path / "modules.txt").read_text() == "module load gcc/12.3\n"
    assert not list(tmp_path.rglob("pwned")), "a quoted string was executed"
    provenance = (tmp_path / "provenance-42.txt").read_text()
    assert "job_id=42" in provenance and "exit_code=0" in provenance


def test_array_task_runs_its_own_step_only(tmp_path):
    text = render_case("local-array")
    proc = _run_script(text, tmp_path, {"SLURM_JOB_ID": "50", "SLURM_ARRAY_JOB_ID": "49",
                                        "SLURM_ARRAY_TASK_ID": "1"})
    assert proc.returncode == 0, proc.stderr
    args = (tmp_path / "argv.bin").read_bytes().decode().split("\0")
    assert args[2] == "--ntasks=2" and "/data/ladder.h5" in args
    assert "exit_code=0" in (tmp_path / "provenance-49_1.txt").read_text()
    proc = _run_script(text, tmp_path, {"SLURM_JOB_ID": "53", "SLURM_ARRAY_JOB_ID": "49",
                                        "SLURM_ARRAY_TASK_ID": "7"})
    assert proc.returncode != 0
    assert "no step for array task '7'" in proc.stderr
    assert "exit_code=1" in (tmp_path / "provenance-49_7.txt").read_text()


def test_checkpointed_step_requeues_the_job(tmp_path):
    text = render_case("local-checkpoint")
    for option in ("--signal=USR1@50", "--requeue", "--open-mode=append"):
        assert f"#SBATCH {option}\n" in text
    proc = _run_script(text, tmp_path, {"SLURM_JOB_ID": "61", "STEP_EXIT": "75"})
    assert proc.returncode == 75
    assert (tmp_path / "scontrol.txt").read_text() == "requeue 61\n"
    assert "exit_code=75" in (tmp_path / "provenance-61.txt").read_text()
    (tmp_path / "scontrol.txt").unlink()
    for code in ("0", "3"):  # finished, or a failure that a new start would not mend
        proc = _run_script(text, tmp_path, {"SLURM_JOB_ID": "62", "STEP_EXIT": code})
        assert proc.returncode == int(code) and not (tmp_path / "scontrol.txt").exists()


def test_checkpoint_signal_must_fit_the_time_limit():
    profile = load_profile("local")
    for time_limit, signal, phrase in [("1", 51, "give 1 to 50 s"), ("1", 0, "give 1 to 50"),
                                       ("00:00:10", 1, "too short to checkpoint")]:
        job = JobScript(profile.resources.updated(time=time_limit), (heat_step(),),
                        checkpoint_signal=signal)
        with pytest.raises(UserError, match=phrase):
            render_script(job, profile)


def test_failing_step_exit_code_is_the_job_exit_code(tmp_path):
    text = render_case("local-heat2d").replace("srun ", "false && srun ", 1)
    proc = _run_script(text, tmp_path, {"SLURM_JOB_ID": "7"})
    assert proc.returncode == 1
    assert "exit_code=1" in (tmp_path / "provenance-7.txt").read_text()


# -- profiles ---------------------------------------------------------------------------
def write_profile(folder: Path, text: str, name: str = "site.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_user_profile_file_with_its_own_template(tmp_path):
    (tmp_path / "mysite.sh.j2").write_text(
        '{% extends "srun.sh.j2" %}\n{% block environment %}{{ super()|trusted }}'
        'echo "site {{ site_marker }}"\n{% endblock %}\n')
    path = write_profile(tmp_path, 'description = "mine"\ntemplate = "mysite.sh.j2"\n'
                         '[resources]\npartition = "p1"\nmpi = "pmix"\n')
    profile = load_profile(str(path))
    assert profile.name == "site" and profile.resources.partition == "p1"
    job = JobScript(profile.resources, (heat_step(),))
    # StrictUndefined: a name the template uses but nobody gave fails the render.
    with pytest.raises(Exception, match="site_marker"):
        render_script(job, profile)
    (tmp_path / "mysite.sh.j2").write_text(
        '{% extends "srun.sh.j2" %}\n{% block environment %}{{ super()|trusted }}'
        'echo "site {{ profile }}"\n{% endblock %}\n')
    text = render_script(job, profile)
    assert 'echo "site site"' in text and "#SBATCH --partition=p1" in text


@pytest.mark.parametrize("text,phrases", [
    ('partitoin = "x"\n', ["unknown key(s) partitoin", "valid keys: description",
                           "resource fields go under [resources]"]),
    ('[resources]\nnodez = 2\n', ["unknown resource field(s): nodez", "ntasks_per_node"]),
    ('[resources]\nnodes = 0\n', ["nodes must be at least 1"]),
    ('[resources]\ntime = "soon"\n', ["time 'soon' is malformed"]),
    ('[resources]\npartition = "a;b"\n', ["partition 'a;b' is not allowed"]),
    ('setup = "module purge"\n', ["setup must be a list"]),
    ('template = 3\n', ["template must be a string"]),
    ('[resources\n', ["is not valid TOML"]),
])
def test_bad_profiles_fail_with_the_reason(tmp_path, text, phrases):
    path = write_profile(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_profile(str(path))
    for phrase in phrases:
        assert phrase in str(err.value)
    assert str(path) in str(err.value) or "TOML" in str(err.value)


def test_unknown_profile_names_the_available_ones():
    with pytest.raises(UserError) as err:
        load_profile("nosuchsite")
    assert "unknown profile 'nosuchsite'" in str(err.value)
    assert "local" in str(err.value) and "example-cray-gpu" in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        load_profile("/nonexistent/site.toml")


def test_profile_file_name_with_shell_characters_is_refused(tmp_path):
    path = write_profile(tmp_path, "[resources]\n", name="a;b.toml")
    with pytest.raises(UserError, match="profile file name"):
        load_profile(str(path))


def test_missing_template_is_a_clear_error(tmp_path):
    path = write_profile(tmp_path, 'template = "nope.sh.j2"\n[resources]\nmpi = "pmix"\n')
    profile = load_profile(str(path))
    with pytest.raises(UserError, match="template 'nope.sh.j2'"):
        render_script(JobScript(profile.resources, (heat_step(),)), profile)


def test_array_steps_must_fit_the_allocation():
    profile = load_profile("local")
    job = JobScript(profile.resources.updated(ntasks_per_node=2), (heat_step(ntasks=4),))
    with pytest.raises(UserError, match="asks for 4 ranks but the job has 2"):
        render_script(job, profile)
