"""Follow jobs until they end: one ``sacct`` call per poll for every tracked job, with
back-off, and ``squeue`` when accounting is off.

The ``squeue`` fallback has limits, stated wherever it is used: squeue shows a finished
job only for the controller's MinJobAge (300 s by default) and shows no exit code; after
that the job is LEFT_QUEUE (it ended; whether it succeeded is unknown), and a requeue
that happened between two polls is invisible. With sacct none of this applies.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hpc.slurm.commands import SlurmError, SlurmMissing, run_slurm
from hpc.slurm.states import (
    MAY_REQUEUE,
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    JobRow,
    JobState,
    Tracked,
    advance,
    parse_sacct,
    parse_squeue,
)

SQUEUE_LIMITS = ("accounting (sacct) is off: states come from squeue, which keeps a "
                 "finished job only for the controller's MinJobAge (300 s by default) and "
                 "shows no exit code; a job gone from it is reported as LEFT_QUEUE")
_ACCOUNTING_OFF = re.compile(r"accounting storage is disabled|not running a supported "
                             r"accounting_storage plugin", re.IGNORECASE)
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def query_sacct(base_ids: Iterable[str]) -> list[JobRow]:
    """One sacct call for all ``base_ids`` (job ids or array job ids)."""
    proc = run_slurm(["sacct", "--parsable2", "--noheader", "-X", "-o", ",".join(SACCT_FIELDS),
                      "-j", ",".join(base_ids)])
    return parse_sacct(proc.stdout)


def query_squeue(base_ids: Iterable[str]) -> list[JobRow]:
    """One squeue call, every state (finished jobs too, while the controller keeps them)."""
    proc = run_slurm(["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}",
                      f"--jobs={','.join(base_ids)}"], check=False)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return []  # none of them is known to the controller (any more)
        raise SlurmError(f"squeue failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()}")
    return parse_squeue(proc.stdout)


def expand_tasks(row: JobRow) -> list[str]:
    """Task ids a row stands for: itself, or every task of a pending range 12_[0-3,7%2]."""
    if not row.pending_range:
        return [row.job_id]
    inside = row.job_id.split("[", 1)[1].rstrip("]").split("%", 1)[0]
    ids = []
    for part in inside.split(","):
        m = _RANGE.fullmatch(part)
        if m is None:
            return [row.job_id]
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        ids += [f"{row.base_id}_{i}" for i in range(first, last + 1)]
    return ids


class Backoff:
    """Poll intervals: from ``first``, times ``factor`` while nothing changes, at most
    ``longest``; back to ``first`` after a change."""

    def __init__(self, first: float = 1.0, longest: float = 30.0, factor: float = 1.5):
        if not 0 < first <= longest or factor < 1:
            raise ValueError("need 0 < first <= longest and factor >= 1")
        self.first, self.longest, self.factor = first, longest, factor
        self.current = first

    def next(self, changed: bool) -> float:
        """The wait before the next poll, given whether the last poll brought news."""
        if changed:
            self.current = self.first
        else:
            self.current = min(self.longest, self.current * self.factor)
        return self.current


@dataclass
class _Group:
    """A submitted job, or an array job whose tasks are tracked one by one."""

    base_id: str
    submitted_at: float
    tasks: dict[str, Tracked] = field(default_factory=dict)


class Tracker:
    """Tracks jobs by id; ``poll()`` asks Slurm about all of them in one call."""

    def __init__(self, *, source: str = "auto", grace_seconds: float = 120.0,
                 requeue_settle_seconds: float = 5.0,
                 say: Callable[[str], None] | None = None) -> None:
        if source not in ("auto", "sacct", "squeue"):
            raise ValueError(f"source must be auto, sacct or squeue, not {source!r}")
        self.source = source
        self.grace_seconds = grace_seconds
        # A job that ends PREEMPTED or NODE_FAIL may be requeued by Slurm a moment later
        # (PreemptMode=REQUEUE, JobRequeue or --requeue): it is final only once it has
        # stayed ended this long.
        self.requeue_settle_seconds = requeue_settle_seconds
        self._ended_at: dict[str, float] = {}
        self.groups: dict[str, _Group] = {}
        self.polls = 0  # polls that asked Slurm
        self.calls = 0  # Slurm commands run: one per poll, for every tracked job...
        self.fallbacks = 0  # ...plus one squeue for each poll where sacct failed
        self._say = say or (lambda message: print(message, file=sys.stderr, flush=True))

    # -- what is tracked -----------------------------------------------------------------
    def add(self, job_id: str, *, submitted_at: float | None = None,
            array_size: int | None = None) -> None:
        """Track a job (``123``), one array task (``123_4``) or a whole array (with its size)."""
        base = job_id.split("_", 1)[0]
        when = time.time() if submitted_at is None else submitted_at
        group = self.groups.setdefault(base, _Group(base, when))
        keys = [f"{base}_{i}" for i in range(array_size)] if array_size else [job_id]
        for key in keys:
            group.tasks.setdefault(key, Tracked(key))

    @property
    def jobs(self) -> dict[str, Tracked]:
        return {k: t for g in self.groups.values() for k, t in g.tasks.items()}

    def finished(self, key: str, job: Tracked) -> bool:
        """Ended for good: ended, and not in the moment when Slurm may requeue it."""
        ended_at = self._ended_at.get(key)
        return job.done and (ended_at is None or
                             time.monotonic() - ended_at >= self.requeue_settle_seconds)

    @property
    def done(self) -> bool:
        return all(self.finished(k, t) for k, t in self.jobs.items())

    # -- asking Slurm --------------------------------------------------------------------
    def _query(self, base_ids: list[str]) -> tuple[list[JobRow], str]:
        if self.source in ("auto", "sacct"):
            try:
                self.calls += 1
                return query_sacct(base_ids), "sacct"
            except SlurmError as exc:
                if self.source == "sacct":
                    raise
                if _ACCOUNTING_OFF.search(str(exc)):
                    self.source = "squeue"
                    self._say(f"hpc: note: {SQUEUE_LIMITS}")
                else:
                    # Said once: a database down for minutes would repeat it every poll.
                    if not self.fallbacks:
                        self._say(f"hpc: warning: {exc}; asking squeue instead while sacct "
                                  "fails (said once)")
                    self.fallbacks += 1
        self.calls += 1
        return query_squeue(base_ids), "squeue"

    def poll(self) -> list[tuple[str, JobState, Tracked]]:
        """Ask Slurm once; returns (job id, previous state, now) for every change."""
        active = [g for g in self.groups.values()
                  if not all(self.finished(k, t) for k, t in g.tasks.items())]
        if not active:
            return []
        self.polls += 1
        rows, source = self._query([g.base_id for g in active])
        by_task: dict[str, JobRow] = {}
        for row in rows:
            for task in expand_tasks(row):
                by_task[task] = row
        changes = []
        now = time.time()
        for group in active:
            reported = {k: r for k, r in by_task.items() if k.split("_", 1)[0] == group.base_id}
            placeholder = group.tasks.get(group.base_id)
            if placeholder is not None and not placeholder.seen and group.base_id not in \
                    reported and reported:
                del group.tasks[group.base_id]  # an array, asked for by its job id
            for key in reported:
                if key == group.base_id and key not in group.tasks:
                    # A whole array tracked task by task, printed once as one line (sacct
                    # does that right after submission): no task of its own, or it would
                    # wait forever for a line that never comes again.
                    continue
                group.tasks.setdefault(key, Tracked(key))
            for key, job in list(group.tasks.items()):
                new = advance(job, reported.get(key), source=source,
                              age_seconds=now - group.submitted_at,
                              grace_seconds=self.grace_seconds)
                group.tasks[key] = new
                if new.state in MAY_REQUEUE:
                    self._ended_at.setdefault(key, time.monotonic())
                else:
                    self._ended_at.pop(key, None)
                if new.state is not job.state or new.restarts != job.restarts:
                    changes.append((key, job.state, new))
        return changes

    def wait(self, *, timeout: float | None = None, min_interval: float = 1.0,
             max_interval: float = 10.0, factor: float = 1.5, heartbeat: float = 60.0,
             on_change: Callable[[str, JobState, Tracked], None] | None = None,
             max_failures: int = 5) -> bool:
        """Poll until every job has ended; False when ``timeout`` seconds passed first.

        The interval grows by ``factor`` up to ``max_interval`` while nothing changes and
        starts again at ``min_interval`` after a change (10 s at most: one query for all
        the jobs followed, light for the controller, and an end is seen within 10 s).
        Query failures are retried up to ``max_failures`` times in a row (a controller
        restart), then raised; a missing Slurm command is raised at once.
        """
        start = last_news = time.monotonic()
        backoff, failures = Backoff(min_interval, max_interval, factor), 0
        while True:
            try:
                changes = self.poll()
                failures = 0
            except SlurmMissing:
                raise
            except SlurmError as exc:
                failures += 1
                if failures >= max_failures:
                    raise
                self._say(f"hpc: warning: {exc} (attempt {failures}/{max_failures})")
                changes = []
            for key, before, now in changes:
                if on_change is not None:
                    on_change(key, before, now)
            if self.done:
                return True
            elapsed = time.monotonic() - start
            interval = backoff.next(bool(changes))
            if any(not self.finished(k, t) for k, t in self.jobs.items() if t.done):
                interval = min_interval  # a requeue, if one comes, shows within seconds
            if changes:
                last_news = time.monotonic()
            elif time.monotonic() - last_news >= heartbeat:
                states = ", ".join(f"{k}={t.state.value}" for k, t in self.jobs.items()
                                   if not t.done)
                self._say(f"hpc: still waiting after {elapsed:.0f} s: {states}")
                last_news = time.monotonic()
            if timeout is not None:
                if elapsed >= timeout:
                    return False
                interval = min(interval, timeout - elapsed)
            time.sleep(interval)
