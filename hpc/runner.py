"""The rank side of ``hpc run``: set up, time, gather, verify and record one run.

Runs in place on every rank of an MPI job (started by ``hpc run --np``, by mpiexec or by
srun). Any exception on any rank ends the whole job through MPI_Abort, with the rank
and host named, so that a failing rank never leaves the others waiting in a collective.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpc import checkpoint as ckpt
from hpc import lifeline, machine, provenance
from hpc.errors import INTERRUPTED, HpcError, LauncherLost, NoSpace, UserError
from hpc.lazympi import lazy_module
from hpc.limits import HERE, MAX_REPEATS, check_memory, check_ranks
from hpc.mpi_start import init_mpi
from hpc.records import RunRecord, append_run, check_output_path
from hpc.runs import RunSpec
from hpc.timing import PhaseTimer
from hpc.workloads import get_workload

np = lazy_module("numpy")  # not imported by a process that only starts the ranks

# Test hook: the rank named here raises in its first timed repeat, after its
# neighbours have entered communication: the real failure a hang would come from.
FAIL_RANK_ENV = "HPC_FAIL_RANK"
# Seconds a failing rank waits between its message and MPI_Abort.
ABORT_GRACE_S = 0.3


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def load_kernels(backend: str, only_find: bool = False) -> Any:
    """The backend's kernel module; with ``only_find``, its checks without importing it
    where they can be made so (kernels.find_backend), and None."""
    from kernels import find_backend, load_backend

    try:
        if only_find and backend != "cuda":
            return find_backend(backend)
        return load_backend(backend)
    except (ImportError, ValueError) as exc:
        raise UserError(str(exc)) from None


def workload_class(name: str, backend: str) -> type:
    """The workload's class: its CUDA version (hpc.workloads.cuda) for --backend cuda."""
    if backend == "cuda":
        from hpc.workloads.cuda import cuda_workload

        return cuda_workload(name)  # UserError for workloads without CUDA kernels
    return get_workload(name)


def validate(spec: RunSpec, nranks: int, nodes: int = 1, node_memory: int | None = None,
             memory_where: str = HERE, launching: bool = False) -> dict[str, Any]:
    """Everything that can be checked before MPI starts; returns the resolved parameters.

    With ``node_memory`` (bytes per node) the workload's memory model must fit in it.
    ``launching``: in the process that only starts the ranks, which then validate again
    in full, the kernels are found but not imported (with numpy they cost that process
    about a bare Python start).
    """
    check_ranks(nranks)
    if not 1 <= spec.repeats <= MAX_REPEATS:
        raise UserError(f"--repeats must be from 1 to {MAX_REPEATS}, got {spec.repeats}")
    if not 0 <= spec.warmup <= MAX_REPEATS:
        raise UserError(f"--warmup must be from 0 to {MAX_REPEATS}, got {spec.warmup}")
    params = get_workload(spec.workload).resolve_params(spec.params, nranks)
    # What the backend's own class can do (UserError for a workload without CUDA kernels):
    # an option the backend cannot honour is refused here, not ignored by the ranks.
    cls = workload_class(spec.workload, spec.backend)
    if spec.checkpoint is not None and not cls.checkpoint_every:
        raise UserError(f"{cls.name} cannot be checkpointed with --backend {spec.backend} "
                        "(heat2d and nbody can, on every backend)")
    if node_memory is not None:
        check_memory(cls, params, nranks, nodes, node_memory, memory_where)
    if spec.backend == "cuda":
        from hpc.gpu import require_cuda

        require_cuda()  # says what is missing: PyCUDA, the driver, a device or nvcc
    load_kernels(spec.backend, only_find=launching)
    if spec.out is not None:
        check_output_path(spec.out)
    if spec.checkpoint is not None:
        ckpt.check_checkpoint_path(spec.checkpoint, spec.identity(params, nranks), spec.out)
    return params


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_srun_wiring(comm: Any) -> None:
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS")
    if tasks and tasks.isdigit() and int(tasks) > 1 and comm.size == 1:
        from mpi4py import MPI

        # MPICH (PyPI's included) speaks PMI-2, not PMIx; Open MPI speaks PMIx.
        flag = "pmi2" if "MPICH" in MPI.Get_library_version() else "pmix"
        raise UserError(f"srun started {tasks} tasks but MPI sees one rank each: the MPI "
                        f"library does not speak srun's PMI; try `srun --mpi={flag}`")


def _validate_together(spec: RunSpec, comm: Any) -> dict[str, Any] | None:
    """Validate on every rank and agree on the outcome; None when any rank refused.

    Validation comes before any other communication, so all ranks reach the allgather:
    the job can stop with one message and exit code 2 instead of an MPI_Abort per rank.
    """
    try:
        _check_srun_wiring(comm)
        if spec.np is not None and spec.np != comm.size:
            raise UserError(f"--np {spec.np} asked for, but this MPI job has {comm.size} "
                            "ranks; inside mpiexec or srun leave out --np")
        params, error = validate(spec, comm.size), None
    except UserError as exc:
        params, error = None, str(exc)
    errors = comm.allgather(error)
    if not any(errors):
        return params
    if comm.rank == 0:
        for message in dict.fromkeys(e for e in errors if e):
            ranks = [str(r) for r, e in enumerate(errors) if e == message]
            where = "every rank" if len(ranks) == comm.size else f"rank(s) {', '.join(ranks)}"
            _say(f"hpc: error: {message} ({where})")
    return None


def run_ranks(spec: RunSpec) -> int:
    """Entry point on every rank; returns the exit code. Aborts the job on any error."""
    lifeline.watch_launcher()  # end this rank if the hpc process that started it dies
    # Every rank needs numpy (hpc.lazympi.lazy_module spares only the launcher): imported
    # here, before anything is timed or probed, not at a first use inside a repeat.
    import numpy  # noqa: F401

    MPI = init_mpi()  # a failure before MPI is up still ends every rank

    comm = MPI.COMM_WORLD
    try:
        # Listen for the stop signal from the start: unhandled, SIGUSR1 would kill the rank.
        stop = ckpt.StopRequest() if spec.checkpoint is not None else None
        # Rank 0's git and package scan run in a thread while the ranks validate and set up.
        prefetched = provenance.Prefetch() if comm.rank == 0 else None
        params = _validate_together(spec, comm)
        if params is None:
            return UserError.exit_code
        return _run(spec, params, comm, stop, prefetched)
    except BaseException as exc:  # noqa: BLE001 - any failure must end every rank
        code = getattr(exc, "exit_code", 1)
        where = f"[rank {comm.rank}@{MPI.Get_processor_name()}]"
        if isinstance(exc, HpcError):
            _say(f"hpc: error: {exc} {where}")
        elif isinstance(exc, KeyboardInterrupt):
            code = INTERRUPTED
            _say(f"hpc: interrupted {where}")
        else:
            _say(f"hpc: rank failed {where}:\n{traceback.format_exc()}")
        # The process manager forwards this rank's stderr; an abort at once can tear its
        # streams down before the message is through (seen: 2 of 5 submitit logs empty).
        time.sleep(ABORT_GRACE_S)
        comm.Abort(code)
        return code  # not reached


def _repeats(spec: RunSpec, workload: Any, progress: ckpt.Progress, saved: Any,
             loaded: Any) -> np.ndarray | None:
    """Warm-up then timed repeats, from where ``progress`` says; this rank's timings
    [repeat, total + phases], or None when the ranks agreed to stop (``progress`` then
    says where, for the checkpoint). ``loaded()`` is called once ``saved`` is read."""
    from mpi4py import MPI

    comm, cls = workload.comm, type(workload)
    timer = PhaseTimer(cls.phases, clock=MPI.Wtime)
    fail_rank = os.environ.get(FAIL_RANK_ENV)
    local = np.zeros((spec.repeats, 1 + len(cls.phases)))
    if saved is not None:
        local[:len(progress.timings)] = progress.timings
    # Warm-up and timed repeats are counted together so that a stop can fall in either.
    for it in range(progress.iteration, spec.warmup + spec.repeats):
        repeat = it - spec.warmup  # negative while warming up
        timer.reset()
        carried = 0.0  # seconds of this repeat spent in earlier segments
        if saved is not None and it == progress.iteration:
            workload.load_state(saved)
            carried, timer.seconds[:] = progress.partial[0], map(float, progress.partial[1:])
            loaded()
        else:
            workload.reset()
        comm.Barrier()
        t0 = MPI.Wtime()
        if repeat >= 0 and fail_rank == str(comm.rank):
            raise RuntimeError(f"injected failure ({FAIL_RANK_ENV}={fail_rank})")
        workload.execute(timer)
        elapsed = carried + MPI.Wtime() - t0
        if workload.stop is not None and workload.stop.agreed:
            progress.iteration = it
            progress.timings = local[:max(repeat, 0)]
            progress.partial = np.concatenate(([elapsed], timer.seconds))
            return None
        if repeat >= 0:
            local[repeat, 0] = elapsed
            local[repeat, 1:] = timer.seconds
            if comm.rank == 0 and not spec.quiet and spec.repeats > 1:
                _say(f"  repeat {repeat + 1}/{spec.repeats}: {elapsed:.4f} s")
    return local


def _run(spec: RunSpec, params: dict[str, Any], comm: Any, stop: Any = None,
         prefetched: provenance.Prefetch | None = None) -> int:
    cls = workload_class(spec.workload, spec.backend)
    kernels, gpu = load_kernels(spec.backend), None
    if spec.backend == "cuda":
        from hpc.gpu import bind_device

        gpu = bind_device(comm)  # collective: this rank's device by node-local rank
        kernels.load_all()  # compiled on the first run only; loaded now, not in a repeat
    workload = cls(comm, params, kernels, spec.backend)
    segment_start = utc_now()
    progress = ckpt.Progress(iteration=0, start_utc=segment_start, run_id=uuid.uuid4().hex)
    workload.setup()
    workload.stop = stop
    with contextlib.ExitStack() as checkpoint_file:
        saved = None
        if spec.checkpoint is not None and spec.checkpoint.exists():
            opened = ckpt.load(spec.checkpoint, comm.rank)
            progress, saved = checkpoint_file.enter_context(opened)
            if comm.rank == 0 and not spec.quiet:
                _say(f"  resuming from {spec.checkpoint} (segment "
                     f"{len(progress.segments_utc) + 1})")
        if prefetched is not None:
            prefetched.result()  # done before the probe: git must not count as other load
        # The probes start together: a rank waiting for rank 0's provenance (which now
        # imports h5py too) would count MPI's busy polling as CPU of the run.
        comm.Barrier()
        probe = machine.Probe()  # this rank's CPU against wall time, the node's load
        local = _repeats(spec, workload, progress, saved, checkpoint_file.close)
        usages = comm.gather(probe.stop(), root=0) if local is not None else None
    if local is None:  # stopped on request
        progress.segments_utc.append((segment_start, utc_now()))
        ckpt.save(spec.checkpoint, comm, spec.identity(params, comm.size), progress,
                  workload.save_state())
        workload.teardown()
        if comm.rank == 0 and not spec.quiet:
            _say(f"hpc: stopped on request; state saved to {spec.checkpoint}, start again "
                 f"to resume (exit {ckpt.EXIT_CHECKPOINTED})")
        return ckpt.EXIT_CHECKPOINTED

    gathered = comm.gather(local, root=0)
    result = workload.collect()
    workload.teardown()
    prov = provenance.collect(comm, prefetched)
    if gpu is not None:
        prov["cuda"] = gpu.provenance(comm)  # collective; devices, driver, CUDA versions
    code = 0
    if comm.rank == 0:
        verification = workload.verify(result)
        timings = np.stack(gathered, axis=1)  # [repeat, rank, phase]
        end = utc_now()
        record = RunRecord(
            workload=cls.name, backend=spec.backend, ranks=comm.size,
            nodes=len(set(prov["hostnames"])), size=params[cls.size_param],
            size_parameter=cls.size_param, parameters=params, repeats=spec.repeats,
            warmup=spec.warmup, start_utc=progress.start_utc, end_utc=end,
            status="ok" if verification.ok else "verification_failed",
            verified=verification.ok, verification_method=verification.method,
            verification_detail=verification.detail, phases=["total", *cls.phases],
            timings=timings, result=result, provenance=prov, run_id=progress.run_id,
            segments_utc=[*progress.segments_utc, (segment_start, end)],
            machine=machine.summarise(usages),
        )
        try:
            group = append_run(spec.out, record) if spec.out is not None else None
        except (NoSpace, LauncherLost) as exc:
            # The other ranks wait in the bcast below: end in order, and the message is
            # not lost to an MPI_Abort tearing down the output streams.
            _say(f"hpc: error: {exc}")
            return comm.bcast(exc.exit_code, root=0)
        if spec.checkpoint is not None:
            spec.checkpoint.unlink(missing_ok=True)  # the run is recorded: nothing to resume
        if not spec.quiet:
            print(summary_line(record, spec.out, group), flush=True)
        if not verification.ok:
            _say(f"hpc: verification FAILED: {verification.method}: {verification.detail}")
            code = 3
    return comm.bcast(code, root=0)


def summary_line(r: RunRecord, out: Path | None, group: str | None) -> str:
    total = r.timings[:, :, 0].max(axis=1)  # a repeat lasts as long as its slowest rank
    where = f" -> {out}:{group}" if out is not None else ""
    segments = f" in {len(r.segments_utc)} segments" if len(r.segments_utc) > 1 else ""
    return (f"{r.workload} [{r.backend}] ranks={r.ranks} {r.size_parameter}={r.size}: "
            f"best {total.min():.4f} s, median {np.median(total):.4f} s over {r.repeats}"
            f"{segments}; verified={'yes' if r.verified else 'NO'} "
            f"({r.verification_detail}){where}")
