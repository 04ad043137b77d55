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
    size = 512                      # the size at the smallest rank count
    [params]                        # the workload's other options
    steps = 100

Every error names the file and the key, and lists the valid keys or values.
"""

from __future__ import annotations

import json
import re
import shlex
import string
import sys
from dataclasses import asdict, dataclass, field
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

from hpc.errors import UserError
from hpc.limits import INT64_MAX, MAX_POINTS, MAX_RANKS, MAX_REPEATS, check_seconds
from hpc.workloads import WORKLOADS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KINDS = ("strong", "weak")
LAUNCHERS = ("local", "slurm", "submitit")
# Placeholders an external command may use; every value is a number, so substituting
# them into an already split argument list cannot change the command's shape.
COMMAND_FIELDS = ("ranks", "size", "repeat")
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
    source: str = ""                      # the file it came from
    # Analysis only: fit points measured oversubscribed or contended too (hpc.machine).
    include_oversubscribed: bool = False

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
                                **{toml_names.get(k, k): v for k, v in command.items()
                                   if k != "argv" and v is not None}}
        spec = parse_study(table, where)
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
    "profile": str, "array_throttle": int, "include_oversubscribed": bool,
}
_COMMAND_KEYS = {"run": str, "time": str, "time_regex": str, "time_json_key": str,
                 "work_exponent": (int, float)}
_LADDER_KEYS = {"from": int, "to": int, "step": int}


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


def expand_ladder(value: list[Any] | dict[str, Any], where: str) -> tuple[int, ...]:
    """A rank ladder from a list, or from {from, to} (powers of two) or {from, to, step}."""
    if isinstance(value, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UserError(f"{where}: ranks must be whole numbers, got {value!r}")
        if len(value) > MAX_POINTS:
            raise UserError(f"{where}: {len(value)} rank counts; a study has at most "
                            f"{MAX_POINTS} points")
        ladder = list(value)
    else:
        _check_keys(f"{where}: ranks", value, _LADDER_KEYS)
        if "from" not in value or "to" not in value:
            raise UserError(f"{where}: ranks needs both 'from' and 'to', e.g. "
                            "ranks = {from = 1, to = 16}")
        start, stop, step = value["from"], value["to"], value.get("step")
        if start < 1 or stop < start:
            raise UserError(f"{where}: ranks from {start} to {stop} is empty; "
                            "need 1 <= from <= to")
        if stop > MAX_RANKS:
            raise UserError(f"{where}: ranks to {stop} is beyond {MAX_RANKS}")
        if step is None:
            ladder = []
            p = start
            while p <= stop:
                ladder.append(p)
                p *= 2
        elif step < 1:
            raise UserError(f"{where}: ranks step must be at least 1, got {step}")
        elif (stop - start) // step + 1 > MAX_POINTS:
            raise UserError(f"{where}: ranks from {start} to {stop} step {step} gives more "
                            f"than {MAX_POINTS} points; use a larger step or a list")
        else:
            ladder = list(range(start, stop + 1, step))
    if not ladder:
        raise UserError(f"{where}: the rank ladder is empty; give at least two rank counts, "
                        "e.g. ranks = [1, 2, 4]")
    if any(p < 1 for p in ladder):
        raise UserError(f"{where}: rank counts must be positive, got {ladder}")
    if max(ladder) > MAX_RANKS:
        raise UserError(f"{where}: rank count {max(ladder)} is beyond {MAX_RANKS}")
    if len(set(ladder)) != len(ladder):
        raise UserError(f"{where}: rank counts repeat in {ladder}; list each once "
                        "(repeats = N repeats a point)")
    return tuple(sorted(ladder))


def _command(table: dict[str, Any], where: str) -> CommandSpec:
    _check_keys(f"{where}: [command]", table, _COMMAND_KEYS)
    if "run" not in table:
        raise UserError(f"{where}: [command] needs run = \"...\", e.g. "
                        "run = \"mpiexec -n {ranks} ./app --size {size}\"")
    try:
        argv = tuple(shlex.split(table["run"]))
    except ValueError as exc:
        raise UserError(f"{where}: [command] run cannot be split into words: {exc}") from None
    if not argv:
        raise UserError(f"{where}: [command] run is empty")
    fields = ', '.join('{' + f + '}' for f in COMMAND_FIELDS)
    for word in argv:
        try:
            parsed = list(string.Formatter().parse(word))
        except ValueError as exc:  # an unbalanced { or }
            raise UserError(f"{where}: [command] run: {exc} in {word!r}; the placeholders "
                            f"are {fields} (write {{{{ and }}}} for literal braces)") from None
        for _, name, spec, conversion in parsed:
            if name is not None and (name not in COMMAND_FIELDS or spec or conversion):
                raise UserError(f"{where}: [command] run uses {{{name}}}; the placeholders "
                                f"are {fields} (write {{{{ and }}}} for literal braces)")
    if not any("{ranks}" in word for word in argv):
        raise UserError(f"{where}: [command] run must start its own ranks with {{ranks}}, "
                        "e.g. run = \"mpiexec -n {ranks} ./app\" or \"srun -n {ranks} ./app\"")
    sources = [k for k in ("time_regex", "time_json_key") if k in table]
    if len(sources) > 1:
        raise UserError(f"{where}: [command] give time_regex or time_json_key, not both")
    implied = {"time_regex": "regex", "time_json_key": "json"}[sources[0]] if sources else "wall"
    time = table.get("time", implied)
    if time not in ("wall", "regex", "json"):
        raise UserError(f"{where}: [command] time must be wall, regex or json, got {time!r}")
    if time == "regex":
        pattern = table.get("time_regex")
        if pattern is None:
            raise UserError(f"{where}: [command] time = \"regex\" needs time_regex")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise UserError(f"{where}: [command] time_regex is not a valid regular "
                            f"expression: {exc}") from None
        if compiled.groups < 1:
            raise UserError(f"{where}: [command] time_regex needs a group around the seconds, "
                            "e.g. 'elapsed: ([0-9.eE+-]+) s'")
    if time == "json" and not table.get("time_json_key"):
        raise UserError(f"{where}: [command] time = \"json\" needs time_json_key")
    exponent = table.get("work_exponent")
    low, high = WORK_EXPONENT_RANGE
    if exponent is not None and not low <= exponent <= high:  # NaN fails this too
        raise UserError(f"{where}: [command] work_exponent must be from {low:g} to {high:g} "
                        f"(work grows as size ** work_exponent), got {exponent}")
    return CommandSpec(argv=argv, time_source=time, time_regex=table.get("time_regex"),
                       time_json_key=table.get("time_json_key"),
                       work_exponent=None if exponent is None else float(exponent))


def parse_study(data: dict[str, Any], where: str, default_name: str = "study") -> StudySpec:
    """Validate a study given as a dict (the parsed TOML)."""
    from kernels import BACKENDS

    _check_keys(where, data, _TOP_KEYS)
    _refuse_nul(data, where)
    kind = data.get("kind")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if ("workload" in data) == ("command" in data):
        raise UserError(f"{where}: give either workload = \"NAME\" (one of "
                        f"{', '.join(WORKLOADS)}) or a [command] table, exactly one")
    if "ranks" not in data:
        raise UserError(f"{where}: ranks is missing; e.g. ranks = [1, 2, 4] or "
                        "ranks = {from = 1, to = 16}")
    ladder = expand_ladder(data["ranks"], where)
    if len(ladder) < 2:
        raise UserError(f"{where}: a scaling study needs at least two rank counts, got "
                        f"{list(ladder)}")
    launcher = data.get("launcher", "local")
    if launcher not in LAUNCHERS:
        raise UserError(f"{where}: launcher must be one of {', '.join(LAUNCHERS)}, "
                        f"got {launcher!r}")
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
        from hpc.slurm.resources import Resources

        try:  # every launcher's resources, checked before any study file exists
            Resources.create(resources)
        except UserError as exc:
            raise UserError(f"{where}: [resources] {exc}") from None
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
        command = _command(data["command"], where)
        if size is None and any("{size}" in w for w in command.argv):
            raise UserError(f"{where}: [command] run uses {{size}} but the study sets no size")
        work_exponent = command.work_exponent
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
        resources=resources, profile=data.get("profile"),
        array_throttle=throttle, source=where,
        include_oversubscribed=data.get("include_oversubscribed", False))


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
    return parse_study(data, str(path), default_name=path.stem)


def shipped_studies_folder() -> Path:
    return Path(__file__).resolve().parents[2] / "scaling_studies"
