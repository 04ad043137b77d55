"""A scaling study as declared in a TOML file, validated.

A study file names what to run (a built-in workload, or an external command), how the
problem size follows the rank count (``kind``: strong keeps it fixed, weak grows it with
the workload's work model so the work per rank stays constant), and the rank ladder.
The ladder is generated from the spec — never written out point by point — so the
weak-scaling growth is always applied to the size parameter the workload declares.

    name = "heat2d-weak"
    workload = "heat2d"
    kind = "weak"
    ranks = { from = 1, to = 16 }   # powers of two; or a list [1, 2, 4]; or add step = 1
    # or, as cluster users climb: nodes = { from = 1, to = 4 } with ranks_per_node = 2
    # (a point's ranks = nodes x ranks_per_node; the analysis still runs over ranks)
    size = 512                      # the size at the smallest rank count
    [params]                        # the workload's other options
    steps = 100

Every error names the file and the key, and lists the valid keys or values.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import string
import sys
from dataclasses import asdict, dataclass, field
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

from hpc.errors import UserError
from hpc.limits import (
    INT64_MAX,
    MAX_NODES,
    MAX_POINTS,
    MAX_RANKS,
    MAX_REPEATS,
    MAX_TASKS_PER_NODE,
    check_seconds,
)
from hpc.study.formula import check_formula
from hpc.workloads import WORKLOADS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KINDS = ("strong", "weak")
# Placeholders an external command may use; every value is a number, so substituting
# them into an already split argument list cannot change the command's shape. {mpirun}
# is a word of its own that the launcher replaces with the words that start the ranks.
# {repeat} counts the timed repeats from 0; warm-ups are -1, -2, ... (never 0).
COMMAND_FIELDS = ("ranks", "nodes", "ranks_per_node", "threads", "size", "repeat")
MPIRUN = "{mpirun}"
# Work models outside this range make sizes explode (or not grow at all) in a weak study.
WORK_EXPONENT_RANGE = (0.1, 10.0)


@dataclass(frozen=True)
class CommandSpec:
    """An external program to study instead of a built-in workload."""

    argv: tuple[str, ...]              # already split, placeholders still in place
    time_source: str = "wall"          # "wall" | "regex" | "json"
    time_regex: str | None = None      # first group: seconds
    time_json_key: str | None = None   # dotted key in the last JSON line of stdout
    work_exponent: float | None = None  # work grows as size ** this (needed for weak)
    derived: tuple[tuple[str, str], ...] = ()   # (name, integer formula), in order
    inputs: tuple[str, ...] = ()        # absolute paths copied into every repeat's folder
    links: tuple[str, ...] = ()         # absolute paths linked there instead
    version: tuple[str, ...] = ()       # a command that prints the program's version
    # Figures of merit besides the time: name -> {"regex" or "json_key", "unit"}.
    metrics: dict[str, dict[str, str]] = field(default_factory=dict)
    time_unit: str = "s"
    # Where the point folders go, relative to the study file's folder (default
    # <study file>.points); never outside it.
    workdir: str = ""


@dataclass(frozen=True)
class StudySpec:
    name: str
    kind: str
    ranks: tuple[int, ...]
    size: int | None
    backend: str = "cython"
    workload: str | None = None
    command: CommandSpec | None = None
    params: dict[str, Any] = field(default_factory=dict)
    repeats: int = 3
    warmup: int = 1
    launcher: str = "local"
    timeout: float = 3600.0               # per point, seconds
    description: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    array_throttle: int | None = None     # Slurm: at most this many points at once
    # OpenMP threads per rank (OMP_NUM_THREADS, cpus-per-task); several: a dimension
    threads: tuple[int, ...] = (1,)
    env: dict[str, str] = field(default_factory=dict)  # [env]: for the program
    # [check]: "match", regexes the output must match ({placeholders} filled in); "agree",
    # metric name -> relative tolerance between points.
    checks: dict[str, Any] = field(default_factory=dict)
    source: str = ""                      # the file it came from
    # Analysis only: fit points measured oversubscribed or contended too (hpc.machine).
    include_oversubscribed: bool = False
    # A node ladder: the nodes of each point, ranks[i] = nodes[i] x ranks_per_node;
    # () when the study climbs ranks.
    nodes: tuple[int, ...] = ()
    ranks_per_node: int | None = None

    @property
    def subject(self) -> str:
        return self.workload or f"command: {shlex.join(self.command.argv)}"

    @classmethod
    def from_json(cls, text: str, source: str = "") -> StudySpec:
        """The spec a study file stored (the inverse of ``to_json``), validated as a study
        file is: a damaged or foreign ``study_spec`` fails with a UserError."""
        where = f"{source}: study_spec" if source else "study_spec"
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UserError(f"{where} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"{where} is not a study description (a JSON object)")
        table = {k: v for k, v in data.items() if v is not None and v != {}}
        command = table.get("command")
        if isinstance(command, dict):  # back to the TOML shape: run is one string
            argv = command.get("argv")
            if not isinstance(argv, list) or not all(isinstance(w, str) for w in argv):
                raise UserError(f"{where}: command.argv must be a list of strings")
            toml_names = {"time_source": "time", "time_regex": "time_regex",
                          "time_json_key": "time_json_key", "work_exponent": "work_exponent"}
            table["command"] = {"run": shlex.join(argv),
                                **{toml_names.get(k, k): _toml_value(k, v)
                                   for k, v in command.items()
                                   if k != "argv" and v not in (None, "", [], {})}}
        if "checks" in table:
            table["check"] = table.pop("checks")
        if table.get("nodes"):  # the ranks follow from the nodes
            table.pop("ranks", None)
        else:
            table.pop("nodes", None)
        spec = parse_study(table, where, stored=True)
        return _replace(spec, source=source)

    def to_json(self) -> str:
        """Everything that decides which points run and how; stored in the study file."""
        data = asdict(self)
        data.pop("source")
        data.pop("description")
        data.pop("include_oversubscribed")  # how to analyse, not which points run
        return json.dumps(data, sort_keys=True)


_TOP_KEYS = {
    "name": str, "description": str, "kind": str, "workload": str, "command": dict,
    "backend": str, "ranks": (list, dict), "size": int, "params": dict, "repeats": int,
    "warmup": int, "launcher": str, "timeout": (int, float), "resources": dict,
    "profile": str, "array_throttle": int, "threads": (int, list), "env": dict, "check": dict,
    "include_oversubscribed": bool, "nodes": (list, dict), "ranks_per_node": int,
}
_COMMAND_KEYS = {"run": str, "time": str, "time_regex": str, "time_json_key": str,
                 "work_exponent": (int, float), "derived": dict, "inputs": list,
                 "links": list, "version": str, "metrics": dict, "time_unit": str,
                 "workdir": str}
_METRIC_KEYS = {"regex": str, "json_key": str, "unit": str}
_CHECK_KEYS = {"match": list, "agree": dict}
_LADDER_KEYS = {"from": int, "to": int, "step": int}


def _toml_value(key: str, value: Any) -> Any:
    """A stored CommandSpec field back in the shape the study file's TOML gives it."""
    if key == "version":
        return shlex.join(value)
    if key == "derived":
        return {name: formula for name, formula in value}
    return value


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a table", bool: "true or false"}
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_keys(where: str, table: dict[str, Any], schema: dict[str, Any]) -> None:
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                        f"valid keys: {', '.join(sorted(schema))}")
    for key, expected in schema.items():
        if key not in table:
            continue
        value = table[key]
        types = expected if isinstance(expected, tuple) else (expected,)
        # TOML booleans are ints to Python; a number where a bool belongs is wrong too.
        wrong_bool = isinstance(value, bool) != (bool in types)
        if not isinstance(value, types) or wrong_bool:
            raise UserError(f"{where}: {key} must be {_type_name(expected)}, "
                            f"got {value!r}")


def expand_ladder(value: list[Any] | dict[str, Any], where: str,
                  key: str = "ranks") -> tuple[int, ...]:
    """A ladder of ``key`` (ranks or nodes) from a list, or from {from, to} (powers of
    two) or {from, to, step}."""
    noun, cap = ("rank", MAX_RANKS) if key == "ranks" else ("node", MAX_NODES)
    if isinstance(value, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UserError(f"{where}: {key} must be whole numbers, got {value!r}")
        if len(value) > MAX_POINTS:
            raise UserError(f"{where}: {len(value)} {noun} counts; a study has at most "
                            f"{MAX_POINTS} points")
        ladder = list(value)
    else:
        _check_keys(f"{where}: {key}", value, _LADDER_KEYS)
        if "from" not in value or "to" not in value:
            raise UserError(f"{where}: {key} needs both 'from' and 'to', e.g. "
                            f"{key} = {{from = 1, to = 16}}")
        start, stop, step = value["from"], value["to"], value.get("step")
        if start < 1 or stop < start:
            raise UserError(f"{where}: {key} from {start} to {stop} is empty; "
                            "need 1 <= from <= to")
        if stop > cap:
            raise UserError(f"{where}: {key} to {stop} is beyond {cap}")
        if step is None:
            ladder = []
            p = start
            while p <= stop:
                ladder.append(p)
                p *= 2
        elif step < 1:
            raise UserError(f"{where}: {key} step must be at least 1, got {step}")
        elif (stop - start) // step + 1 > MAX_POINTS:
            raise UserError(f"{where}: {key} from {start} to {stop} step {step} gives more "
                            f"than {MAX_POINTS} points; use a larger step or a list")
        else:
            ladder = list(range(start, stop + 1, step))
    if not ladder:
        raise UserError(f"{where}: the {noun} ladder is empty; give at least two {noun} "
                        f"counts, e.g. {key} = [1, 2, 4]")
    if any(p < 1 for p in ladder):
        raise UserError(f"{where}: {noun} counts must be positive, got {ladder}")
    if max(ladder) > cap:
        raise UserError(f"{where}: {noun} count {max(ladder)} is beyond {cap}")
    if len(set(ladder)) != len(ladder):
        raise UserError(f"{where}: {noun} counts repeat in {ladder}; list each once "
                        "(repeats = N repeats a point)")
    return tuple(sorted(ladder))


def _node_ladder(data: dict[str, Any], where: str) -> tuple[tuple[int, ...], int]:
    """(nodes, ranks_per_node) of a study that climbs nodes; each point's ranks are
    nodes x ranks_per_node."""
    if "ranks" in data:
        raise UserError(f"{where}: give ranks or nodes, not both (with nodes, each point's "
                        "ranks are nodes x ranks_per_node)")
    if "ranks_per_node" not in data:
        raise UserError(f"{where}: nodes needs ranks_per_node, e.g. nodes = {{from = 1, "
                        "to = 4}} with ranks_per_node = 2")
    nodes = expand_ladder(data["nodes"], where, "nodes")
    per_node = data["ranks_per_node"]
    if not 1 <= per_node <= MAX_TASKS_PER_NODE:
        raise UserError(f"{where}: ranks_per_node must be from 1 to {MAX_TASKS_PER_NODE}, "
                        f"got {per_node}")
    if max(nodes) * per_node > MAX_RANKS:
        raise UserError(f"{where}: {max(nodes)} nodes x {per_node} ranks_per_node is "
                        f"beyond {MAX_RANKS} ranks")
    return nodes, per_node


def _regex(text: str, where: str, groups: int = 0) -> str:
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise UserError(f"{where} is not a valid regular expression: {exc}") from None
    if compiled.groups < groups:
        raise UserError(f"{where} needs a group around the number, e.g. "
                        "'elapsed: ([0-9.eE+-]+) s'")
    return text


def _placeholders(words: tuple[str, ...], names: tuple[str, ...], where: str) -> None:
    for word in words:
        if word == MPIRUN:
            continue
        try:
            parsed = list(string.Formatter().parse(word))
        except ValueError as exc:
            raise UserError(f"{where}: {word!r}: {exc} (write {{{{ and }}}} for literal "
                            "braces)") from None
        for _, name, spec, conversion in parsed:
            if name is not None and (name not in names or spec or conversion):
                hint = (" ({mpirun} must be a word of its own)" if name == "mpirun" else "")
                raise UserError(f"{where} uses {{{name}}}{hint}; the placeholders are "
                                f"{{mpirun}}, {', '.join('{' + f + '}' for f in names)} "
                                "(write {{ and }} for literal braces)")


def _files(table: dict[str, Any], key: str, base: Path | None, where: str,
           must_exist: bool = True) -> tuple[str, ...]:
    """Input files, relative to the study file's folder, made absolute; each must exist."""
    found = []
    for item in table.get(key, []):
        if not isinstance(item, str) or not item:
            raise UserError(f"{where}: [command] {key} must be a list of file paths, "
                            f"got {item!r}")
        path = (base or Path.cwd()) / Path(item).expanduser()
        if must_exist and not path.exists():
            raise UserError(f"{where}: [command] {key}: {item!r} does not exist (looked for "
                            f"{path}; paths are relative to the study file's folder)")
        found.append(str(path.resolve()))
    names = [Path(f).name for f in found]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: [command] {key}: two inputs have the same file name")
    return tuple(found)


def _program_absolute(argv: tuple[str, ...], base: Path | None) -> tuple[str, ...]:
    """A program given as a relative path (./app, bin/app) is relative to the study
    file's folder: each repeat runs in a folder of its own."""
    at = argv.index(MPIRUN) + 1 if MPIRUN in argv[:-1] else 0
    word = argv[at]
    if "/" not in word or word.startswith(("/", "~")) or "{" in word:
        return argv
    return (*argv[:at], str(((base or Path.cwd()) / word).resolve()), *argv[at + 1:])


def _command(table: dict[str, Any], where: str, base: Path | None = None,
             stored: bool = False) -> CommandSpec:
    _check_keys(f"{where}: [command]", table, _COMMAND_KEYS)
    if "run" not in table:
        raise UserError(f"{where}: [command] needs run = \"...\", e.g. "
                        "run = \"{mpirun} ./app --size {size}\"")
    try:
        argv = tuple(shlex.split(table["run"]))
        version = tuple(shlex.split(table.get("version", "")))
    except ValueError as exc:
        raise UserError(f"{where}: [command] run cannot be split into words: {exc}") from None
    if not argv:
        raise UserError(f"{where}: [command] run is empty")
    derived: list[tuple[str, str]] = []
    names = COMMAND_FIELDS
    for name, formula in table.get("derived", {}).items():
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in (*names, "mpirun"):
            raise UserError(f"{where}: [command.derived] {name!r}: give a new lower-case "
                            f"name, not one of {', '.join(names)}")
        if not isinstance(formula, str | int) or isinstance(formula, bool):
            raise UserError(f"{where}: [command.derived] {name} must be a formula in a "
                            f"string, e.g. {name} = \"isqrt(ranks)\"")
        check_formula(str(formula), set(names) - {"repeat"},
                      f"{where}: [command.derived] {name}")
        derived.append((name, str(formula)))
        names = (*names, name)
    _placeholders(argv, names, f"{where}: [command] run")
    argv = _program_absolute(argv, base)
    if MPIRUN not in argv and not any("{ranks}" in word for word in argv):
        raise UserError(f"{where}: [command] run must start its ranks: begin it with "
                        "{mpirun}, e.g. run = \"{mpirun} ./app\" (the launcher fills in "
                        "mpiexec -n P, or srun -n P in a Slurm job)")
    _placeholders(version, names, f"{where}: [command] version")
    version = _program_absolute(version, base) if version else version
    workdir = table.get("workdir", "")
    inside = Path("/study") / workdir
    if Path(workdir).is_absolute() or Path(os.path.normpath(inside)) != inside or \
            ".." in Path(workdir).parts:
        raise UserError(f"{where}: [command] workdir {workdir!r} is outside the study's "
                        "folder; give a folder relative to the study file's, e.g. "
                        "workdir = \"runs\"")
    sources = [k for k in ("time_regex", "time_json_key") if k in table]
    if len(sources) > 1:
        raise UserError(f"{where}: [command] give time_regex or time_json_key, not both")
    implied = {"time_regex": "regex", "time_json_key": "json"}[sources[0]] if sources else "wall"
    time = table.get("time", implied)
    if time not in ("wall", "regex", "json"):
        raise UserError(f"{where}: [command] time must be wall, regex or json, got {time!r}")
    if time == "regex":
        if table.get("time_regex") is None:
            raise UserError(f"{where}: [command] time = \"regex\" needs time_regex")
        _regex(table["time_regex"], f"{where}: [command] time_regex", groups=1)
    if time == "json" and not table.get("time_json_key"):
        raise UserError(f"{where}: [command] time = \"json\" needs time_json_key")
    metrics = {}
    for name, metric in table.get("metrics", {}).items():
        at = f"{where}: [command.metrics] {name}"
        if not isinstance(metric, dict):
            raise UserError(f"{at} must be a table, e.g. {{ regex = 'E = (\\S+)', unit = "
                            "'eV' }")
        _check_keys(at, metric, _METRIC_KEYS)
        if ("regex" in metric) == ("json_key" in metric):
            raise UserError(f"{at}: give regex or json_key, exactly one")
        if "regex" in metric:
            _regex(metric["regex"], f"{at} regex", groups=1)
        metrics[name] = dict(metric)
    exponent = table.get("work_exponent")
    low, high = WORK_EXPONENT_RANGE
    if exponent is not None and not low <= exponent <= high:  # NaN fails this too
        raise UserError(f"{where}: [command] work_exponent must be from {low:g} to {high:g} "
                        f"(work grows as size ** work_exponent), got {exponent}")
    return CommandSpec(argv=argv, time_source=time, time_regex=table.get("time_regex"),
                       time_json_key=table.get("time_json_key"),
                       work_exponent=None if exponent is None else float(exponent),
                       derived=tuple(derived),
                       inputs=_files(table, "inputs", base, where, not stored),
                       links=_files(table, "links", base, where, not stored), version=version,
                       metrics=metrics, time_unit=table.get("time_unit", "s"),
                       workdir=workdir)


def _checks(table: dict[str, Any], command: CommandSpec, where: str) -> dict[str, Any]:
    _check_keys(f"{where}: [check]", table, _CHECK_KEYS)
    names = (*COMMAND_FIELDS, *(n for n, _ in command.derived))
    match = []
    for pattern in table.get("match", []):
        if not isinstance(pattern, str):
            raise UserError(f"{where}: [check] match must be a list of regexes")
        _placeholders((pattern,), names, f"{where}: [check] match")
        match.append(pattern)
    agree = {}
    for name, tolerance in table.get("agree", {}).items():
        if name not in command.metrics:
            raise UserError(f"{where}: [check] agree names {name!r}, which is not one of "
                            f"[command.metrics]: {', '.join(command.metrics) or 'none'}")
        if not isinstance(tolerance, int | float) or isinstance(tolerance, bool) or \
                tolerance < 0:
            raise UserError(f"{where}: [check] agree.{name} must be a relative tolerance "
                            f">= 0, got {tolerance!r}")
        agree[name] = float(tolerance)
    return {"match": match, "agree": agree}


def _threads(value: int | list[Any], where: str) -> tuple[int, ...]:
    """One thread count, or a list of them: threads then is a dimension of the study."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                             for v in values):
        raise UserError(f"{where}: threads must be a whole number >= 1 or a list of them, "
                        f"got {value!r}")
    if len(set(values)) != len(values):
        raise UserError(f"{where}: thread counts repeat in {values}; list each once")
    return tuple(sorted(values))


def parse_study(data: dict[str, Any], where: str, default_name: str = "study",
                base: Path | None = None, stored: bool = False) -> StudySpec:
    """Validate a study given as a dict (the parsed TOML); ``base`` is the folder its
    relative paths start from (the study file's). ``stored``: a spec read back from a
    study file, whose input files need not be where they were when it ran."""
    from hpc.launchers import launcher_names
    from hpc.slurm.resources import Resources
    from kernels import BACKENDS

    _check_keys(where, data, _TOP_KEYS)
    _refuse_nul(data, where)
    kind = data.get("kind")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if ("workload" in data) == ("command" in data):
        raise UserError(f"{where}: give either workload = \"NAME\" (one of "
                        f"{', '.join(WORKLOADS)}) or a [command] table, exactly one")
    nodes, per_node = (), None
    if "nodes" in data:
        nodes, per_node = _node_ladder(data, where)
        ladder = tuple(n * per_node for n in nodes)
    elif "ranks_per_node" in data:
        raise UserError(f"{where}: ranks_per_node goes with a node ladder (nodes = ...); "
                        "with ranks, set [resources] ntasks_per_node instead")
    elif "ranks" not in data:
        raise UserError(f"{where}: ranks is missing; e.g. ranks = [1, 2, 4] or "
                        "ranks = {from = 1, to = 16} (or nodes = {from = 1, to = 4} with "
                        "ranks_per_node = 2)")
    else:
        ladder = expand_ladder(data["ranks"], where)
    threads = _threads(data.get("threads", 1), where)
    if len(ladder) * len(threads) < 2:
        raise UserError(f"{where}: a scaling study needs at least two rank counts (or two "
                        f"thread counts), got {list(ladder)}")
    cores = [r * t for r in ladder for t in threads]
    if len(set(cores)) != len(cores):
        raise UserError(f"{where}: ranks {list(ladder)} x threads {list(threads)} give the "
                        "same number of cores twice; the study scales over ranks x threads, "
                        "so vary one of them (or choose counts whose products differ)")
    if len(threads) > 1 and "workload" in data:
        raise UserError(f"{where}: threads as a dimension is for a [command]; the built-in "
                        "workloads run one thread per rank")
    launcher = data.get("launcher", "local")
    if launcher not in launcher_names():
        raise UserError(f"{where}: launcher must be one of {', '.join(launcher_names())}, "
                        f"got {launcher!r}")
    try:
        env = dict(Resources._checked_environment(data.get("env", {})))
    except UserError as exc:
        raise UserError(f"{where}: [env]: {exc}") from None
    backend = data.get("backend", "cython")
    repeats, warmup = data.get("repeats", 3), data.get("warmup", 1)
    if repeats < 2:
        raise UserError(f"{where}: repeats must be at least 2 (the fits' uncertainties come "
                        f"from the spread of the repeats), got {repeats}")
    if warmup < 0:
        raise UserError(f"{where}: warmup must be 0 or more, got {warmup}")
    if max(repeats, warmup) > MAX_REPEATS:
        raise UserError(f"{where}: repeats and warmup must be at most {MAX_REPEATS}, got "
                        f"{max(repeats, warmup)}")
    timeout = check_seconds(data.get("timeout", 3600), f"{where}: timeout")
    throttle = data.get("array_throttle")
    if throttle is not None and not 1 <= throttle <= MAX_POINTS:
        raise UserError(f"{where}: array_throttle must be from 1 to {MAX_POINTS}, "
                        f"got {throttle}")
    size = data.get("size")
    if size is not None and not 1 <= size <= INT64_MAX:
        raise UserError(f"{where}: size must be a positive 64-bit integer, got {size}")
    resources = dict(data.get("resources", {}))
    if resources:
        try:  # every launcher's resources, checked before any study file exists
            checked = Resources.create(resources)
        except UserError as exc:
            raise UserError(f"{where}: [resources] {exc}") from None
        # Whole numbers as Resources read them ("4" -> 4): the launchers size with them.
        resources = {k: getattr(checked, k) if isinstance(getattr(checked, k), int) else v
                     for k, v in resources.items()}
    fixed = sorted({"nodes", "ntasks_per_node"} & set(resources)) if nodes else []
    if fixed:
        raise UserError(f"{where}: [resources] {', '.join(fixed)}: a node ladder sets each "
                        "point's nodes and ntasks_per_node itself (nodes, ranks_per_node)")
    name = data.get("name", default_name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise UserError(f"{where}: name {name!r} must be 1-64 letters, digits, '.', '_' or "
                        "'-' (it names files and Slurm jobs)")
    params = dict(data.get("params", {}))
    workload, command = data.get("workload"), None
    if workload is not None:
        if workload not in WORKLOADS:
            raise UserError(f"{where}: unknown workload {workload!r}; valid: "
                            f"{', '.join(WORKLOADS)}")
        if backend not in BACKENDS:
            raise UserError(f"{where}: backend must be one of {', '.join(BACKENDS)}, "
                            f"got {backend!r}")
        cls = WORKLOADS[workload]
        if cls.size_param in params:
            raise UserError(f"{where}: set the size with size = N, not params.{cls.size_param} "
                            "(the size is what a weak study grows)")
        try:  # names, types, ranges
            cls.resolve_params({**params, cls.size_param: size}, 1)
        except UserError as exc:
            raise UserError(f"{where}: [params] {exc}") from None
        work_exponent = getattr(cls, "work_exponent", None)
    else:
        if params:
            raise UserError(f"{where}: params apply to built-in workloads; put an external "
                            "command's options into [command] run")
        command = _command(data["command"], where, base, stored)
        if size is None and any("{size}" in w for w in command.argv):
            raise UserError(f"{where}: [command] run uses {{size}} but the study sets no size")
        work_exponent = command.work_exponent
    checks = {}
    if "check" in data:
        if command is None:
            raise UserError(f"{where}: [check] applies to a [command]; built-in workloads "
                            "verify their own results")
        checks = _checks(data["check"], command, where)
    if kind == "weak" and not work_exponent:
        subject = workload or "the command"
        raise UserError(f"{where}: a weak study grows the size so that the work per rank "
                        f"stays constant, which needs a work model; {subject} has none "
                        "(for a command, set work_exponent in [command])")
    if kind == "weak" and size is None and workload is None:
        raise UserError(f"{where}: a weak study needs size = N (the size at "
                        f"{ladder[0]} rank(s))")
    return StudySpec(
        name=name, kind=kind, ranks=ladder, size=size, backend=backend, workload=workload,
        command=command, params=params, repeats=repeats, warmup=warmup, launcher=launcher,
        timeout=timeout, description=data.get("description", ""),
        resources=resources, profile=data.get("profile"), array_throttle=throttle,
        threads=threads, env=env, checks=checks, source=where,
        include_oversubscribed=data.get("include_oversubscribed", False),
        nodes=nodes, ranks_per_node=per_node)


def _refuse_nul(value: Any, where: str) -> None:
    """No NUL byte in any key or string: it cannot reach an argv, a file name or HDF5."""
    if isinstance(value, str):
        if "\x00" in value:
            raise UserError(f"{where}: {value!r} holds a NUL byte")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, where)
            _refuse_nul(item, where)
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item, where)


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        shipped = sorted(p.name for p in shipped_studies_folder().glob("*.toml"))
        hint = f"; shipped studies: {', '.join(shipped)}" if shipped else ""
        raise UserError(f"study file {path} not found{hint}")
    try:
        data = tomllib.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError;
        # so is an integer of more than 4300 digits
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML: tables or arrays nested too deep") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read: {exc.strerror}") from None
    return parse_study(data, str(path), default_name=path.stem, base=path.resolve().parent)


def shipped_studies_folder() -> Path:
    return Path(__file__).resolve().parents[2] / "scaling_studies"
