"""Job folders: where a submitted job's script, id and logs live.

``hpc-jobs/<job name>-<UTC time>/`` (the root is ``--jobs-dir`` or $HPC_JOBS_DIR) holds

    job.sh                     the rendered script (sbatch engine)
    job.json                   what was submitted: engine, job id, cluster, resources,
                               profile, command, steps, output file, submission time,
                               and the last state seen by hpc status / hpc wait
    slurm-<id>.out, .err       the job's stdout and stderr (arrays: slurm-<id>_<task>.*)
    provenance-<id>.txt        start/end time, batch host, node list, restart count and
                               exit code of each run of the script (appended on requeue)
    submitit/                  the submitit engine's own files (pickled function and
                               result, <id>_<task>_log.out/.err, its sbatch script)

The HDF5 record goes to the ``--out`` file, wherever that is.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpc.atomic import write_bytes
from hpc.errors import UserError

JOBS_DIR_ENV = "HPC_JOBS_DIR"
DEFAULT_JOBS_DIR = Path("hpc-jobs")
INFO_FILE = "job.json"
SCRIPT_FILE = "job.sh"
_JOB_ID = re.compile(r"\d+(_\d+)?")


def jobs_root(given: Path | None = None) -> Path:
    if given is not None:
        return given
    return Path(os.environ.get(JOBS_DIR_ENV) or DEFAULT_JOBS_DIR)


def new_job_folder(root: Path, name: str) -> Path:
    """A fresh folder ``root/<name>-<UTC time>`` (with -2, -3... if that exists)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the jobs folder {root}: {exc.strerror}") from None
    for n in range(1, 1000):
        folder = root / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            folder.mkdir()
            return folder.resolve()
        except FileExistsError:
            continue
    raise UserError(f"could not find a free job folder name in {root}")


def write_info(folder: Path, info: dict[str, Any]) -> None:
    """Write job.json atomically (a reader never sees half of it)."""
    write_bytes(folder / INFO_FILE, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())


def read_info(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / INFO_FILE).read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} is not a job folder (no {INFO_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {folder / INFO_FILE}: {exc}") from None


def job_folders(root: Path) -> list[Path]:
    """Job folders under ``root`` that hold a submitted job, oldest first."""
    if not root.is_dir():
        return []
    folders = [p.parent for p in root.glob(f"*/{INFO_FILE}")]
    return sorted(folders, key=lambda p: (p / INFO_FILE).stat().st_mtime)


def find_job(arg: str, root: Path) -> tuple[str, Path | None]:
    """A job named on the command line: a job id (123, 123_4) or a job folder path."""
    if _JOB_ID.fullmatch(arg):
        base = arg.split("_", 1)[0]
        for folder in reversed(job_folders(root)):
            info = read_info(folder)
            if info.get("job_id") == base:
                return arg, folder
        return arg, None
    folder = Path(arg)
    if folder.is_dir():
        info = read_info(folder)
        if not info.get("job_id"):
            raise UserError(f"{folder} holds a job that was never submitted (dry run?)")
        return str(info["job_id"]), folder
    raise UserError(f"{arg!r} is neither a Slurm job id (123, 123_4) nor a job folder")


def log_files(folder: Path, job_id: str) -> list[Path]:
    """stdout/stderr files of ``job_id`` in ``folder`` (every task of an array)."""
    base = job_id.split("_", 1)[0]
    task = job_id.split("_", 1)[1] if "_" in job_id else "*"
    patterns = [f"slurm-{job_id}.out", f"slurm-{job_id}.err",
                f"slurm-{base}_{task}.out", f"slurm-{base}_{task}.err",
                f"submitit/{base}_*_log.out", f"submitit/{base}_*_log.err"]
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            found[path] = None
    return list(found)
