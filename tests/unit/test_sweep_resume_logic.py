"""Resume of a sweep whose driver died, the parts without a cluster: which attempt resumes (the controller's
``SweepRequest.resume``), the reason a killed driver is recorded with, the kill point's scope, and the runner's
collector across a restored experiment (its checkpointed state, the trials it keeps, and binding the copy Tune
unpickles to the live collector). The whole path with a real SIGKILL is tests/integration/test_sweep_resume.py.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import ray.cloudpickle as cloudpickle
from test_run_lifecycle import BlockingServing, ScriptedJobs, _fail_with, _spec, _step, _window

from streamtune import faults
from streamtune.artifacts.store import ArtifactStore
from streamtune.controller.runs import RunAdvancer
from streamtune.registry import SqliteRegistry
from streamtune.registry.records import RunStatus
from streamtune.sweeps.progress import ProgressWriter, read_progress
from streamtune.sweeps.resume import resume_summary
from streamtune.sweeps.runner import _Collector, _summary


@pytest.fixture
def env(tmp_path):
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    jobs, serving = ScriptedJobs(), BlockingServing()
    store = ArtifactStore(str(tmp_path / "artifacts"))
    yield SimpleNamespace(reg=reg, jobs=jobs, serving=serving, store=store,
                          adv=RunAdvancer(reg, jobs, serving, store, deadline_grace_s=0.0))
    serving.release.set()


def _request(env, run_id):
    run = env.reg.get_run(run_id)
    return json.loads(env.store.get_text(f"{env.adv.out_uri(run)}/request.json"))


def _retry_now(env, spec, run_id):
    _step(env, spec)  # the failed attempt is recorded, the run backs off
    env.reg.update_run(run_id, retry_at=time.time() - 1)
    _step(env, spec)  # the next attempt is submitted


def test_a_killed_driver_is_named_as_killed_and_its_retry_resumes(env):
    spec = _spec(retries=2, retry_backoff=30.0)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    assert _request(env, first)["attempt"] == 1 and _request(env, first)["resume"] is False
    env.jobs.states[first] = "FAILED"  # SIGKILL: no error.json, the log names some earlier exception
    env.jobs.exit_codes[first] = -9
    env.jobs.logs_by_id[first] = "ValueError: a warning's trace, not what ended the driver\n"
    _retry_now(env, spec, first)
    run = env.reg.get_run(first)
    assert run.attempts[0].error == f"the sweep driver (Ray Job {first}) was killed by SIGKILL before it wrote " \
                                    "error.json"
    request = _request(env, first)
    assert (request["attempt"], request["resume"], request["submission_id"]) == (2, True, f"{first}-a2")


def test_a_driver_that_raised_is_retried_afresh_and_a_later_death_resumes(env):
    spec = _spec(retries=2, retry_backoff=0.0)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    _fail_with(env, env.reg.get_run(first), "ValueError", "boom")  # error.json of attempt 1
    _retry_now(env, spec, first)
    assert _request(env, first)["resume"] is False  # its error is what the retry is for: a new sweep
    second = env.reg.get_run(first).submission_id
    env.jobs.states[second] = "FAILED"  # attempt 2 dies; error.json is still attempt 1's
    env.jobs.exit_codes[second] = 137  # SIGKILL as a shell reports it
    _retry_now(env, spec, first)
    run = env.reg.get_run(first)
    assert run.attempt == 3 and run.status == RunStatus.SUBMITTED
    assert run.attempts[1].error.endswith("was killed by SIGKILL before it wrote error.json")
    assert _request(env, first)["resume"] is True


def test_the_kill_point_fires_in_its_scope_only(monkeypatch):
    monkeypatch.setenv(faults.ENV, "sweep.after_trial@a1:2")
    assert faults.armed("sweep.after_trial", scope="a1")
    assert not faults.armed("sweep.after_trial", scope="a2") and not faults.armed("sweep.after_trial")
    monkeypatch.setenv(faults.ENV, "sweep.after_trial:3")  # no scope: every attempt
    assert faults.armed("sweep.after_trial", scope="a2") and faults.armed("sweep.after_trial")
    assert "sweep.after_trial" in faults.POINTS


def test_resume_summary_names_kept_and_rerun_trials():
    rows = [("t_3", 2, 0), ("t_0", 1, 0), ("t_2", 2, 1), ("t_1", 1, 0)]
    summary = resume_summary(rows, attempt=2)
    assert summary is not None
    assert (summary.from_attempts, summary.kept_trials, summary.rerun_trials) == ([1], ["t_0", "t_1"], ["t_2"])
    assert resume_summary([("t_0", 3, 0), ("t_1", 1, 0)], attempt=3).from_attempts == [1]
    assert resume_summary([("t_0", 2, 0)], attempt=2) is None  # a retry that started afresh resumed nothing


def _trial(trial_id, status, result=None, **config):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result or {}, config=config,
                           error_file=None)


def test_the_collector_carries_its_state_into_a_restored_experiment(tmp_path):
    out = str(tmp_path / "run")
    first = _Collector(ProgressWriter(out, metric="rmse", mode="min", planned=4, max_t=3, every_s=0),
                       key=out, attempt=1)
    done, running, waiting = (_trial("t_0", "TERMINATED", {"rmse": 0.5, "training_iteration": 3}, x=0.1),
                              _trial("t_1", "RUNNING", {"rmse": 0.9, "training_iteration": 1}, x=0.7),
                              _trial("t_2", "PENDING", x=0.4))
    for trial in (done, running):
        first.on_trial_start(0, [], trial)
    first.on_trial_complete(0, [], done)
    saved = first.get_state()
    assert saved == {"ended_in": {"t_0": 1}, "reruns": {}, "started": ["t_0", "t_1"]}

    # attempt 2 of the run in a new process: Tune unpickles attempt 1's collector from tuner.pkl
    pickled = cloudpickle.dumps(first)
    del first
    second = _Collector(ProgressWriter(out, metric="rmse", mode="min", planned=4, max_t=3, every_s=0),
                        key=out, attempt=2)
    restored = cloudpickle.loads(pickled)
    assert restored is second  # bound to this attempt's live collector, its progress and attempt
    restored.set_state(saved)
    for trial in (running, waiting):
        trial.status = "PENDING"  # Tune requeues the unfinished trials before the first step
    restored.on_step_begin(0, [done, running, waiting])
    restored.on_step_begin(1, [done, running, waiting])  # only the first step of a restored experiment counts
    assert list(second.trials) == ["t_0"] and second.reruns == {"t_1": 1}
    assert read_progress(out).trials[0].model_dump(include={"trial_id", "state", "value"}) == {
        "trial_id": "t_0", "state": "done", "value": 0.5}
    summary = _summary(done, out, attempt=second.ended_in["t_0"], reruns=second.reruns.get("t_0", 0))
    assert (summary.attempt, summary.reruns, summary.metrics["rmse"], summary.params) == (1, 0, 0.5, {"x": 0.1})
    running.status = "TERMINATED"
    second.on_trial_complete(2, [], running)
    assert second.get_state()["ended_in"] == {"t_0": 1, "t_1": 2} and second.get_state()["reruns"] == {"t_1": 1}


def test_a_collector_without_a_key_pickles_as_itself():
    collector = _Collector(None)
    collector.started.add("t_9")
    copy = cloudpickle.loads(cloudpickle.dumps(collector))
    assert copy is not collector and copy.started == {"t_9"}


def test_a_restored_experiment_that_had_ended_keeps_its_trials_without_a_step(tmp_path):
    out = str(tmp_path / "run")
    collector = _Collector(None, key=out, attempt=2)
    collector.set_state({"ended_in": {"t_0": 1, "t_1": 1}, "reruns": {}, "started": ["t_0", "t_1"]})
    trials = [_trial("t_0", "TERMINATED", {"rmse": 0.5}), _trial("t_1", "ERROR")]
    collector.on_experiment_end(trials)  # Tune runs no step when every restored trial had ended
    assert sorted(collector.trials) == ["t_0", "t_1"] and collector.reruns == {}
    assert resume_summary(((t, collector.ended_in[t], 0) for t in collector.trials), attempt=2).kept_trials == [
        "t_0", "t_1"]
