"""Run lifecycle: deadlines, retries as new Ray Job attempts, readable errors, fair queues, swaps off the loop.

The Ray Jobs runner and the serving hub are scripted here (pure controller logic); the registry is real SQLite.
"""

import json
import pathlib
import threading
import time
from types import SimpleNamespace

import pytest

from streamtune.artifacts import ArtifactStore
from streamtune.config import load_jobspec
from streamtune.controller.commands import CommandExecutor
from streamtune.controller.runs import PENDING_BATCH, RunAdvancer
from streamtune.errors import FencedError, SwapError
from streamtune.registry import SqliteRegistry
from streamtune.registry.commands import CommandStatus, RetryRun
from streamtune.registry.manifest import write_manifest
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.serving.records import SwapReport
from streamtune.sweeps.failures import JobFailure, error_uri, infeasible_reason
from streamtune.sweeps.schema import HoldoutScores, SweepResult, TrialSummary

ROOT = pathlib.Path(__file__).resolve().parents[2]


class ScriptedJobs:
    def __init__(self):
        self.submitted, self.stopped, self.states, self.logs_by_id = [], [], {}, {}
        self.exit_codes = {}

    def submit(self, submission_id, request_uri, code_uri, *, run_id=None):
        if submission_id in self.states:
            return False
        self.submitted.append(submission_id)
        self.states[submission_id] = "RUNNING"
        return True

    def status(self, submission_id):
        return self.states.get(submission_id)

    def stop(self, submission_id):
        self.stopped.append(submission_id)
        self.states[submission_id] = "STOPPED"

    def logs(self, submission_id):
        return self.logs_by_id.get(submission_id, "")

    def logs_tail(self, submission_id, lines=30):
        return "\n".join(self.logs(submission_id).splitlines()[-lines:])

    def exit_code(self, submission_id):
        return self.exit_codes.get(submission_id)


class BlockingServing:
    """A serving port whose swap waits until the test lets it go (or raises what it is told to)."""

    def __init__(self):
        self.fence = 1
        self.release = threading.Event()
        self.entered = threading.Event()
        self.raise_ = None
        self.swaps = []

    def swap(self, spec, ref, rollout=None):
        self.swaps.append((spec.name, ref.version))
        self.entered.set()
        assert self.release.wait(10), "the test never released the swap"
        if self.raise_ is not None:
            raise self.raise_
        return SwapReport(version=ref.version, previous=None, load_s=0.5, flip_s=0.01, total_s=0.6, replicas=1)


def _spec(name="sales-gbdt", policy="queue", **sweep):
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    return spec.model_copy(update={
        "name": name,
        "trigger": spec.trigger.model_copy(update={"on_running": policy}),
        "sweep": spec.sweep.model_copy(update=sweep),
        "serve": spec.serve.model_copy(update={"app": name}),
        "job": spec.job.model_copy(update={"code_uri": "/store/code/0123.zip"}),
    })


@pytest.fixture
def env(tmp_path):
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    jobs, serving = ScriptedJobs(), BlockingServing()
    store = ArtifactStore(str(tmp_path / "artifacts"))
    adv = RunAdvancer(reg, jobs, serving, store, deadline_grace_s=0.0)
    yield SimpleNamespace(reg=reg, jobs=jobs, serving=serving, store=store, adv=adv)
    serving.release.set()


def _window(reg, spec_name, i, t, **kw):
    run = RunRecord(run_id=f"r-{i:016d}", spec_name=spec_name, dataset="sales", num_rows=10,
                    offsets={"t:0": [i, i]}, uris=[f"/data/{i}.parquet"], created_at=t, updated_at=t, **kw)
    reg.commit_window("g", {}, {}, [run])
    return run.run_id


def _step(env, spec):
    env.adv.step_spec(env.reg.put_spec(spec) if env.reg.get_spec(spec.name) is None else env.reg.get_spec(spec.name))


def _fail_with(env, run, exc_type, message, submission_id=None):
    """What the driver does when it raises: error.json beside the result, then a non-zero exit."""
    failure = JobFailure(type=exc_type, message=message, traceback=f"Traceback...\n{exc_type}: {message}",
                         submission_id=submission_id or run.submission_id, retryable=exc_type != "InfeasibleResources")
    env.store.put_text(error_uri(env.adv.out_uri(run)), failure.model_dump_json())
    env.jobs.states[run.submission_id] = "FAILED"


def test_failed_run_is_retried_as_a_new_attempt(env):
    spec = _spec(retries=2, retry_backoff=30.0)
    first = _window(env.reg, spec.name, 1, 1.0)
    later = _window(env.reg, spec.name, 2, 2.0)
    _step(env, spec)
    _fail_with(env, env.reg.get_run(first), "ValueError", "boom")
    before = time.time()
    _step(env, spec)
    run = env.reg.get_run(first)
    assert run.status == RunStatus.PENDING and run.attempt == 2 and run.submission_id == f"{first}-a2"
    assert run.error == "ValueError: boom (attempt 1 of 3); retrying in 30 s"
    assert before + 29 <= run.retry_at <= time.time() + 30
    assert [a.error for a in run.attempts] == ["ValueError: boom"] and run.attempts[0].submission_id == first
    _step(env, spec)  # backing off: neither the retry nor the later window starts
    assert env.jobs.submitted == [first] and env.reg.get_run(later).status == RunStatus.PENDING
    env.reg.update_run(first, retry_at=time.time() - 1)
    _step(env, spec)
    run = env.reg.get_run(first)
    assert env.jobs.submitted == [first, f"{first}-a2"] and run.status == RunStatus.SUBMITTED
    assert (run.uris, run.offsets) == (["/data/1.parquet"], {"t:0": [1, 1]})  # the same window, whole
    request = json.loads(env.store.get_text(f"{env.adv.out_uri(run)}/request.json"))
    assert request["submission_id"] == f"{first}-a2" and request["uris"] == ["/data/1.parquet"]


def test_retry_backoff_doubles_and_the_last_attempt_fails_with_every_reason(env):
    spec = _spec(retries=2, retry_backoff=10.0)
    first = _window(env.reg, spec.name, 1, 1.0)
    delays = []
    for n, message in enumerate(["boom", "bang", "crash"], start=1):
        _step(env, spec)
        run = env.reg.get_run(first)
        assert run.attempt == n and env.jobs.submitted[-1] == run.submission_id
        _fail_with(env, run, "ValueError", message)
        now = time.time()
        _step(env, spec)
        run = env.reg.get_run(first)
        if run.status == RunStatus.PENDING:
            delays.append(round(run.retry_at - now))
            env.reg.update_run(first, retry_at=now - 1)
    assert delays == [10, 20]
    assert run.status == RunStatus.FAILED and run.attempt == 3
    assert run.error == ("ValueError: crash (attempt 3 of 3); earlier: attempt 1: ValueError: boom; "
                         "attempt 2: ValueError: bang")
    assert [(a.attempt, a.submission_id, a.error) for a in run.attempts] == [
        (1, first, "ValueError: boom"), (2, f"{first}-a2", "ValueError: bang"), (3, f"{first}-a3", "ValueError: crash")]


def test_run_past_time_budget_fails_with_reason(env):
    spec = _spec(time_budget=5.0, retries=2)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    _step(env, spec)
    assert env.reg.get_run(first).status == RunStatus.RUNNING
    env.reg.update_run(first, timings={"submitted_at": time.time() - 6.0})  # 5 s budget, +10%: 5.5 s
    _step(env, spec)
    run = env.reg.get_run(first)
    assert env.jobs.stopped == [first]
    assert run.status == RunStatus.FAILED
    assert run.error == f"exceeded sweep.time_budget of 5 s (Ray Job {first} stopped) (attempt 1 of 3)"


def test_a_run_within_its_time_budget_keeps_running(env):
    spec = _spec(time_budget=5.0)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    env.reg.update_run(first, timings={"submitted_at": time.time() - 5.0})
    _step(env, spec)
    assert env.reg.get_run(first).status == RunStatus.RUNNING and env.jobs.stopped == []


def test_infeasible_resources_fail_the_run_without_retries(env):
    spec = _spec(retries=2)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    reason = infeasible_reason({"CPU": 1.0, "GPU": 1.0}, [{"CPU": 2.0}])
    _fail_with(env, env.reg.get_run(first), "InfeasibleResources", reason)
    _step(env, spec)
    run = env.reg.get_run(first)
    assert run.status == RunStatus.FAILED and run.attempt == 1
    assert run.error.startswith("InfeasibleResources: trial needs {'GPU': 1.0}; no node of the cluster has that")


def test_run_error_is_the_exception_not_a_log_tail(env):
    spec = _spec(retries=0)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    _fail_with(env, env.reg.get_run(first), "ValueError", "boom")
    env.jobs.logs_by_id[first] = "    raise ValueError('boom')\n    ^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    _step(env, spec)
    assert env.reg.get_run(first).error == "ValueError: boom (attempt 1 of 1)"


def test_without_error_json_the_last_exception_line_of_the_log_is_the_error(env):
    spec = _spec(retries=1, retry_backoff=0.0)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    _fail_with(env, env.reg.get_run(first), "ValueError", "from attempt 1")
    _step(env, spec)
    _step(env, spec)
    second = env.reg.get_run(first)
    assert second.submission_id == f"{first}-a2"
    # attempt 2 is killed before it can write error.json: attempt 1's file must not be taken for it
    env.jobs.states[second.submission_id] = "FAILED"
    env.jobs.logs_by_id[second.submission_id] = ("Traceback (most recent call last):\n  File 'x.py'\n"
                                                 "    ^^^^^^^^\nMemoryError: out of memory\n(raylet) worker exited\n")
    _step(env, spec)
    run = env.reg.get_run(first)
    assert run.status == RunStatus.FAILED
    assert run.error == ("MemoryError: out of memory (attempt 2 of 2); earlier: attempt 1: ValueError: from attempt 1")


def test_oldest_pending_run_starts_first_even_beyond_a_thousand(env):
    spec = _spec()
    runs = [RunRecord(run_id=f"r-{i:016d}", spec_name=spec.name, dataset="sales", offsets={"t:0": [i, i]},
                      created_at=float(i), updated_at=float(i)) for i in range(1, 1102)]
    env.reg.commit_window("g", {}, {}, runs)
    _step(env, spec)
    assert env.jobs.submitted == ["r-0000000000000001"]


def test_replace_with_more_pending_than_a_batch_starts_the_newest_and_rejects_the_rest(env):
    spec = _spec(policy="replace")
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    runs = [RunRecord(run_id=f"r-{i:016d}", spec_name=spec.name, dataset="sales", offsets={"t:0": [i, i]},
                      created_at=float(i), updated_at=float(i)) for i in range(2, PENDING_BATCH + 12)]
    env.reg.commit_window("g", {}, {}, runs)
    newest = runs[-1].run_id
    for _ in range(3):
        _step(env, spec)
    assert env.jobs.submitted == [first, newest] and env.jobs.stopped == [first]
    assert env.reg.list_runs(spec.name, status=RunStatus.PENDING) == []
    assert env.reg.get_run(newest).status in (RunStatus.SUBMITTED, RunStatus.RUNNING)


def _succeeded(env, spec, i):
    run_id = _window(env.reg, spec.name, i, float(i))
    artifact = pathlib.Path(env.store.join(run_id, "trials", "t1"))  # registration reads its manifest's digest
    artifact.mkdir(parents=True)
    (artifact / "model.txt").write_text(str(i))
    write_manifest(artifact)
    best = TrialSummary(trial_id="t1", params={"a": 1}, metrics={spec.sweep.metric: 1.0},
                        artifact_uri=str(artifact))
    result = SweepResult(run_id=run_id, best=best, trials=[best],
                         holdout=HoldoutScores(metric=spec.sweep.metric, challenger=1.0, rows=10),
                         snapshot={"fingerprint": "f", "num_rows": 10})
    env.reg.update_run(run_id, status=RunStatus.SUCCEEDED, sweep=result.model_dump(mode="json"))
    return run_id


def test_swap_runs_off_the_loop_and_another_spec_is_not_delayed(env):
    a, b = _spec("a"), _spec("b")
    run_a = _succeeded(env, a, 1)
    env.reg.put_spec(b)
    b_window = _window(env.reg, "b", 2, 2.0)
    started = time.monotonic()
    _step(env, a)  # registers v1 and starts the swap, which blocks
    assert env.serving.entered.wait(5)
    _step(env, b)
    _step(env, a)  # the swap is still in progress: a's step returns at once
    assert time.monotonic() - started < 2.0
    assert env.jobs.submitted == [b_window]
    assert env.reg.get_run(run_a).status == RunStatus.SUCCEEDED and env.reg.get_alias("a", "champion") is None
    env.serving.release.set()
    env.adv.promotions.wait("a", 5)
    _step(env, a)
    run = env.reg.get_run(run_a)
    assert run.status == RunStatus.PROMOTED and run.model_version == 1 and run.timings["swap_load_s"] == 0.5
    assert env.reg.get_alias("a", "champion").version == 1 and env.serving.swaps == [("a", 1)]


def test_a_failed_swap_fails_the_run(env):
    spec = _spec()
    run_id = _succeeded(env, spec, 1)
    env.serving.raise_ = SwapError("replica r1 did not load v1")
    env.serving.release.set()
    _step(env, spec)
    env.adv.promotions.wait(spec.name, 5)
    _step(env, spec)
    run = env.reg.get_run(run_id)
    assert run.status == RunStatus.FAILED and run.error == "swap failed: replica r1 did not load v1"


def test_promotion_that_raises_unexpectedly_fails_after_three_tries(env):
    spec = _spec()
    run_id = _succeeded(env, spec, 1)
    env.serving.raise_ = RuntimeError("board actor gone")
    env.serving.release.set()
    for _ in range(10):
        _step(env, spec)
        env.adv.promotions.wait(spec.name, 5)
        if env.reg.get_run(run_id).status != RunStatus.SUCCEEDED:
            break
    run = env.reg.get_run(run_id)
    assert len(env.serving.swaps) == 3
    assert run.status == RunStatus.FAILED and run.error == "promotion failed 3 times: RuntimeError: board actor gone"


def test_fenced_error_from_the_swap_worker_reaches_the_loop(env):
    spec = _spec()
    _succeeded(env, spec, 1)
    env.serving.raise_ = FencedError("lease lost")
    env.serving.release.set()
    _step(env, spec)
    env.adv.promotions.wait(spec.name, 5)
    with pytest.raises(FencedError):
        _step(env, spec)


def test_a_swap_from_an_older_lease_term_is_dropped(env):
    spec = _spec()
    run_id = _succeeded(env, spec, 1)
    _step(env, spec)
    env.serving.fence = 2  # stepped down and elected again while it swapped
    env.serving.release.set()
    env.adv.promotions.wait(spec.name, 5)
    _step(env, spec)  # drops the old outcome and starts the swap again under the new term
    env.adv.promotions.wait(spec.name, 5)
    _step(env, spec)
    assert env.reg.get_run(run_id).status == RunStatus.PROMOTED and len(env.serving.swaps) == 2


def test_retry_command_starts_a_new_attempt_of_a_failed_run_at_once(env):
    spec = _spec(retries=0)
    first = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    _fail_with(env, env.reg.get_run(first), "ValueError", "boom")
    _step(env, spec)
    executor = CommandExecutor(env.reg, env.jobs, env.serving, holder="me")
    ok = env.reg.append_command(RetryRun(run_id=first), actor="ana", reason="fixed the data")
    refused = env.reg.append_command(RetryRun(run_id=first), actor="bo")
    done = {c.id: c for c in executor.step()}
    assert done[ok.id].status == CommandStatus.SUCCEEDED
    assert done[ok.id].outcome.message == f"run {first} queued again as attempt 2 (Ray Job {first}-a2)"
    assert done[refused.id].error == f"run {first} is pending; only a failed run can be retried"
    _step(env, spec)
    assert env.jobs.submitted == [first, f"{first}-a2"]
    run = env.reg.get_run(first)
    assert run.status == RunStatus.SUBMITTED and run.attempts[0].error == "ValueError: boom"


def test_retry_command_of_an_unknown_run_names_it(env):
    executor = CommandExecutor(env.reg, env.jobs, env.serving, holder="me")
    cmd = env.reg.append_command(RetryRun(run_id="r-nope"), actor="ana")
    assert executor.step()[0].error == 'Got "r-nope" for run; no such run'
    assert env.reg.get_command(cmd.id).status == CommandStatus.FAILED


def test_driver_writes_error_json_and_exits_non_zero(tmp_path, monkeypatch):
    import ray

    from streamtune.sweeps import driver
    from streamtune.sweeps.schema import SweepRequest

    store = ArtifactStore(str(tmp_path))
    out = str(tmp_path / "r-1")
    req = SweepRequest(run_id="r-1", submission_id="r-1-a2", spec={}, out_uri=out)
    request_uri = store.put_text(f"{out}/request.json", req.model_dump_json())
    monkeypatch.setattr(ray, "init", lambda *a, **k: None)

    def boom(_req):
        raise ValueError("boom")

    monkeypatch.setattr(driver, "run", boom)
    assert driver.main([request_uri]) == 1
    failure = JobFailure.model_validate_json(store.get_text(error_uri(out)))
    assert (failure.headline, failure.submission_id, failure.retryable) == ("ValueError: boom", "r-1-a2", True)
    assert "Traceback (most recent call last)" in failure.traceback and "boom" in failure.traceback
    assert not store.exists(f"{out}/result.json")


def test_trial_resources_no_node_has_fail_fast_with_a_readable_error(monkeypatch):
    import ray

    from streamtune.sweeps.failures import InfeasibleResources, check_trial_resources

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0, "memory": 1e9}},
             {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]  # a dead node's GPU does not count
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 1e9})
    check_trial_resources(1.0, 0.0)  # CPU-only trials fit
    with pytest.raises(InfeasibleResources) as caught:
        check_trial_resources(1.0, 1.0)
    assert caught.value.headline.startswith("trial needs {'GPU': 1.0}; no node of the cluster has that: ")
    assert "cluster total: {'CPU': 2.0, 'memory': 1000000000.0}" in caught.value.headline
    assert JobFailure.from_exception(caught.value).retryable is False


def _champion_v1(env, spec):
    """A spec with v1 registered, serving and champion, through the advancer's worker."""
    run_id = _succeeded(env, spec, 1)
    env.serving.release.set()
    _step(env, spec)
    env.adv.promotions.wait(spec.name, 5)
    _step(env, spec)
    assert env.reg.get_run(run_id).status == RunStatus.PROMOTED
    env.serving.release.clear()
    return run_id


def test_promote_command_swaps_off_the_loop_and_another_spec_is_not_delayed(env):
    from streamtune.registry.commands import Promote

    a, b = _spec("a"), _spec("b")
    _champion_v1(env, a)
    mv = env.reg.get_model("a", 1)
    env.reg.register_model("a", "r-manual", mv.artifact_uri, {}, {}, {})
    commands = CommandExecutor(env.reg, env.jobs, env.serving, "me", env.store, promotions=env.adv.promotions)
    cmd = env.reg.append_command(Promote(model="a", version=2), actor="ana", reason="by hand")
    env.reg.put_spec(b)
    b_window = _window(env.reg, "b", 5, 5.0)
    started = time.monotonic()
    assert commands.step() == []  # the swap started in the worker; the command is not finished
    assert env.serving.entered.wait(5)
    assert env.reg.get_command(cmd.id).status == CommandStatus.RUNNING
    _step(env, b)
    _step(env, a)  # a's runs wait for the command's swap; the call returns at once
    assert commands.step() == []
    assert time.monotonic() - started < 2.0 and env.jobs.submitted == [b_window]
    assert env.reg.get_alias("a", "champion").version == 1
    env.serving.release.set()
    env.adv.promotions.wait("a", 5)
    [done] = commands.step()
    assert done.id == cmd.id and done.status == CommandStatus.SUCCEEDED and done.outcome.version == 2
    assert env.reg.get_alias("a", "champion").version == 2 and env.serving.swaps[-1] == ("a", 2)


def test_a_promote_command_that_fails_in_the_worker_records_the_error(env):
    from streamtune.registry.commands import Promote

    spec = _spec("a")
    _champion_v1(env, spec)
    commands = CommandExecutor(env.reg, env.jobs, env.serving, "me", env.store, promotions=env.adv.promotions)
    cmd = env.reg.append_command(Promote(model="a", version=1), actor="ana", reason="again")
    env.serving.raise_ = SwapError("replica r1 did not load v1")
    env.serving.release.set()
    commands.step()
    env.adv.promotions.wait("a", 5)
    commands.step()
    stored = env.reg.get_command(cmd.id)
    assert stored.status == CommandStatus.FAILED and stored.error == "replica r1 did not load v1"


def _write_result(env, spec, run, submission_id, tmp_path):
    artifact = tmp_path / f"model-{submission_id}"
    artifact.mkdir()
    (artifact / "model.txt").write_text("m")
    write_manifest(artifact)
    best = TrialSummary(trial_id="t1", params={"a": 1}, metrics={spec.sweep.metric: 1.0}, artifact_uri=str(artifact))
    result = SweepResult(run_id=run.run_id, submission_id=submission_id, best=best, trials=[best],
                         holdout=HoldoutScores(metric=spec.sweep.metric, challenger=1.0, rows=10),
                         snapshot={"fingerprint": "f", "num_rows": 10})
    env.store.put_text(f"{env.adv.out_uri(run)}/result.json", result.model_dump_json())


def test_a_result_is_gated_as_soon_as_its_attempt_wrote_it_not_when_the_job_exits(env, tmp_path):
    spec = _spec(retries=1)
    rid = _window(env.reg, spec.name, 1, 1.0)
    _step(env, spec)
    run = env.reg.get_run(rid)
    assert run.status == RunStatus.SUBMITTED and env.jobs.status(rid) == "RUNNING"
    _write_result(env, spec, run, "someone-else", tmp_path)  # not this attempt's: the job is still asked
    _step(env, spec)
    assert env.reg.get_run(rid).status == RunStatus.RUNNING and env.reg.get_run(rid).sweep is None
    _write_result(env, spec, run, rid, tmp_path)  # the driver wrote this attempt's result; its process still exits
    _step(env, spec)
    run = env.reg.get_run(rid)
    assert env.jobs.states[rid] == "RUNNING"  # gated without waiting for the Ray Job to end
    # gated (this bare result lacks the smoke test and data gate, so the gate rejects it: what matters is when)
    assert run.status == RunStatus.REJECTED and run.gate is not None and run.sweep["submission_id"] == rid
