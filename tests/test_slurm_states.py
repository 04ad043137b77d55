"""The job state machine over real sacct and squeue output lines, and the pieces around it
(sbatch --parsable ids, dependencies, array ranges, exit codes).

States a one-node test cluster cannot cause (OUT_OF_MEMORY, BOOT_FAIL, DEADLINE) are
tested here with lines formatted exactly as
``sacct --parsable2 --noheader -X -o JobID,State,ExitCode,Elapsed,NodeList`` prints them;
the others are also caused for real in test_slurm_cluster.py, and PREEMPTED and NODE_FAIL
on the multi-node cluster (tests/mnode/test_faults.py).
"""

from __future__ import annotations

import pytest

from hpc.errors import UserError
from hpc.slurm.commands import SlurmError
from hpc.slurm.report import exit_code
from hpc.slurm.sbatch import Dependency, parse_parsable
from hpc.slurm.states import (
    JobRow,
    JobState,
    Tracked,
    advance,
    parse_sacct,
    parse_squeue,
    parse_state,
)
from hpc.slurm.tracker import Backoff, Tracker, expand_tasks

SACCT = """\
13|COMPLETED|0:0|00:00:03|vm
21|CANCELLED by 0|0:15|00:00:04|vm
22|TIMEOUT|0:0|00:01:07|vm
23|FAILED|3:0|00:00:02|vm
24|PENDING|0:0|00:00:00|None assigned
25|RUNNING|0:0|00:00:10|vm
26|REQUEUED|0:0|00:00:05|vm
27|PREEMPTED|0:15|00:10:00|node01
28|NODE_FAIL|1:0|00:20:00|node[01-02]
29|OUT_OF_MEMORY|0:125|00:00:30|node03
30_0|COMPLETED|0:0|00:00:02|vm
30_[1-3%2]|PENDING|0:0|00:00:00|None assigned
31|BOOT_FAIL|0:0|00:00:00|node04
32|DEADLINE|0:0|00:00:00|None assigned
33|SUSPENDED|0:0|00:02:00|node05
34|EXPLODED|0:0|00:00:01|vm
35|REQUEUE_HOLD|0:0|00:00:00|None assigned
"""


def rows_by_id(text: str = SACCT) -> dict[str, JobRow]:
    return {row.job_id: row for row in parse_sacct(text)}


@pytest.mark.parametrize("job_id,state,terminal", [
    ("13", JobState.COMPLETED, True), ("21", JobState.CANCELLED, True),
    ("22", JobState.TIMEOUT, True), ("23", JobState.FAILED, True),
    ("24", JobState.PENDING, False), ("25", JobState.RUNNING, False),
    ("26", JobState.REQUEUED, False), ("27", JobState.PREEMPTED, True),
    ("28", JobState.NODE_FAIL, True), ("29", JobState.OUT_OF_MEMORY, True),
    ("30_0", JobState.COMPLETED, True), ("30_[1-3%2]", JobState.PENDING, False),
    ("31", JobState.BOOT_FAIL, True), ("32", JobState.DEADLINE, True),
    ("33", JobState.SUSPENDED, False), ("34", JobState.UNKNOWN, True),
    ("35", JobState.REQUEUE_HOLD, False),
])
def test_every_sacct_state(job_id, state, terminal):
    row = rows_by_id()[job_id]
    assert row.state is state
    assert row.state.terminal is terminal
    assert row.state.succeeded is (state is JobState.COMPLETED)


def test_sacct_details():
    rows = rows_by_id()
    assert rows["21"].state_text == "CANCELLED by 0"
    assert rows["23"].return_code == 3 and rows["29"].return_code == 0
    assert rows["30_0"].base_id == "30" and not rows["30_0"].pending_range
    assert rows["30_[1-3%2]"].pending_range and rows["30_[1-3%2]"].base_id == "30"
    # steps (if -X were ignored), blank lines and junk are skipped, never a crash
    assert parse_sacct("40.batch|COMPLETED|0:0|00:00:01|vm\n\nnot|enough\n") == []


def test_state_text_variants():
    assert parse_state("CANCELLED by 1000") is JobState.CANCELLED
    assert parse_state("CANCELLED+") is JobState.CANCELLED  # a narrow column's truncation
    assert parse_state("CD") is JobState.COMPLETED and parse_state("OOM") is JobState.OUT_OF_MEMORY
    assert parse_state("") is JobState.UNKNOWN


def test_squeue_lines():
    rows = {r.job_id: r for r in parse_squeue(
        "1|COMPLETED|0:02|vm\n10|PENDING|0:00|(BeginTime)\n"
        "40_[2-3%2]|PENDING|0:00|(JobArrayTaskLimit)\n40_1|RUNNING|0:05|vm\n")}
    assert rows["1"].state is JobState.COMPLETED and rows["1"].exit_code == ""
    assert rows["10"].nodes == "(BeginTime)"
    assert expand_tasks(rows["40_[2-3%2]"]) == ["40_2", "40_3"]
    assert expand_tasks(rows["40_1"]) == ["40_1"]


def test_pending_ranges_expand_to_tasks():
    row = JobRow("7_[0-2,5,9-10%3]", JobState.PENDING, "PENDING")
    assert expand_tasks(row) == ["7_0", "7_1", "7_2", "7_5", "7_9", "7_10"]


def step(job: Tracked, state: JobState | None, source: str = "sacct", age: float = 5.0):
    row = None if state is None else JobRow(job.job_id, state, state.value, "0:0")
    return advance(job, row, source=source, age_seconds=age, grace_seconds=60)


def walk(states, source="sacct"):
    job = Tracked("9")
    for state in states:
        job = step(job, state, source)
    return job


def test_happy_path():
    job = walk([None, JobState.PENDING, JobState.RUNNING, JobState.COMPLETED])
    assert job.state is JobState.COMPLETED and job.done and job.restarts == 0


def test_not_yet_reported_is_submitted_then_unknown():
    job = step(Tracked("9"), None, age=10)
    assert job.state is JobState.SUBMITTED and not job.done
    job = step(job, None, age=61)
    assert job.state is JobState.UNKNOWN and job.done and "does not know job 9" in job.note


def test_left_squeue_is_finished_not_lost():
    job = walk([JobState.PENDING, JobState.RUNNING, None], source="squeue")
    assert job.state is JobState.LEFT_QUEUE and job.done
    assert "outcome is unknown" in job.note
    # a final state seen before it left stays what it was
    job = walk([JobState.RUNNING, JobState.FAILED, None], source="squeue")
    assert job.state is JobState.FAILED


def test_sacct_missing_line_is_a_lag_not_an_end():
    job = walk([JobState.RUNNING, None, None])
    assert job.state is JobState.RUNNING and not job.done


@pytest.mark.parametrize("states,restarts", [
    ([JobState.RUNNING, JobState.REQUEUED, JobState.PENDING, JobState.RUNNING,
      JobState.COMPLETED], 1),
    ([JobState.RUNNING, JobState.PENDING, JobState.RUNNING, JobState.COMPLETED], 1),
    ([JobState.RUNNING, JobState.TIMEOUT, JobState.PENDING, JobState.RUNNING], 1),
    ([JobState.RUNNING, JobState.PREEMPTED, JobState.REQUEUED, JobState.PENDING,
      JobState.RUNNING, JobState.REQUEUED, JobState.RUNNING, JobState.COMPLETED], 2),
    ([JobState.PENDING, JobState.PENDING, JobState.RUNNING, JobState.COMPLETED], 0),
    ([JobState.COMPLETED, JobState.RUNNING, JobState.COMPLETED], 1),
    # a poll that saw it queued before the requeue, and one that only ever saw REQUEUED
    ([JobState.PENDING, JobState.REQUEUED, JobState.PENDING, JobState.RUNNING,
      JobState.COMPLETED], 1),
    ([JobState.REQUEUED, JobState.PENDING, JobState.RUNNING, JobState.COMPLETED], 1),
    ([JobState.RUNNING, JobState.REQUEUED, JobState.REQUEUE_HOLD, JobState.PENDING], 1),
])
def test_requeues_are_counted_and_never_crash(states, restarts):
    job = walk(states)
    assert job.restarts == restarts
    assert job.state is states[-1]


def test_requeued_job_is_not_done():
    job = walk([JobState.RUNNING, JobState.TIMEOUT])
    assert job.done
    job = step(job, JobState.REQUEUED)
    assert not job.done and job.restarts == 1


def test_unknown_state_is_kept_with_its_text():
    row = rows_by_id()["34"]
    job = advance(Tracked("34"), row, source="sacct", age_seconds=1)
    assert job.state is JobState.UNKNOWN and "EXPLODED" in job.note


def tracked(state: JobState, exit_text: str = "0:0") -> Tracked:
    return Tracked("1", state, JobRow("1", state, state.value, exit_text), seen=True)


def test_exit_codes_for_outcomes():
    assert exit_code([tracked(JobState.COMPLETED)] * 3) == 0
    assert exit_code([tracked(JobState.COMPLETED), tracked(JobState.FAILED, "3:0")]) == 3
    assert exit_code([tracked(JobState.FAILED, "0:9")]) == 1
    assert exit_code([tracked(JobState.TIMEOUT)]) == 124
    for state in (JobState.CANCELLED, JobState.PREEMPTED, JobState.NODE_FAIL,
                  JobState.OUT_OF_MEMORY, JobState.LEFT_QUEUE, JobState.UNKNOWN):
        assert exit_code([tracked(state)]) == 1
    # a cancel or crash outranks a verification failure: it says less about the code
    assert exit_code([tracked(JobState.FAILED, "3:0"), tracked(JobState.CANCELLED)]) == 1


def test_sbatch_parsable_output():
    assert parse_parsable("123\n").job_id == "123"
    sub = parse_parsable("sbatch: warning: something\n456;hpclocal\n")
    assert (sub.job_id, sub.cluster) == ("456", "hpclocal")
    for text in ("", "Submitted batch job 12", "12;a b"):
        with pytest.raises(SlurmError, match="not a job id"):
            parse_parsable(text)


def test_dependencies():
    assert Dependency.parse("afterok:12:13").option() == "--dependency=afterok:12:13"
    assert Dependency("afterany", ("7_1",)).option() == "--dependency=afterany:7_1"
    for text, phrase in [("afterbad:1", "not one of"), ("afterok", "at least one job id"),
                         ("afterok:1;id", "not a Slurm job id"), ("afterok:$(x)", "not a")]:
        with pytest.raises(UserError, match=phrase):
            Dependency.parse(text)


def test_backoff_grows_to_its_cap_and_resets_on_news():
    backoff = Backoff(first=1.0, longest=5.0, factor=2.0)
    assert [backoff.next(False) for _ in range(5)] == [2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff.next(True) == 1.0 and backoff.next(False) == 2.0
    with pytest.raises(ValueError):
        Backoff(first=0)


class ScriptedTracker(Tracker):
    """A Tracker whose Slurm answers are given in advance: the races below (a poll in the
    0.2 s between NODE_FAIL and Slurm's requeue; sacct's one-line array summary right
    after submission) cannot be caused on demand on a real cluster."""

    def __init__(self, answers: list[list[JobRow]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.answers = answers

    def _query(self, base_ids):
        return self.answers.pop(0), "sacct"


def rows(*pairs: tuple[str, JobState]) -> list[JobRow]:
    return [JobRow(job_id, state, state.value, "0:0") for job_id, state in pairs]


@pytest.mark.parametrize("end", [JobState.PREEMPTED, JobState.NODE_FAIL])
def test_end_that_slurm_may_requeue_is_final_only_after_a_moment(end):
    answers = [rows(("9", JobState.RUNNING)), rows(("9", end)), rows(("9", JobState.PENDING))]
    tracker = ScriptedTracker(answers, requeue_settle_seconds=60)
    tracker.add("9")
    tracker.poll()
    tracker.poll()
    assert tracker.jobs["9"].state is end and not tracker.done
    tracker.poll()  # Slurm put it back in the queue: it runs again
    assert tracker.jobs["9"].restarts == 1 and not tracker.done
    settled = ScriptedTracker([rows(("9", end))], requeue_settle_seconds=0)
    settled.add("9")
    settled.poll()
    assert settled.done


def test_array_summary_line_is_not_a_task():
    answers = [rows(("5", JobState.PENDING)),
               rows(("5_0", JobState.COMPLETED), ("5_1", JobState.NODE_FAIL))]
    tracker = ScriptedTracker(answers, requeue_settle_seconds=0)
    tracker.add("5", array_size=2)
    tracker.poll()
    tracker.poll()
    assert sorted(tracker.jobs) == ["5_0", "5_1"] and tracker.done


def test_run_started_again_between_two_polls_is_a_restart():
    job = Tracked("9")
    for elapsed in ("00:00:20", "00:00:31", "00:00:02", "00:00:09"):
        job = advance(job, JobRow("9", JobState.RUNNING, "RUNNING", "0:0", elapsed),
                      source="sacct", age_seconds=5.0)
    assert job.restarts == 1 and job.state is JobState.RUNNING
