"""Priority: a spec's event-triggered windows start before the runs asked for by hand (run-now, replay), and a
window pre-empts a run asked for by hand that is in flight (trigger.preempt), which resumes after it.

The Ray Jobs runner is scripted here (pure controller logic); the registry is real SQLite.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import pytest

from streamtune.artifacts import ArtifactStore
from streamtune.config import load_jobspec
from streamtune.controller.runs import PENDING_BATCH, RunAdvancer, start_order
from streamtune.registry import SqliteRegistry
from streamtune.registry.records import RunRecord, RunStatus, SpecRecord

ROOT = pathlib.Path(__file__).resolve().parents[2]


class ScriptedJobs:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.states: dict[str, str] = {}

    def submit(self, submission_id: str, request_uri: str, code_uri: str, **kw: Any) -> bool:
        self.submitted.append(submission_id)
        self.states[submission_id] = "RUNNING"
        return True

    def status(self, submission_id: str) -> str | None:
        return self.states.get(submission_id)

    def stop(self, submission_id: str) -> None:
        self.states[submission_id] = "STOPPED"

    def logs_tail(self, submission_id: str, lines: int = 30) -> str:
        return ""

    def exit_code(self, submission_id: str) -> int | None:
        return None


class NoServing:
    fence = 0

    def swap(self, spec: Any, ref: Any, rollout: Any = None) -> None:
        raise AssertionError("no swap expected")


def _setup(tmp_path: pathlib.Path, policy: str = "queue", preempt: bool = True,
           **sweep: Any) -> tuple[SpecRecord, SqliteRegistry, ScriptedJobs, RunAdvancer]:
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    trigger = spec.trigger.model_copy(update={"on_running": policy, "preempt": preempt})
    spec = spec.model_copy(update={"trigger": trigger,
                                   "sweep": spec.sweep.model_copy(update={"retries": 0, **sweep}),
                                   "job": spec.job.model_copy(update={"code_uri": "/store/code/0123.zip"})})
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    jobs = ScriptedJobs()
    return reg.put_spec(spec), reg, jobs, RunAdvancer(reg, jobs, NoServing(), ArtifactStore(str(tmp_path / "a")))


def _run(record: SpecRecord, i: int, t: float, *, by_hand: bool = False) -> RunRecord:
    command = {"reason": "manual", "command_id": f"c-{i:016d}"} if by_hand else {"reason": "min_rows"}
    return RunRecord(run_id=f"r-{i:016d}", spec_name=record.name, dataset="sales", num_rows=10,
                     offsets={"t:0": [i, i]}, created_at=t, updated_at=t, **command)


def _finish(reg: SqliteRegistry, jobs: ScriptedJobs, adv: RunAdvancer, record: SpecRecord) -> None:
    """The active run's job fails (retries 0: the run ends), and the next step starts the next run."""
    jobs.states[jobs.submitted[-1]] = "FAILED"
    adv.step({record.name: record})
    adv.step({record.name: record})


def test_start_order_puts_windows_first_each_group_oldest_first() -> None:
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    record = SpecRecord(name=spec.name, spec=spec)
    queue = [_run(record, 1, 1.0, by_hand=True), _run(record, 2, 5.0), _run(record, 3, 2.0, by_hand=True),
             _run(record, 4, 3.0), _run(record, 4, 3.0)]
    assert [r.run_id[-1] for r in start_order(queue)] == ["4", "2", "1", "3"]
    assert start_order([]) == []


def test_a_window_starts_before_a_manual_run_queued_earlier(tmp_path: pathlib.Path) -> None:
    record, reg, jobs, adv = _setup(tmp_path)
    first = _run(record, 1, 1.0)
    reg.commit_window("g", {}, {}, [first])
    adv.step({record.name: record})
    manual, window = _run(record, 2, 2.0, by_hand=True), _run(record, 3, 3.0)
    reg.commit_window("g", {}, {}, [manual])
    reg.commit_window("g", {}, {}, [window])  # arrives after the manual run, while both wait for the slot
    _finish(reg, jobs, adv, record)
    assert jobs.submitted == [first.run_id, window.run_id]
    assert reg.get_run(manual.run_id).status == RunStatus.PENDING
    _finish(reg, jobs, adv, record)
    assert jobs.submitted == [first.run_id, window.run_id, manual.run_id]


def test_a_window_behind_a_full_batch_of_manual_runs_still_starts_first(tmp_path: pathlib.Path) -> None:
    record, reg, jobs, adv = _setup(tmp_path)
    manual = [_run(record, i, float(i), by_hand=True) for i in range(1, PENDING_BATCH + 6)]
    window = _run(record, 1000, 1000.0)
    reg.commit_window("g", {}, {}, [*manual, window])
    adv.step({record.name: record})
    assert jobs.submitted == [window.run_id]
    _finish(reg, jobs, adv, record)
    assert jobs.submitted == [window.run_id, manual[0].run_id]  # then the manual runs, oldest first


def test_a_retried_window_keeps_the_head_and_a_retried_manual_run_waits_behind_windows(
        tmp_path: pathlib.Path) -> None:
    record, reg, jobs, adv = _setup(tmp_path, retries=1, retry_backoff=60.0)
    manual = _run(record, 1, 1.0, by_hand=True)
    reg.commit_window("g", {}, {}, [manual])
    adv.step({record.name: record})
    jobs.states[manual.run_id] = "FAILED"
    adv.step({record.name: record})  # attempt 1 failed: back to pending, backing off
    assert reg.get_run(manual.run_id).attempt == 2
    reg.update_run(manual.run_id, retry_at=time.time() - 1)
    window = _run(record, 2, 2.0)
    reg.commit_window("g", {}, {}, [window])
    adv.step({record.name: record})
    assert jobs.submitted == [manual.run_id, window.run_id]  # the window first, though the manual run is older
    jobs.states[window.run_id] = "FAILED"
    adv.step({record.name: record})  # the window backs off 60 s at the head of the queue
    later = _run(record, 3, 3.0)
    reg.commit_window("g", {}, {}, [later])
    adv.step({record.name: record})
    assert jobs.submitted == [manual.run_id, window.run_id]  # nothing jumps the retried window
    reg.update_run(window.run_id, retry_at=time.time() - 1)
    adv.step({record.name: record})
    assert jobs.submitted[-1] == f"{window.run_id}-a2"


@pytest.mark.parametrize("policy", ["queue", "skip", "replace"])
def test_a_window_preempts_a_manual_run_in_flight_which_resumes_after_it(tmp_path: pathlib.Path, policy: str) -> None:
    record, reg, jobs, adv = _setup(tmp_path, policy)
    manual = _run(record, 1, 1.0, by_hand=True)
    reg.commit_window("g", {}, {}, [manual])
    adv.step({record.name: record})
    adv.step({record.name: record})
    assert reg.get_run(manual.run_id).status == RunStatus.RUNNING
    window = _run(record, 2, 2.0)
    reg.commit_window("g", {}, {}, [window])
    adv.step({record.name: record})
    assert jobs.states[manual.run_id] == "STOPPED" and jobs.submitted == [manual.run_id, window.run_id]
    stopped = reg.get_run(manual.run_id)
    assert stopped.status == RunStatus.PENDING and stopped.attempt == 2 and stopped.retry_at is None
    assert [(a.attempt, a.submission_id, a.preempted_by) for a in stopped.attempts] == [(1, manual.run_id,
                                                                                          window.run_id)]
    assert stopped.error == (f"pre-empted by run {window.run_id}, an event-triggered window (trigger.preempt); "
                             "resumes after it as attempt 2")
    assert reg.get_run(window.run_id).status == RunStatus.SUBMITTED
    _finish(reg, jobs, adv, record)  # the window ends: the run asked for by hand resumes as its next attempt
    assert jobs.submitted == [manual.run_id, window.run_id, f"{manual.run_id}-a2"]
    assert reg.get_run(manual.run_id).status == RunStatus.SUBMITTED


def test_without_preempt_a_window_waits_for_the_manual_run_in_flight(tmp_path: pathlib.Path) -> None:
    record, reg, jobs, adv = _setup(tmp_path, preempt=False)
    manual, window = _run(record, 1, 1.0, by_hand=True), _run(record, 2, 2.0)
    reg.commit_window("g", {}, {}, [manual])
    adv.step({record.name: record})
    reg.commit_window("g", {}, {}, [window])
    adv.step({record.name: record})
    assert jobs.submitted == [manual.run_id] and jobs.states[manual.run_id] == "RUNNING"
    _finish(reg, jobs, adv, record)
    assert jobs.submitted == [manual.run_id, window.run_id]


def test_a_window_never_preempts_another_window_nor_a_manual_run_that_already_ended(tmp_path: pathlib.Path) -> None:
    record, reg, jobs, adv = _setup(tmp_path)
    first, second = _run(record, 1, 1.0), _run(record, 2, 2.0)
    reg.commit_window("g", {}, {}, [first])
    adv.step({record.name: record})
    reg.commit_window("g", {}, {}, [second])
    adv.step({record.name: record})
    assert jobs.submitted == [first.run_id] and jobs.states[first.run_id] == "RUNNING"  # queued behind it
    _finish(reg, jobs, adv, record)
    manual, third = _run(record, 3, 3.0, by_hand=True), _run(record, 4, 4.0)
    jobs.states[second.run_id] = "FAILED"
    adv.step({record.name: record})
    reg.commit_window("g", {}, {}, [manual])
    adv.step({record.name: record})
    assert jobs.submitted[-1] == manual.run_id
    jobs.states[manual.run_id] = "FAILED"  # its job ended before the window came: not pre-empted, recorded failed
    reg.commit_window("g", {}, {}, [third])
    adv.step({record.name: record})
    run = reg.get_run(manual.run_id)
    assert run.status == RunStatus.FAILED and not any(a.preempted_by for a in run.attempts)


@pytest.mark.parametrize("retries", [0, 1])
def test_a_preemption_does_not_count_against_retries(tmp_path: pathlib.Path, retries: int) -> None:
    record, reg, jobs, adv = _setup(tmp_path, retries=retries, retry_backoff=0.0)
    manual, window = _run(record, 1, 1.0, by_hand=True), _run(record, 2, 2.0)
    reg.commit_window("g", {}, {}, [manual])
    adv.step({record.name: record})
    reg.commit_window("g", {}, {}, [window])
    adv.step({record.name: record})  # pre-empted: attempt 2 waits behind the window
    _finish(reg, jobs, adv, record)  # the window fails (retries 0 for it too, or backs off 0 s), attempt 2 starts
    if retries:
        _finish(reg, jobs, adv, record)  # the window's retry
    resumed = reg.get_run(manual.run_id)
    assert resumed.status == RunStatus.SUBMITTED and jobs.submitted[-1] == resumed.submission_id
    jobs.states[resumed.submission_id] = "FAILED"
    adv.step({record.name: record})
    run = reg.get_run(manual.run_id)
    if retries == 0:
        assert run.status == RunStatus.FAILED
        assert run.error.startswith("sweep job failed and its log names no exception (attempt 2 of 2)")
    else:
        assert run.status == RunStatus.PENDING and run.attempt == 3  # its one retry is still there
