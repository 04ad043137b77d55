"""Where the ``slurm/`` data (templates and site profiles) is found.

In a source checkout or an editable install it is the repository's own ``slurm/`` folder
beside the ``hpc`` package, so edits there take effect at once. A wheel or a regular
install carries a copy as ``hpc/slurm/data`` (pyproject.toml maps ``slurm/`` to that
package), used when there is no checkout.
"""

from __future__ import annotations

from pathlib import Path

_REPO_DATA = Path(__file__).resolve().parent.parent.parent / "slurm"
_INSTALLED_DATA = Path(__file__).resolve().parent / "data"


def data_dir() -> Path:
    for candidate in (_REPO_DATA, _INSTALLED_DATA):
        if (candidate / "templates").is_dir():
            return candidate
    raise FileNotFoundError(f"no Slurm templates in {_REPO_DATA} or {_INSTALLED_DATA}; "
                            "reinstall hpc-suite")


def templates_dir() -> Path:
    return data_dir() / "templates"


def profiles_dir() -> Path:
    return data_dir() / "profiles"
