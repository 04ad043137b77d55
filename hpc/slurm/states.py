"""Job states: what Slurm says, read from ``sacct`` (or ``squeue`` without accounting).

``sacct --parsable2 --noheader -X -o JobID,JobIDRaw,State,ExitCode,Elapsed,NodeList``
prints one line per job allocation: ``123|123|COMPLETED|0:0|00:00:05|node1``. Array tasks
are ``123_4``; tasks not yet started are one line ``123_[5-9%2]``; a cancelled job's state
is ``CANCELLED by 0`` (the uid that cancelled it). Every state Slurm documents is known,
and one it may add later is kept as UNKNOWN with its text instead of crashing the tracker.

The tracker's own states: SUBMITTED (accepted by sbatch, not yet reported by Slurm) and
LEFT_QUEUE (seen in ``squeue``, then gone: it ended, but without accounting its outcome is
no longer known). A job that leaves ``squeue`` is finished, never "lost".

How tracked state moves (``advance``):
- a state Slurm reports replaces the previous one. A requeue (scontrol requeue,
  preemption, a checkpointing job requeueing itself) is counted in ``restarts`` when
  REQUEUED is seen, or, if the polls missed it, when a job that ended or had started is
  seen queued or running again.
- a job missing from an answer keeps its state, except: with ``squeue`` as the source, a
  job that was seen queued or running has ended (LEFT_QUEUE); a job never seen by either
  source after ``grace_seconds`` becomes UNKNOWN (Slurm has never heard of it).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace


class JobState(enum.Enum):
    SUBMITTED = "SUBMITTED"  # ours: sbatch accepted it, Slurm has not reported it yet
    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    RESIZING = "RESIZING"
    REQUEUED = "REQUEUED"
    REQUEUE_FED = "REQUEUE_FED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"
    LEFT_QUEUE = "LEFT_QUEUE"  # ours: gone from squeue; ended, outcome unknown
    UNKNOWN = "UNKNOWN"  # ours: a state text we do not know, or a job Slurm never knew

    @property
    def terminal(self) -> bool:
        """The job has ended (it may still come back through a requeue)."""
        return self in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self is JobState.COMPLETED

    @property
    def requeue(self) -> bool:
        return self in REQUEUE


TERMINAL = frozenset({
    JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT,
    JobState.PREEMPTED, JobState.NODE_FAIL, JobState.OUT_OF_MEMORY, JobState.BOOT_FAIL,
    JobState.DEADLINE, JobState.REVOKED, JobState.LEFT_QUEUE, JobState.UNKNOWN,
})
REQUEUE = frozenset({JobState.REQUEUED, JobState.REQUEUE_FED, JobState.REQUEUE_HOLD})
# Ends after which Slurm itself may put the job back in the queue a moment later.
MAY_REQUEUE = frozenset({JobState.PREEMPTED, JobState.NODE_FAIL})
# Waiting to (re)start. A started or ended job that is seen here again was requeued.
QUEUED = REQUEUE | {JobState.SUBMITTED, JobState.PENDING, JobState.SPECIAL_EXIT,
                    JobState.RESV_DEL_HOLD}

# squeue's compact codes (%t), for output that uses them.
SQUEUE_CODES = {
    "PD": "PENDING", "CF": "CONFIGURING", "R": "RUNNING", "CG": "COMPLETING",
    "S": "SUSPENDED", "ST": "STOPPED", "SI": "SIGNALING", "SO": "STAGE_OUT",
    "RS": "RESIZING", "RQ": "REQUEUED", "RF": "REQUEUE_FED", "RH": "REQUEUE_HOLD",
    "SE": "SPECIAL_EXIT", "RD": "RESV_DEL_HOLD", "CD": "COMPLETED", "F": "FAILED",
    "CA": "CANCELLED", "TO": "TIMEOUT", "PR": "PREEMPTED", "NF": "NODE_FAIL",
    "OOM": "OUT_OF_MEMORY", "BF": "BOOT_FAIL", "DL": "DEADLINE", "RV": "REVOKED",
}


def parse_state(text: str) -> JobState:
    """``CANCELLED by 1000`` -> CANCELLED; ``RUNNING`` -> RUNNING; unknown -> UNKNOWN."""
    word = text.strip().split(" ", 1)[0].rstrip("+")  # "+" when a narrow column truncated it
    word = SQUEUE_CODES.get(word, word)
    try:
        return JobState(word)
    except ValueError:
        return JobState.UNKNOWN


_JOB_ID = re.compile(r"(?P<job>\d+)(?:_(?P<task>\d+|\[(?P<pending>[^\]]*)\]))?(?:\+\d+)?")


@dataclass(frozen=True)
class JobRow:
    """One line of sacct or squeue about one job, or one array task, or a pending range."""

    job_id: str  # as Slurm prints it: 123, 123_4 or 123_[5-9%2]
    state: JobState
    state_text: str  # the text as printed, e.g. "CANCELLED by 0"
    exit_code: str = ""  # sacct's "code:signal"; empty from squeue
    elapsed: str = ""
    nodes: str = ""  # node list, or squeue's reason while pending

    @property
    def base_id(self) -> str:
        """The job (or array job) id without the task part."""
        m = _JOB_ID.fullmatch(self.job_id)
        return m.group("job") if m else self.job_id

    @property
    def pending_range(self) -> bool:
        """An array's tasks not started yet, printed together as 123_[5-9%2]."""
        m = _JOB_ID.fullmatch(self.job_id)
        return bool(m and m.group("pending") is not None)

    @property
    def return_code(self) -> int | None:
        code = self.exit_code.split(":", 1)[0]
        return int(code) if code.isdigit() else None


SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "NodeList")
SQUEUE_FORMAT = "%i|%T|%M|%R"  # job id (123_4 for array tasks), long state, time, nodes/reason


def parse_sacct(text: str) -> list[JobRow]:
    """Rows of ``sacct --parsable2 --noheader -X -o JobID,State,ExitCode,Elapsed,NodeList``."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS) or not parts[0] or "." in parts[0]:
            continue  # blank, a header, or a job step (123.batch) if -X was not honoured
        job_id, state, exit_code, elapsed, nodes = parts[:5]
        rows.append(JobRow(job_id, parse_state(state), state, exit_code, elapsed, nodes))
    return rows


def parse_squeue(text: str) -> list[JobRow]:
    """Rows of ``squeue --noheader --states=all --format='%i|%T|%M|%R'``."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|", 3)
        if len(parts) < 4 or not parts[0].strip():
            continue
        job_id, state, elapsed, where = (p.strip() for p in parts)
        rows.append(JobRow(job_id, parse_state(state), state, "", elapsed, where))
    return rows


@dataclass(frozen=True)
class Tracked:
    """What we know of one job (or array task), updated by ``advance``."""

    job_id: str
    state: JobState = JobState.SUBMITTED
    row: JobRow | None = None  # the latest report about it
    seen: bool = False  # reported by Slurm at least once
    restarts: int = 0  # requeues observed
    note: str = ""

    @property
    def done(self) -> bool:
        return self.state.terminal


def _seconds(elapsed: str) -> int | None:
    """sacct's Elapsed or squeue's %M (``[D-][HH:]MM:SS``) in seconds; None if not one."""
    days, _, clock = elapsed.strip().rpartition("-")
    parts = clock.split(":")
    if not days.isdigit() and days or not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def _ran_again(before: JobRow | None, now: JobRow) -> bool:
    """Running both times, but for less time now: requeued and started again between two
    polls (a quick requeue, as after a preemption, shows no other trace)."""
    if before is None or before.state is not JobState.RUNNING or now.state is not \
            JobState.RUNNING:
        return False
    then, since = _seconds(before.elapsed), _seconds(now.elapsed)
    return then is not None and since is not None and since < then


def advance(job: Tracked, row: JobRow | None, *, source: str, age_seconds: float,
            grace_seconds: float = 60.0) -> Tracked:
    """The next tracked state of ``job`` given Slurm's latest answer about it.

    ``row`` is None when the answer did not mention the job; ``source`` is "sacct" or
    "squeue"; ``age_seconds`` is the time since submission.
    """
    if row is not None:
        # A requeue: REQUEUED (or a requeue hold) newly seen, even as the first report; or,
        # when the polls missed that state, a job back from an end or queued again after
        # it had started.
        requeued = row.state.requeue and not job.state.requeue
        came_back = job.seen and not row.state.terminal and not job.state.requeue and (
            job.state.terminal or (row.state in QUEUED and job.state not in QUEUED)
            or _ran_again(job.row, row))
        restarts = job.restarts + (requeued or came_back)
        note = "" if row.state is not JobState.UNKNOWN else \
            f"state {row.state_text!r} is not one this version knows"
        return replace(job, state=row.state, row=row, seen=True, restarts=restarts, note=note)
    if job.seen:
        if source == "squeue" and not job.state.terminal:
            return replace(job, state=JobState.LEFT_QUEUE,
                           note="left squeue: it ended, but without accounting (sacct) its "
                           "outcome is unknown; see its log files")
        return job  # sacct keeps every job: a missing line is a lag, not an end
    if age_seconds > grace_seconds:
        return replace(job, state=JobState.UNKNOWN,
                       note=f"{source} does not know job {job.job_id} (another cluster's "
                       "id, or purged from the controller)")
    return job
