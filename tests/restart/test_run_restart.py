"""The Ray head restarts during a run (``streamtune down`` then ``up``, on a stack of its own): the run's Ray Job
is gone with the old cluster, and the new controller records that attempt as failed with the reason and
retries the run as a new Ray Job (``<run_id>-a2``) over the same window. It never stays ``running``.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from test_restart import ROOT, Stack

from streamtune import DataArrival, JobSpec, RunStatus
from streamtune.dev.synthetic import write_batch

ROWS_PER_FILE = 1500


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    s = Stack(tmp_path_factory.mktemp("run-restart-home"))
    s.cli("up")
    try:
        yield s
    finally:
        s.cli("down", timeout=120)


def _spec() -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(base_dir=str(ROOT / "configs"))
    data["name"] = "restart-retry"
    data["serve"]["app"] = "restart-retry"
    data["trigger"].update(min_rows=2 * ROWS_PER_FILE)
    data["sweep"].update(num_samples=4, retries=2, retry_backoff="1s")
    data["job"]["params"].update(num_boost_round=300, report_every=50)  # a few seconds per trial
    return JobSpec.parse(data)


def _wait_status(client, run_id: str, statuses: set[RunStatus], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.find_run(run_id)
        if run is not None and run.status in statuses:
            return
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached {statuses}: {client.find_run(run_id)}")


def test_ray_head_restart_during_a_run_retries_it_as_a_new_attempt(stack: Stack) -> None:
    client = stack.client()
    spec = _spec()
    client.submit(spec, reason="ray restart test")
    uris = write_batch(stack.home / "data" / "restart", files=2, rows_per_file=ROWS_PER_FILE, drift=0.0, seed=31)
    events = [DataArrival(dataset="sales", uris=[u], num_rows=ROWS_PER_FILE) for u in uris]
    client.publish(events, spec.trigger.topic)
    deadline = time.monotonic() + 120
    while (run := next((r for r in client.runs(spec.name) if set(r.event_ids) & {e.event_id for e in events}),
                       None)) is None:
        assert time.monotonic() < deadline, "no run for the published window"
        time.sleep(0.2)
    _wait_status(client, run.run_id, {RunStatus.RUNNING}, 180)
    client.close()

    stack.cli("down", timeout=120)  # Ray (head included), Kafka and the controller stop mid-run
    stack.cli("up")
    client = stack.client()
    restarted = time.monotonic()
    ended = client.wait(run.run_id, timeout_s=400)
    summary = {"status": ended.status.value, "attempt": ended.attempt, "error": ended.error,
               "attempts": [a.model_dump() for a in ended.attempts], "ended_after_up_s": round(time.monotonic()
                                                                                               - restarted, 1)}
    print(f"\n[ray head restarted mid-run] {json.dumps(summary, indent=1)}")
    assert ended.attempt >= 2, ended
    first = ended.attempts[0]
    assert first.attempt == 1 and first.submission_id == run.run_id
    assert first.error == f"Ray Job {run.run_id} is gone from the cluster (did the Ray head restart?)"
    assert (ended.uris, ended.offsets, ended.event_ids) == (run.uris, run.offsets, run.event_ids)  # same window
    if ended.status is RunStatus.FAILED:  # allowed, with every attempt's reason
        assert ended.error and f"attempt {ended.attempt} of 3" in ended.error, ended.error
    else:
        assert ended.status in (RunStatus.PROMOTED, RunStatus.REJECTED), ended.error
        assert ended.error is None  # the failed attempt's reason stays in `attempts` only
        logs = client.logs(run.run_id)  # the retry's own Ray Job log, one command away
        assert logs.submission_id == f"{run.run_id}-a{ended.attempt}" and logs.text
    client.close()
