"""Webhooks against real local HTTP receivers: signed, retried with backoff, and never in the emitter's way."""

from __future__ import annotations

import time

import pytest
from webhook_receiver import Receiver

from conformance.listener_suite import ListenerConformance
from streamtune.config.webhooks import WebhookConfig
from streamtune.observe import EventBus, GateVerdict, Promoted, RunFinished, parse_event
from streamtune.observe.webhooks import WebhookListener, verify_signature

pytestmark = pytest.mark.integration
SECRET = "whsec-test-0123"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _hook(receiver: Receiver, path: str, **kw) -> WebhookListener:
    config = WebhookConfig(url=receiver.url(path), secret=SECRET, name=path.strip("/"),
                           **{"backoff_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 2.0, **kw})
    return WebhookListener(config)


class TestWebhookConformanceAgainstAHangingReceiver(ListenerConformance):
    @pytest.fixture
    def listener(self, receiver):
        hook = _hook(receiver, "/hang", queue_size=20,
                     events=["run_finished", "gate_rejected", "promoted", "rolled_back", "drift_detected"])
        yield hook
        hook.close(0.5)


def test_a_delivery_is_signed_over_its_timestamp_and_raw_body(receiver):
    hook = _hook(receiver, "/ok")
    event = Promoted(spec="sales", version=3, previous=2, app="sales", run_id="r-9", swap_s=1.25, load_s=1.0)
    bus = EventBus([hook])
    bus.emit(event)
    (got,) = receiver.wait_for("/ok", 1)
    bus.close(5.0)
    assert verify_signature(got.body, got.headers, SECRET)
    assert not verify_signature(got.body, got.headers, "another-secret")
    assert not verify_signature(got.body.replace(b'"version":3', b'"version":4'), got.headers, SECRET)
    assert parse_event(got.body) == event
    assert got.headers["x-streamtune-event"] == "promoted" and got.headers["x-streamtune-delivery"] == event.event_id
    assert got.headers["content-type"] == "application/json" and got.headers["x-streamtune-attempt"] == "1"
    assert hook.stats().handled == 1 and hook.stats().last_error is None


def test_a_receiver_failing_twice_gets_the_event_on_the_third_try(receiver):
    hook = _hook(receiver, "/flaky", max_attempts=5)
    event = RunFinished(spec="sales", run_id="r-1", status="promoted", succeeded=True, seconds=42.0)
    started = time.monotonic()
    hook.handle(event)
    tries = receiver.wait_for("/flaky", 3)
    hook.close(5.0)
    assert [t.headers["x-streamtune-attempt"] for t in tries] == ["1", "2", "3"]
    assert {t.headers["x-streamtune-delivery"] for t in tries} == {event.event_id}
    assert all(verify_signature(t.body, t.headers, SECRET) for t in tries)  # each attempt signed anew
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s
    time.sleep(0.3)
    assert len(receiver.on("/flaky")) == 3  # delivered: no fourth try
    stats = hook.stats()
    assert (stats.handled, stats.failed) == (1, 0) and stats.last_error == "attempt 2: HTTP 500"


def test_a_receiver_that_always_fails_is_given_up_after_its_attempts(receiver):
    hook = _hook(receiver, "/fail", max_attempts=3)
    hook.handle(GateVerdict(spec="sales", run_id="r-2", passed=False, metric="rmse", reasons=["worse"]))
    receiver.wait_for("/fail", 3)
    deadline = time.monotonic() + 5
    while hook.stats().failed < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    stats = hook.stats()
    hook.close(1.0)
    assert len(receiver.on("/fail")) == 3 and (stats.handled, stats.failed) == (0, 1)
    assert "given up after attempt 3: HTTP 500" in (stats.last_error or "")
    assert receiver.url("/fail") not in (stats.last_error or "") and SECRET not in (stats.last_error or "")


def test_hanging_and_failing_receivers_never_slow_the_emitter_nor_the_other_webhooks(receiver):
    hanging = _hook(receiver, "/hang", timeout_s=10.0, queue_size=10)
    failing = _hook(receiver, "/fail", max_attempts=20, backoff_s=0.5)
    healthy = _hook(receiver, "/ok", queue_size=200)
    bus = EventBus([hanging, failing, healthy])
    events = [RunFinished(spec="sales", run_id=f"r-{i}", status="failed", succeeded=False, seconds=float(i))
              for i in range(100)]
    started = time.perf_counter()
    for event in events:
        bus.emit(event)
    spent = time.perf_counter() - started
    assert spent < 0.05, f"emitting 100 events took {spent * 1000:.1f} ms of the caller's time"
    got = receiver.wait_for("/ok", 100)  # the flow goes on: the healthy webhook gets every event
    assert sorted(parse_event(g.body).run_id for g in got) == sorted(e.run_id for e in events)
    assert hanging.stats().dropped >= 100 - 10 - 1  # its queue is full: the rest were dropped, not waited for
    started = time.perf_counter()
    bus.close(1.0)
    assert time.perf_counter() - started < 5.0  # closing does not wait on the hanging receiver either
    assert healthy.stats().handled == 100 and bus.counters.snapshot().runs_finished[("sales", "failed")] == 100


def test_a_webhook_gets_only_the_events_it_asked_for(receiver):
    hook = _hook(receiver, "/ok", events=["gate_rejected"])
    bus = EventBus([hook])
    bus.emit(GateVerdict(spec="s", run_id="r-1", passed=True, metric="rmse"))
    bus.emit(GateVerdict(spec="s", run_id="r-2", passed=False, metric="rmse", reasons=["below threshold"]))
    bus.emit(Promoted(spec="s", version=1, swap_s=1.0))
    (got,) = receiver.wait_for("/ok", 1)
    time.sleep(0.2)
    bus.close(2.0)
    assert len(receiver.on("/ok")) == 1 and parse_event(got.body).run_id == "r-2"
    assert got.headers["x-streamtune-event"] == "gate_rejected"
