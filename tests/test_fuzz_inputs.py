"""Fuzzing the inputs (issue 9): seeded mutations of study files at --dry-run and damaged
HDF5 files through show, study report and study compare.

The CLI's main() runs in this process for each case (a process per case would take
minutes on 2 cores), under an alarm that turns a hang into a failure; a few cases also
run as real subprocesses. A case fails on a traceback, a hang, an exit code outside the
documented ones, an error that does not name its file, a damaged file that passes, a
dry run that accepts nonsense, or an input file that changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import random
import re
import shutil
import signal
import traceback
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc.cli import main
from hpc.limits import INT64_MAX, MAX_RANKS
from hpc.slurm.resources import Resources
from hpc.study.plan import plan_study
from hpc.study.spec import load_study, shipped_studies_folder
from hpc.workloads import WORKLOADS
from tests.conftest import run_hpc

SEED = 20261130
STUDY_CASES = 480
HANG_SECONDS = 30  # per case; a dry run takes milliseconds


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def call_main(argv: list[str]) -> tuple[str, int | None, str]:
    """("ok" | "traceback" | "hang", exit code, stderr or the traceback)."""
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: usage errors exit 2
                code = exc.code if isinstance(exc.code, int) else 1
        return "ok", code, err.getvalue()
    except Hang:
        return "hang", None, " ".join(argv)
    except BaseException:  # noqa: BLE001 - any escape is what the fuzzer looks for
        return "traceback", None, traceback.format_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- study files ------------------------------------------------------------------------
COMMAND_STUDY = {"name": "cmd", "kind": "weak", "ranks": [1, 2, 4], "size": 10,
                 "command": {"run": "mpiexec -n {ranks} ./app --size {size}",
                             "time_regex": "took ([0-9.]+) s", "work_exponent": 1.0}}
INTERESTING = [math.nan, math.inf, -math.inf, -1, 0, 1, 2.7, 1e-300, 1e300, True, False,
               "10", "abc", "", "a\x00b", [], [1], [1, 4611686018427387904], {},
               {"from": 1}, {"from": 1, "to": 4611686018427387904},
               {"from": 1, "to": 1 << 20, "step": 1}, 4611686018427387904, 2**63, -(2**63),
               "{", "}", "{ranks}", "{nope}", 'echo {"a": 1}', "mpiexec -n {ranks} true",
               "00:10:00", "4G", "x" * 300]
TOP_KEYS = ["name", "description", "kind", "workload", "command", "backend", "ranks", "size",
            "params", "repeats", "warmup", "launcher", "timeout", "resources", "profile",
            "array_throttle", "include_oversubscribed", "unknown_key"]
COMMAND_KEYS = ["run", "time", "time_regex", "time_json_key", "work_exponent"]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if value != value
                                                         else repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes (\u0000 too) are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def dump_toml(table: dict) -> str:
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()
             if not isinstance(v, dict) or k == "ranks"]
    for key, value in table.items():
        if isinstance(value, dict) and key != "ranks":
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def seed_studies() -> list[dict]:
    import tomllib

    seeds = [tomllib.loads(p.read_text()) for p in sorted(shipped_studies_folder().glob("*.toml"))]
    return seeds + [COMMAND_STUDY]


def _subtable(table: dict, key: str) -> dict:
    if not isinstance(table.get(key), dict):
        table[key] = {}
    return table[key]


def mutate(rng: random.Random, seeds: list[dict]) -> str:
    table = json.loads(json.dumps(rng.choice(seeds)))  # a deep copy
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.randrange(6)
        value = rng.choice(INTERESTING)
        if op == 0:
            table[rng.choice(TOP_KEYS)] = value
        elif op == 1 and table:
            del table[rng.choice(sorted(table))]
        elif op == 2 and "workload" in table and table["workload"] in WORKLOADS:
            param = rng.choice(WORKLOADS[table["workload"]].params).name
            _subtable(table, "params")[param] = value
        elif op == 3:
            _subtable(table, "resources")[rng.choice(Resources.field_names())] = value
        elif op == 4:
            _subtable(table, "command")[rng.choice(COMMAND_KEYS)] = value
        else:
            table["ranks"] = rng.choice([[1, value], value, [value, 2]])
    text = dump_toml(table)
    if rng.random() < 0.25:  # damage the text itself
        i = rng.randrange(len(text))
        cut = rng.choice(["", "{", "}", "[", "]", '"', "=", "\n", "\\", "#", ",", "\x00"])
        text = text[:i] + cut + text[i + rng.randrange(3):]
    return text


SPECIALS = {
    "nested 100000 deep": "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "5000-digit integer": 'name = "s"\nkind = "strong"\nworkload = "pi"\nranks = [1, 2]\n'
                          f"size = {'9' * 5000}\n",
    "NUL in run": 'kind = "strong"\nranks = [1, 2]\n[command]\n'
                  'run = "mpiexec -n {ranks} ./a\\u0000b"\n',
    "unbalanced brace in run": 'kind = "strong"\nranks = [1, 2]\n[command]\n'
                               'run = "mpiexec -n {ranks} ./a {"\n',
    "JSON in run": 'kind = "strong"\nranks = [1, 2]\n[command]\n'
                   'run = "mpiexec -n {ranks} ./a \'{\\"k\\": 1}\'"\n',
    **{f"steps = {v}": f'kind = "strong"\nworkload = "heat2d"\nranks = [1, 2]\n'
                        f"[params]\nsteps = {v}\n" for v in ("2.7", "true", '"10"')},
    "timeout = nan": 'kind = "strong"\nworkload = "pi"\nranks = [1, 2]\ntimeout = nan\n',
    "serial_fraction = nan": 'kind = "strong"\nworkload = "amdahl"\nranks = [1, 2]\n'
                             "[params]\nserial_fraction = nan\n",
    "seed = inf": 'kind = "strong"\nworkload = "nbody"\nranks = [1, 2]\n[params]\nseed = inf\n',
    "huge rank in a list": 'kind = "strong"\nworkload = "pi"\nranks = [1, 4611686018427387904]\n',
    "work_exponent = 1e-300": 'kind = "weak"\nranks = [1, 2]\nsize = 4\n[command]\n'
                              'run = "mpiexec -n {ranks} ./a {size}"\nwork_exponent = 1e-300\n',
    "weak size beyond 64 bits": 'kind = "weak"\nranks = {from = 1, to = 1048576}\nsize = 9\n'
                                '[command]\nrun = "mpiexec -n {ranks} ./a {size}"\n'
                                "work_exponent = 0.1\n",
    "bad [resources]": 'kind = "strong"\nworkload = "pi"\nranks = [1, 2]\n'
                       "[resources]\nnodes = 0\n",
    # heat2d's arrays for a 300000^2 grid need terabytes: more than any one node here.
    "heat2d beyond memory": 'kind = "strong"\nworkload = "heat2d"\nranks = [1, 2]\n'
                            "size = 300000\n",
    "heat2d beyond [resources] mem": 'kind = "strong"\nworkload = "heat2d"\nranks = [1, 2]\n'
                                     'size = 40000\nlauncher = "slurm"\n'
                                     '[resources]\nmem = "1G"\n',
}
MUST_REFUSE = set(SPECIALS)


def sane(path: Path) -> list[str]:
    """What is wrong with a study that --dry-run accepted (nothing, for a sane one)."""
    spec = load_study(path)
    points = plan_study(spec)
    problems = []
    if not (len(set(spec.ranks)) >= 2 and all(
            isinstance(r, int) and 1 <= r <= MAX_RANKS for r in spec.ranks)):
        problems.append(f"ranks {spec.ranks}")
    if not (math.isfinite(spec.timeout) and spec.timeout > 0):
        problems.append(f"timeout {spec.timeout}")
    if not (isinstance(spec.repeats, int) and spec.repeats >= 2 and spec.warmup >= 0):
        problems.append(f"repeats {spec.repeats} warmup {spec.warmup}")
    for point in points:
        if not (isinstance(point.size, int) and 1 <= point.size <= INT64_MAX):
            problems.append(f"size {point.size}")
        for param in WORKLOADS[spec.workload].params if spec.workload else ():
            value = point.params[param.name]
            if isinstance(value, bool) or not isinstance(value, param.type) or (
                    isinstance(value, float) and not math.isfinite(value)):
                problems.append(f"{param.name} = {value!r}")
    exponent = spec.command.work_exponent if spec.command else None
    if exponent is not None and not 0 < exponent < math.inf:
        problems.append(f"work_exponent {exponent}")
    return problems


def test_fuzzed_study_files_fail_clearly_or_make_sense(tmp_path):
    rng = random.Random(SEED)
    seeds = seed_studies()
    cases = list(SPECIALS.items()) + [(f"mutant {i}", mutate(rng, seeds))
                                      for i in range(STUDY_CASES)]
    tally, failures = Counter(), []
    for i, (label, text) in enumerate(cases):
        path = tmp_path / f"case{i}.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        outcome, code, err = call_main(["study", "run", str(path), "--dry-run"])
        if outcome != "ok":
            tally[outcome] += 1
            failures.append(f"{label}: {outcome}\n{err}\n--- file ---\n{text[:600]}")
        elif code == 2:
            tally["clear error"] += 1
            if not err.startswith("hpc: error:") or path.name not in err:
                failures.append(f"{label}: unclear error {err!r}")
        elif code == 0:
            tally["accepted"] += 1
            problems = sane(path)
            if label in MUST_REFUSE or problems:
                failures.append(f"{label}: accepted nonsense {problems}\n{text[:600]}")
        else:
            tally[f"exit {code}"] += 1
            failures.append(f"{label}: exit {code}: {err}")
    print(f"\nfuzzed study files: {len(cases)} tries, {dict(tally)}")
    assert not failures, "\n\n".join(failures[:10])
    assert tally["clear error"] > len(cases) // 2  # the mutations do reach the validation


@pytest.mark.parametrize("label", ["nested 100000 deep", "5000-digit integer", "NUL in run",
                                   "unbalanced brace in run"])
def test_nasty_study_files_as_real_processes(tmp_path, label):
    path = tmp_path / "nasty.toml"
    path.write_text(SPECIALS[label])
    proc = run_hpc("study", "run", str(path), "--dry-run", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in proc.stderr


def test_bad_values_refused_before_the_study_file_exists(tmp_path):
    """Not --dry-run: a real run is refused up front, leaving no study file behind."""
    for label in ("bad [resources]", "serial_fraction = nan", "heat2d beyond memory",
                  "heat2d beyond [resources] mem"):
        path = tmp_path / "s.toml"
        path.write_text(SPECIALS[label])
        out = tmp_path / "s.h5"
        proc = run_hpc("study", "run", str(path), "--out", str(out), timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (label, proc.stderr)
        assert not out.exists(), label


# -- damaged HDF5 files -----------------------------------------------------------------
def _edit(path: Path, change) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def _set_attr(name: str, value, where: str = "runs/000001"):
    return lambda f: f[where].attrs.__setitem__(name, value)


def _del_attr(name: str, where: str = "runs/000001"):
    return lambda f: f[where].attrs.__delitem__(name)


def _replace(where: str, make):
    def change(f):
        del f[where]
        make(f, where)
    return change


def _timings(data, phases=None):
    def make(f, where):
        dset = f.create_dataset(where, data=data)
        if phases is not None:
            dset.attrs["phases"] = phases
    return _replace("runs/000001/timings", make)


REQUIRED = ("workload", "backend", "ranks", "size", "size_parameter", "parameters",
            "status", "verified", "start_utc", "end_utc")
STR = h5py.string_dtype()
# name -> (change, which commands must refuse: "all" or "study" (report, compare)).
DAMAGE = {
    **{f"no {a}": (_del_attr(a), "all") for a in REQUIRED},
    "ranks as text": (_set_attr("ranks", "two"), "all"),
    "ranks 0": (_set_attr("ranks", 0), "all"),
    "size as float": (_set_attr("size", 2.5), "all"),
    "parameters not JSON": (_set_attr("parameters", "{"), "all"),
    "parameters a list": (_set_attr("parameters", "[1]"), "all"),
    "no timings": (lambda f: f["runs/000001"].__delitem__("timings"), "all"),
    "timings 2-D": (_timings(np.ones((2, 2)), np.array(["total", "x"], dtype=STR)), "all"),
    "timings NaN": (_timings(np.full((2, 1, 3), np.nan),
                             np.array(["total", "a", "b"], dtype=STR)), "all"),
    "timings negative": (_timings(-np.ones((2, 1, 3)),
                                  np.array(["total", "a", "b"], dtype=STR)), "all"),
    "timings empty": (_timings(np.ones((0, 1, 3)), np.array(["total", "a", "b"], dtype=STR)),
                      "all"),
    "timings text": (_timings(np.array([["a"]], dtype=STR)), "all"),
    "timings without phases": (_timings(np.ones((2, 1, 3))), "all"),
    "phases too few": (_timings(np.ones((2, 1, 3)), np.array(["total"], dtype=STR)), "all"),
    "runs a dataset": (_replace("runs", lambda f, w: f.create_dataset(w, data=[1])), "all"),
    "run a dataset": (_replace("runs/000002", lambda f, w: f.create_dataset(w, data=[1])),
                      "all"),
    "external link to nothing": (_replace("runs/000001", lambda f, w: f.__setitem__(
        w, h5py.ExternalLink("/nonexistent/x.h5", "/runs/000001"))), "all"),
    "soft-link loop": (_replace("runs/000001", lambda f, w: f.__setitem__(
        w, h5py.SoftLink("/runs/000001"))), "all"),
    "soft-link loop in provenance": (lambda f: f["runs/000001/provenance"].__setitem__(
        "loop", h5py.SoftLink("/runs/000001/provenance/loop")), "all"),
    "hard-link cycle": (lambda f: f["runs/000001/provenance"].__setitem__(
        "up", f["runs/000001"]), "all"),
    "study_spec garbage": (_set_attr("study_spec", "{not json", "/"), "study"),
    "study_spec a list": (_set_attr("study_spec", "[]", "/"), "study"),
    "study_spec empty object": (_set_attr("study_spec", "{}", "/"), "study"),
    "study_spec wrong types": (_set_attr("study_spec", json.dumps(
        {"name": "x", "kind": "strong", "ranks": "abc", "workload": "pi"}), "/"), "study"),
    "study_spec huge ranks": (_set_attr("study_spec", json.dumps(
        {"name": "x", "kind": "strong", "ranks": [1, 2**62], "workload": "pi"}), "/"),
        "study"),
    "study_spec a number": (_set_attr("study_spec", 7, "/"), "study"),
    "no study_spec": (_del_attr("study_spec", "/"), "study"),
    "deep JSON in study_spec": (_set_attr("study_spec", "[" * 20_000 + "]" * 20_000, "/"),
                                "study"),
}


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def damaged_files(good: Path, folder: Path, rng: random.Random) -> list[tuple[Path, str]]:
    """(file, which commands must refuse it: "all", "study" or "" when it may pass)."""
    files = []
    for i, (name, (change, refuse)) in enumerate(DAMAGE.items()):
        path = folder / f"damage{i}-{re.sub(r'[^a-z0-9]+', '-', name)}.h5"
        shutil.copy(good, path)
        _edit(path, change)
        files.append((path, refuse))
    data = good.read_bytes()
    for i, fraction in enumerate((0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99)):
        path = folder / f"truncated{i}.h5"
        path.write_bytes(data[:int(len(data) * fraction)])
        files.append((path, "all"))
    for i in range(6):  # flipped bytes: anything but a traceback or a crash is fine
        path = folder / f"flipped{i}.h5"
        damaged = bytearray(data)
        for _ in range(8):
            damaged[rng.randrange(len(damaged))] ^= 0xFF
        path.write_bytes(bytes(damaged))
        files.append((path, ""))
    other = folder / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=[1.0, 2.0])
    text = folder / "text.h5"
    text.write_text("not HDF5 at all\n")
    empty_group = folder / "foreign.h5"
    with h5py.File(empty_group, "w") as f:
        f.create_group("runs").create_group("000001")
    return files + [(other, "all"), (text, "all"), (empty_group, "all"),
                    (folder / "missing.h5", "all"), (folder, "all")]


def test_damaged_hdf5_files_fail_clearly(study_file, tmp_path):
    good = tmp_path / "good.h5"
    shutil.copy(study_file, good)
    files = damaged_files(good, tmp_path, random.Random(SEED))
    tally, failures = Counter(), []
    report = str(tmp_path / "report" / "r.md")
    for path, refuse in files:
        commands = {"show": ["show", str(path)],
                    "report": ["study", "report", str(path), "--out", report, "--format", "md"],
                    "compare": ["study", "compare", str(good), str(path)]}
        before = {p: _fingerprint(p) for p in (path, good) if p.is_file()}
        for name, argv in commands.items():
            outcome, code, err = call_main(argv)
            tally["tries"] += 1
            must_refuse = refuse == "all" or (refuse == "study" and name != "show")
            if outcome != "ok":
                tally[outcome] += 1
                failures.append(f"{path.name} {name}: {outcome}\n{err}")
            elif code == 2:
                tally["clear error"] += 1
                if str(path) not in err:
                    failures.append(f"{path.name} {name}: error does not name it: {err}")
            elif code in (0, 1):  # compare: 1 is a regression, a verdict
                tally["passed"] += 1
                if must_refuse:
                    failures.append(f"{path.name} {name}: exit {code}, damage not noticed")
            else:
                tally[f"exit {code}"] += 1
                failures.append(f"{path.name} {name}: exit {code}: {err}")
        after = {p: _fingerprint(p) for p in before}
        if after != before:
            failures.append(f"{path.name}: a reading command changed its input")
    print(f"\ncorrupt HDF5: {len(files)} files, {dict(tally)}")
    assert not failures, "\n\n".join(failures[:10])
