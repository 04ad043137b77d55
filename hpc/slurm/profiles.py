"""Site profiles: a cluster's defaults for every job, in TOML.

A profile is a file you trust like a job script (its ``setup`` lines run verbatim in
every job). Its keys:

    description = "what site this is"
    template = "srun.sh.j2"      # optional: a template in slurm/templates, or a file
                                 # relative to the profile; default: <starter>.sh.j2
    python = "/path/to/python"   # optional: the interpreter on compute nodes;
                                 # default: the Python that submits
    setup = ["module purge"]     # optional: shell lines before modules are loaded

    [resources]                  # defaults for any Resources field
    partition = "gpu"
    mpi = "pmix"
    [resources.environment]
    OMP_NUM_THREADS = "1"

``--profile NAME`` reads ``slurm/profiles/NAME.toml``; a value with a ``/`` or ending in
``.toml`` is a path to the user's own file.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc.errors import UserError
from hpc.slurm.paths import profiles_dir
from hpc.slurm.resources import Resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
PROFILE_KEYS = ("description", "template", "python", "setup", "resources")
DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path | None
    description: str = ""
    template: str | None = None
    python: str | None = None
    setup: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)

    def template_name(self, resources: Resources) -> str:
        """The template to render: the profile's own, else the starter's."""
        return self.template or f"{resources.starter}.sh.j2"

    @property
    def folder(self) -> Path | None:
        """Where the profile's own templates may live (beside the profile file)."""
        return self.path.parent if self.path else None


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def profile_path(name: str) -> Path:
    if "/" in name or name.endswith(".toml"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(f"profile file {name} does not exist")
        return path
    path = profiles_dir() / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown profile {name!r}; available: "
                        f"{', '.join(available_profiles())}, or a path to your own .toml file")
    return path


def load_profile(name: str | None = None) -> Profile:
    """The named profile (default: ``default``), validated."""
    path = profile_path(name or DEFAULT_PROFILE)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read profile {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"profile {path} is not valid TOML: {exc}") from None
    if not _PROFILE_NAME.fullmatch(path.stem):
        raise UserError(f"profile file name {path.name!r}: use letters, digits and . _ + - "
                        "only (the name is written into job scripts)")
    return profile_from_dict(path.stem, data, path)


def profile_from_dict(name: str, data: dict[str, Any], path: Path | None = None) -> Profile:
    where = f"profile {path or name}"
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: "
                        f"{', '.join(PROFILE_KEYS)} (resource fields go under [resources])")
    strings = {k: data.get(k) for k in ("description", "template", "python")}
    for key, value in strings.items():
        if value is not None and not isinstance(value, str):
            raise UserError(f"{where}: {key} must be a string, got {value!r}")
    setup = data.get("setup", [])
    if not isinstance(setup, list) or not all(isinstance(line, str) for line in setup):
        raise UserError(f"{where}: setup must be a list of shell lines (strings)")
    resources = data.get("resources", {})
    if not isinstance(resources, dict):
        raise UserError(f"{where}: [resources] must be a table")
    try:
        checked = Resources.create(resources)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return Profile(name=name, path=path, description=strings["description"] or "",
                   template=strings["template"], python=strings["python"],
                   setup=tuple(setup), resources=checked)
