"""Loop isolation: a poison spec or a bad topic is marked ``error`` and backs off while the others flow; spec
deletion; queue depth; commands are in force before the next poll.

Ray Jobs, serving, Kafka's admin and the consumer are scripted here (pure controller logic); the registry and the
artifact store are real (SQLite, a folder).
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from streamtune.config import load_jobspec
from streamtune.config.jobspec import JobSpec
from streamtune.config.settings import Settings
from streamtune.control import LocalControlPlane
from streamtune.controller import loop as loop_module
from streamtune.controller.health import SpecGuard, backoff_s
from streamtune.controller.loop import Controller
from streamtune.errors import CommandFailed, FencedError, ServiceError
from streamtune.registry.commands import CommandStatus, DeleteSpec, SubmitSpec
from streamtune.registry.records import RunRecord, RunStatus, SpecRecord, TriggerDetail

ROOT = pathlib.Path(__file__).resolve().parents[2]


class ScriptedJobs:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.stopped: list[str] = []
        self.states: dict[str, str] = {}

    def submit(self, submission_id: str, request_uri: str, code_uri: str, *, run_id: str | None = None) -> bool:
        self.submitted.append(submission_id)
        self.states[submission_id] = "RUNNING"
        return True

    def status(self, run_id: str) -> str | None:
        return self.states.get(run_id)

    def stop(self, run_id: str) -> None:
        self.stopped.append(run_id)
        self.states[run_id] = "STOPPED"

    def logs_tail(self, run_id: str, lines: int = 30) -> str:
        return ""

    def exit_code(self, run_id: str) -> int | None:
        return None


class NoServing:
    fence = 0
    policy = None

    def set_policy(self, policy: Any) -> list[str]:
        self.policy = policy
        return []

    def swap(self, spec: Any, ref: Any, rollout: Any = None) -> Any:
        raise AssertionError("no swap expected")

    def ensure(self, spec: Any, ref: Any) -> Any:
        raise AssertionError("no ensure expected")


class FakeSource:
    """Stands in for KafkaEventSource: records the topics it was opened on."""

    opened: list[list[str]] = []

    def __init__(self, bootstrap: str, topics: list[str], group: str, **kw: Any) -> None:
        FakeSource.opened.append(list(topics))
        self.topics = list(topics)

    def close(self) -> None:
        pass


class RecordingIngestor:
    def __init__(self) -> None:
        self.seen: list[set[str]] = []
        self.offsets: dict[tuple[str, int], int] = {}

    def step(self, source: Any, specs: dict[str, JobSpec], *, poll_s: float = 0.5) -> list[str]:
        self.seen.append(set(specs))
        return []


@pytest.fixture
def controller(tmp_path: pathlib.Path) -> Controller:
    settings = Settings(home=tmp_path / "home", poll_interval=0.01)
    ctrl = Controller(settings, jobs=ScriptedJobs(), services=NoServing(), holder="me")
    return ctrl


def _spec(ctrl: Controller, name: str, *, topic: str = "good", code: bool = True) -> SpecRecord:
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    uri = ctrl.store.put_text(f"code/{name}.zip", "zip") if code else ctrl.store.join("code", "gone.zip")
    spec = spec.model_copy(update={
        "name": name, "serve": spec.serve.model_copy(update={"app": name}),
        "dataset": spec.dataset.model_copy(update={"name": f"ds-{name}"}),
        "trigger": spec.trigger.model_copy(update={"topic": topic}),
        "job": spec.job.model_copy(update={"code_uri": uri}),
    })
    return ctrl.registry.put_spec(spec)


def _window(ctrl: Controller, spec: str, i: int) -> str:
    run = RunRecord(run_id=f"r-{i:016d}", spec_name=spec, dataset=f"ds-{spec}", num_rows=10,
                    offsets={"good:0": [i, i]}, created_at=float(i), updated_at=float(i))
    ctrl.registry.commit_window("g", {}, {}, [run])
    return run.run_id


def test_one_failing_spec_is_marked_error_with_its_reason_and_backs_off_while_the_others_advance(controller):
    ctrl = controller
    for name in ("a-good", "b-poison", "c-good"):
        _spec(ctrl, name)
    runs = {name: _window(ctrl, name, i) for i, name in enumerate(("a-good", "b-poison", "c-good"))}
    real = ctrl.advancer.step_spec

    def step_spec(record: SpecRecord) -> None:
        if record.name == "b-poison":
            raise KeyError("price")
        real(record)

    ctrl.advancer.step_spec = step_spec  # type: ignore[method-assign]
    now = [1000.0]
    ctrl.guard = SpecGuard(ctrl.registry, clock=lambda: now[0])

    assert ctrl.advance(ctrl.specs()) == {"b-poison": "KeyError: 'price'"}
    assert ctrl.jobs.submitted == [runs["a-good"], runs["c-good"]]
    bad = ctrl.registry.get_spec("b-poison")
    assert (bad.state, bad.error, bad.failures, bad.retry_at) == ("error", "KeyError: 'price'", 1, 1001.0)
    # in backoff: skipped (not even tried), the others go on
    ctrl.advance(ctrl.specs())
    assert ctrl.registry.get_spec("b-poison").failures == 1
    now[0] = 1001.5  # due again, fails again: the backoff doubles
    ctrl.advance(ctrl.specs())
    assert (ctrl.registry.get_spec("b-poison").failures, ctrl.registry.get_spec("b-poison").retry_at) == (2, 1003.5)
    ctrl.advancer.step_spec = real  # type: ignore[method-assign]
    now[0] = 1004.0  # fixed: the next turn clears the error and starts its run
    assert ctrl.advance(ctrl.specs()) == {}
    healed = ctrl.registry.get_spec("b-poison")
    assert (healed.state, healed.error, healed.failures, healed.retry_at) == ("active", None, 0, None)
    assert runs["b-poison"] in ctrl.jobs.submitted


def test_spec_whose_stored_job_code_is_missing_is_marked_error_and_does_not_block_others(controller):
    ctrl = controller
    _spec(ctrl, "a-nocode", code=False)
    _spec(ctrl, "b-good")
    _window(ctrl, "a-nocode", 1)
    good = _window(ctrl, "b-good", 2)
    failed = ctrl.advance(ctrl.specs())
    assert ctrl.jobs.submitted == [good]
    assert failed["a-nocode"].startswith("ConfigError: Got ") and "for job.code_uri of spec a-nocode" in (
        failed["a-nocode"]) and "nothing is stored there" in failed["a-nocode"]
    assert ctrl.registry.get_spec("a-nocode").state == "error"


def test_lost_lease_still_propagates_from_a_spec_turn(controller):
    ctrl = controller
    _spec(ctrl, "a")

    def fenced(record: SpecRecord) -> None:
        raise FencedError("write refused")

    ctrl.advancer.step_spec = fenced  # type: ignore[method-assign]
    with pytest.raises(FencedError):
        ctrl.advance(ctrl.specs())
    assert ctrl.registry.get_spec("a").error is None


def test_bad_topic_is_left_out_of_the_source_its_specs_back_off_and_it_is_retried(controller, monkeypatch):
    ctrl = controller
    _spec(ctrl, "a-good", topic="good")
    _spec(ctrl, "b-bad", topic="bad topic!")
    _window(ctrl, "b-bad", 1)
    tried: list[str] = []
    broken = {"bad topic!"}

    def ensure_topic(bootstrap: str, name: str, **kw: Any) -> None:
        tried.append(name)
        if name in broken:
            raise ServiceError(f'Could not create topic "{name}": InvalidTopicError')

    FakeSource.opened = []
    monkeypatch.setattr(loop_module, "ensure_topic", ensure_topic)
    monkeypatch.setattr(loop_module, "KafkaEventSource", FakeSource)
    ctrl.ingestor = RecordingIngestor()  # type: ignore[assignment]
    now = [1000.0]
    ctrl.topic_backoff.clock = lambda: now[0]
    ctrl.guard = SpecGuard(ctrl.registry, clock=lambda: now[0])

    ctrl.step()
    assert FakeSource.opened == [["good"]] and ctrl.ingestor.seen == [{"a-good", "b-bad"}]
    bad = ctrl.registry.get_spec("b-bad")
    assert bad.state == "error" and bad.retry_at == 1001.0
    assert bad.error == "topic 'bad topic!' cannot be consumed: ServiceError: Could not create topic \"bad topic!\"" \
                        ": InvalidTopicError"
    assert ctrl.jobs.submitted == []  # a spec on a bad topic does not advance
    ctrl.step()  # backing off: not tried again, the consumer is not reopened
    assert tried.count("bad topic!") == 1 and FakeSource.opened == [["good"]]
    now[0] = 1001.5
    broken.clear()  # the topic works now: tried again, consumed, the spec recovers
    ctrl.step()
    assert tried.count("bad topic!") == 2 and FakeSource.opened == [["good"], ["bad topic!", "good"]]
    assert ctrl.registry.get_spec("b-bad").state == "active" and len(ctrl.jobs.submitted) == 1


def test_event_published_right_after_submit_is_routed_the_submit_runs_before_the_poll(controller, monkeypatch):
    ctrl = controller
    monkeypatch.setattr(loop_module, "ensure_topic", lambda *a, **k: None)
    monkeypatch.setattr(loop_module, "KafkaEventSource", FakeSource)
    ctrl.ingestor = RecordingIngestor()  # type: ignore[assignment]
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    spec = spec.model_copy(update={"job": spec.job.model_copy(
        update={"code_uri": ctrl.store.put_text("code/x.zip", "zip")})})
    ctrl.registry.append_command(SubmitSpec(spec=spec), actor="ana")
    ctrl.step()
    # the command succeeded in this turn, and this turn's poll already routed the spec's events
    assert ctrl.registry.list_commands(limit=1)[0].status == CommandStatus.SUCCEEDED
    assert ctrl.ingestor.seen == [{spec.name}]


def test_delete_spec_refuses_a_run_in_flight_unless_forced_and_keeps_models(controller, monkeypatch):
    ctrl = controller
    _spec(ctrl, "a")
    first, second = _window(ctrl, "a", 1), _window(ctrl, "a", 2)
    ctrl.advance(ctrl.specs())
    assert ctrl.jobs.submitted == [first]
    cp = LocalControlPlane(ctrl.settings)

    refused = ctrl.commands.execute(cp.delete_spec("a", wait=False))
    assert refused.status == CommandStatus.FAILED
    assert refused.error == f"spec a has a run in flight: {first} (submitted); refused to delete it"
    assert ctrl.registry.get_spec("a") is not None

    forced = ctrl.commands.execute(cp.append(DeleteSpec(spec="a", force=True), reason="retired"))
    assert forced.status == CommandStatus.SUCCEEDED, forced.error
    assert ctrl.jobs.stopped == [first] and ctrl.registry.get_spec("a") is None
    assert {r: ctrl.registry.get_run(r).status for r in (first, second)} == {
        first: RunStatus.CANCELLED, second: RunStatus.CANCELLED}
    assert ctrl.registry.get_run(second).error.startswith("spec a deleted by ")
    with pytest.raises(Exception, match='Got "a" for spec; no spec of that name is stored'):
        cp.delete_spec("a")
    # a rerun of an interrupted delete (failover) succeeds instead of failing on the missing spec
    again = cp.append(DeleteSpec(spec="a"))
    ctrl.registry.start_command(again.id, "other")
    assert ctrl.commands.execute(ctrl.registry.get_command(again.id)).status == CommandStatus.SUCCEEDED
    with pytest.raises(CommandFailed, match='Got "ghost" for spec'):
        cp.wait_command(ctrl.commands.execute(cp.append(DeleteSpec(spec="ghost"))).id)


def test_status_shows_queue_depth_and_health_per_spec(controller):
    ctrl = controller
    _spec(ctrl, "a")
    _spec(ctrl, "b", code=False)
    for i in range(3):
        _window(ctrl, "a", i)
    _window(ctrl, "b", 9)
    ctrl.advance(ctrl.specs())
    status = {s.name: s for s in LocalControlPlane(ctrl.settings).status().specs}
    assert (status["a"].pending_runs, status["a"].queue_depth, status["a"].state) == (2, 3, "active")
    assert (status["b"].queue_depth, status["b"].state, status["b"].failures) == (1, "error", 1)
    assert "nothing is stored there" in status["b"].error and status["b"].retry_at is not None


def test_backoff_doubles_from_one_second_to_five_minutes():
    assert [backoff_s(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_reconcile_leaves_alone_a_spec_whose_swap_is_in_the_worker_or_not_yet_recorded(controller, monkeypatch):
    """A promote command's swap ends in the worker before the next turn moves the champion alias: a reconcile
    in between must not see the old alias and swap serving back."""
    import threading

    ctrl = controller
    monkeypatch.setattr(loop_module, "ensure_topic", lambda *a, **k: None)
    monkeypatch.setattr(loop_module, "KafkaEventSource", FakeSource)
    ctrl.ingestor = RecordingIngestor()  # type: ignore[assignment]
    for name in ("a", "b"):
        _spec(ctrl, name)
    reconciled: list[set[str]] = []
    ctrl.reconciler.step = lambda specs: reconciled.append(set(specs))  # type: ignore[method-assign,assignment]
    release = threading.Event()
    ctrl.advancer.promotions.start("a", "command:c-1", lambda: release.wait(5))
    ctrl._next_reconcile = 0.0
    ctrl.advance = lambda specs: {}  # type: ignore[method-assign]  # the outcome stays untaken
    ctrl.step()
    release.set()
    ctrl.advancer.promotions.wait("a", 5)
    ctrl._next_reconcile = 0.0
    ctrl.step()  # the swap ended, but its outcome is not recorded yet
    assert reconciled == [{"b"}, {"b"}]
    ctrl.advancer.promotions.take("a")
    ctrl._next_reconcile = 0.0
    ctrl.step()
    assert reconciled[-1] == {"a", "b"}


class DriftIngestor(RecordingIngestor):
    """Stores one drift-triggered run, as the real ingestor does when the drift trigger closes a window."""

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self.registry = registry

    def step(self, source: Any, specs: dict[str, JobSpec], *, poll_s: float = 0.5) -> list[str]:
        super().step(source, specs, poll_s=poll_s)
        name = sorted(specs)[0]
        detail = TriggerDetail(kind="drift", rows=300, drift={"temp": 0.41, "price": 0.02}, drift_method="psi",
                               threshold=0.25)
        run = RunRecord(run_id="r-drift", spec_name=name, dataset=specs[name].dataset.name, reason="drift",
                        offsets={"good:0": [0, 2]}, num_rows=300, trigger_detail=detail)
        return self.registry.commit_window("g", {}, {}, [run])


def test_a_drift_triggered_run_is_announced_on_the_event_bus(controller, monkeypatch):
    ctrl = controller
    monkeypatch.setattr(loop_module, "ensure_topic", lambda *a, **k: None)
    monkeypatch.setattr(loop_module, "KafkaEventSource", FakeSource)
    _spec(ctrl, "a")
    ctrl.ingestor = DriftIngestor(ctrl.registry)  # type: ignore[assignment]
    ctrl.step()
    assert ctrl.events.counters.snapshot().drift == {"a": 1}
    ctrl.step()  # the run exists: nothing inserted, nothing announced again
    assert ctrl.events.counters.snapshot().drift == {"a": 1}
