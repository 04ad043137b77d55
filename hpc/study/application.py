"""What a [command] study's program is: its file, checksum, the MPI library it links and
its version, and whether that MPI is the one that will start its ranks.

A program built against one MPI and started by another MPI's mpiexec runs as P separate
one-rank copies; ``warn_mpi_mismatch`` says so before it runs, where ``ldd`` can tell.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hpc.study.spec import MPIRUN, CommandSpec, StudySpec

VERSION_TIMEOUT = 30
VERSION_KEPT = 16384  # characters of the version command's output kept


def program_word(command: CommandSpec) -> str:
    """The program the command runs: the word after {mpirun}, else the first."""
    argv = command.argv
    return argv[argv.index(MPIRUN) + 1] if MPIRUN in argv[:-1] else argv[0]


def program_path(command: CommandSpec, search: str | None = None) -> str | None:
    """The program's file, resolved (None when it cannot be found)."""
    word = program_word(command)
    path = shutil.which(word, path=search) if "/" not in word else word
    return str(Path(path).resolve()) if path and Path(path).is_file() else None


def mpi_warning_before(spec: StudySpec, starter_options: list[str]) -> str | None:
    """warn_mpi_mismatch for the launcher's starter, before anything is submitted."""
    path = program_path(spec.command)
    if path is None:
        return None
    opts = dict(zip(starter_options[::2], starter_options[1::2], strict=False))
    return warn_mpi_mismatch(linked_mpi(path), opts["--starter"], opts.get("--mpi"))


def application_provenance(command: CommandSpec, argv: list[str], env: dict[str, str],
                           folder: Path, version: list[str]) -> dict[str, Any]:
    """The program's command, path, checksum, the MPI it links and its version (the
    output of ``version``, run in ``folder``)."""
    info: dict[str, Any] = {"command_template": shlex.join(command.argv),
                            "command": shlex.join(argv)}
    path = program_path(command, env.get("PATH"))
    if path:
        info["executable"] = path
        info["executable_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        mpi = linked_mpi(info["executable"])
        if mpi:
            info["linked_mpi"] = mpi
    if version:
        try:
            proc = subprocess.run(version, cwd=folder, env=env,
                                  capture_output=True, text=True, errors="replace",
                                  timeout=VERSION_TIMEOUT, check=False)
            info["version"] = (proc.stdout + proc.stderr).strip()[:VERSION_KEPT]
        except (OSError, subprocess.TimeoutExpired) as exc:
            info["version"] = f"(the version command failed: {exc})"
    return info


def linked_mpi(executable: str) -> str | None:
    """The MPI library an executable links, as ldd reports it (None if ldd cannot tell)."""
    if shutil.which("ldd") is None:
        return None
    try:
        proc = subprocess.run(["ldd", executable], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in proc.stdout.splitlines()
             if re.match(r"\s*lib(mpi|mpich|mpi_mpifh|mpicxx)[._]", line)]
    return "; ".join(lines) or None


def mpi_family(text: str) -> str | None:
    """'openmpi' or 'mpich' from a library path or an mpiexec's flavour."""
    lowered = text.lower()
    if "openmpi" in lowered or "libmpi.so.40" in lowered or "open mpi" in lowered:
        return "openmpi"
    if "mpich" in lowered or "libmpi.so.12" in lowered or "hydra" in lowered:
        return "mpich"
    return None


# The srun --mpi plugin each MPI family speaks (Debian's Open MPI has no PMI-2; PyPI's
# MPICH no PMIx).
_SRUN_PLUGIN = {"openmpi": "pmix", "mpich": "pmi2"}


def warn_mpi_mismatch(linked: str | None, starter: str, mpi: str | None = None) -> str | None:
    """A warning when the program links another MPI than the one that starts its ranks:
    the ranks then do not see each other and run as separate one-rank copies."""
    if linked is None or starter == "mpirun":
        return None
    if starter == "srun":
        program = mpi_family(linked)
        wanted = _SRUN_PLUGIN.get(program or "")
        if wanted and mpi and not mpi.startswith(wanted):
            return (f"the program links {program} ({linked}), which speaks "
                    f"--mpi={wanted}, but srun is given --mpi={mpi}")
        return None
    from hpc.mpi_env import find_mpiexec, mpiexec_flavor

    mpiexec = find_mpiexec()
    program, launcher = mpi_family(linked), mpiexec_flavor(mpiexec)
    if program and launcher in ("openmpi", "mpich") and program != launcher:
        return (f"the program links {program} ({linked}) but {mpiexec} is {launcher}: its "
                f"ranks will not see each other; set HPC_MPIEXEC to the {program} mpiexec")
    return None
