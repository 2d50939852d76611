"""trigger.on_running: queue waits, skip drops new windows, replace stops the active run and takes over.

The Ray Jobs runner and the serving hub are scripted here (pure controller logic); the registry is real SQLite.
"""

import pathlib

import pytest

from streamtune.artifacts import ArtifactStore
from streamtune.config import load_jobspec
from streamtune.controller.runs import RunAdvancer
from streamtune.registry import SqliteRegistry
from streamtune.registry.records import RunRecord, RunStatus

ROOT = pathlib.Path(__file__).resolve().parents[2]


class ScriptedJobs:
    def __init__(self):
        self.submitted, self.stopped, self.states = [], [], {}

    def submit(self, submission_id, request_path, code_dir, **kw):
        self.submitted.append(submission_id)
        self.states[submission_id] = "RUNNING"
        return True

    def status(self, run_id):
        return self.states.get(run_id)

    def stop(self, run_id):
        self.stopped.append(run_id)
        self.states[run_id] = "STOPPED"

    def logs_tail(self, run_id, lines=30):
        return ""

    def exit_code(self, run_id):
        return None


class NoServing:
    fence = 0

    def swap(self, spec, ref, rollout=None):
        raise AssertionError("no swap expected")


def _setup(tmp_path, policy, **sweep):
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    sweep = {"retries": 0, **sweep}  # retries have tests of their own (test_run_lifecycle.py)
    spec = spec.model_copy(update={"trigger": spec.trigger.model_copy(update={"on_running": policy}),
                                   "sweep": spec.sweep.model_copy(update=sweep),
                                   "job": spec.job.model_copy(update={"code_uri": "/store/code/0123.zip"})})
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    record = reg.put_spec(spec)
    jobs = ScriptedJobs()
    adv = RunAdvancer(reg, jobs, NoServing(), ArtifactStore(str(tmp_path / "artifacts")))
    return record, reg, jobs, adv


def _window(reg, record, i, t, **kw):
    run = RunRecord(run_id=f"r-{i:016d}", spec_name=record.name, dataset="sales", num_rows=10,
                    offsets={"t:0": [i, i]}, created_at=t, updated_at=t, **kw)
    reg.commit_window("g", {}, {}, [run])
    return run.run_id


@pytest.mark.parametrize("policy", ["queue", "skip", "replace"])
def test_on_running_policies(tmp_path, policy):
    spec, reg, jobs, adv = _setup(tmp_path, policy)
    first = _window(reg, spec, 1, 1.0)
    adv.step({spec.name: spec})
    assert jobs.submitted == [first]
    assert (tmp_path / "artifacts" / spec.name / first / "request.json").is_file()
    second, third = _window(reg, spec, 2, 2.0), _window(reg, spec, 3, 3.0)
    adv.step({spec.name: spec})
    status = {r: reg.get_run(r).status for r in (first, second, third)}
    if policy == "queue":
        assert jobs.submitted == [first] and status[second] == status[third] == RunStatus.PENDING
    elif policy == "skip":
        assert jobs.submitted == [first] and status[second] == status[third] == RunStatus.REJECTED
        assert "on_running=skip" in reg.get_run(second).error
    else:
        assert jobs.stopped == [first] and jobs.submitted == [first, third]
        assert status[first] == RunStatus.FAILED and status[second] == RunStatus.REJECTED
        assert status[third] == RunStatus.SUBMITTED


def test_failed_job_is_recorded_with_its_last_log_line_and_the_queue_moves_on(tmp_path):
    spec, reg, jobs, adv = _setup(tmp_path, "queue")
    first, second = _window(reg, spec, 1, 1.0), _window(reg, spec, 2, 2.0)
    adv.step({spec.name: spec})
    jobs.states[first] = "FAILED"
    adv.step({spec.name: spec})
    assert reg.get_run(first).status == RunStatus.FAILED
    assert reg.get_run(first).error == "sweep job failed and its log names no exception (attempt 1 of 1)"
    adv.step({spec.name: spec})
    assert jobs.submitted == [first, second]


def test_a_lost_job_is_retried_as_a_new_attempt(tmp_path):
    spec, reg, jobs, adv = _setup(tmp_path, "queue", retries=1, retry_backoff=0.0)
    first = _window(reg, spec, 1, 1.0)
    adv.step({spec.name: spec})
    jobs.states.clear()  # the cluster restarted and forgot the job
    adv.step({spec.name: spec})
    adv.step({spec.name: spec})
    run = reg.get_run(first)
    assert jobs.submitted == [first, f"{first}-a2"] and run.status == RunStatus.SUBMITTED and run.attempt == 2
    assert "gone from the cluster" in run.attempts[0].error


@pytest.mark.parametrize("policy", ["skip", "replace"])
def test_manual_runs_are_always_queued(tmp_path, policy):
    spec, reg, jobs, adv = _setup(tmp_path, policy)
    first = _window(reg, spec, 1, 1.0)
    adv.step({spec.name: spec})
    manual = _window(reg, spec, 2, 2.0, reason="manual", command_id="c-0000000000000001")
    adv.step({spec.name: spec})
    assert reg.get_run(manual).status == RunStatus.PENDING and jobs.submitted == [first]
    jobs.states[first] = "FAILED"
    adv.step({spec.name: spec})
    adv.step({spec.name: spec})
    assert jobs.submitted == [first, manual]


def test_a_paused_spec_starts_nothing_and_its_active_run_goes_on(tmp_path):
    spec, reg, jobs, adv = _setup(tmp_path, "queue")
    first, second = _window(reg, spec, 1, 1.0), _window(reg, spec, 2, 2.0)
    adv.step({spec.name: spec})
    paused = reg.set_spec_paused(spec.name, True)
    jobs.states[first] = "FAILED"
    adv.step({spec.name: paused})
    adv.step({spec.name: paused})
    assert reg.get_run(first).status == RunStatus.FAILED
    assert jobs.submitted == [first] and reg.get_run(second).status == RunStatus.PENDING
    adv.step({spec.name: reg.set_spec_paused(spec.name, False)})
    assert jobs.submitted == [first, second]
