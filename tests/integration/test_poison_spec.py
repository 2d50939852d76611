"""Poison specs on the real broker and Ray: one whose job code is gone from the store, one on a topic Kafka refuses.

Both are marked ``error`` with a readable reason and back off, while a good spec on the same controller keeps
turning windows into runs (before issue 8, either one stalled every spec: the first failed the run loop on every
pass, the second failed the consumer for every topic).
"""

from __future__ import annotations

import pathlib
import shutil
import time
import uuid

import pytest
import yaml
from pyarrow import fs as pafs

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.dev.synthetic import make_sales

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spec(name: str, topic: str, dataset: str, *, code: pathlib.Path | None = None) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name=name, base_dir=str(ROOT / "configs"))
    data["dataset"]["name"] = dataset
    data["trigger"].update(topic=topic, min_rows=600, max_wait="10m")
    data["job"]["params"]["num_boost_round"] = 20
    data["sweep"].update(num_samples=2, max_concurrent=2, max_t=2, grace_period=1)
    data["serve"].update(app=name, replicas=1)
    if code is not None:
        data["job"]["code"] = str(code)
    return JobSpec.parse(data)


def _events(dataset: str, n: int, seed: int) -> list[DataArrival]:
    rows = make_sales(n * 600, seed=seed).to_pylist()
    return [DataArrival(dataset=dataset, rows=rows[i * 600:(i + 1) * 600], num_rows=600) for i in range(n)]


def _wait_spec(client: Client, name: str, until, timeout_s: float = 60):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = {s.name: s for s in client.status().specs}.get(name)
        if found is not None and until(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"spec {name} never got there: {found}")


def test_poison_specs_are_marked_error_while_a_good_spec_keeps_producing_runs(kafka_bootstrap, ray_services,
                                                                              tmp_path):
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap,
                        dashboard_port=ray_services.dashboard_port, serve_port=ray_services.serve_port,
                        consumer_group=f"poison-{uuid.uuid4().hex[:6]}")
    tag = uuid.uuid4().hex[:6]
    good = _spec(f"good-{tag}", f"poison-good-{tag}", f"sales-{tag}")
    code = tmp_path / "pkg" / "jobs"  # a package of its own, so its stored zip is not the good spec's
    shutil.copytree(ROOT / "jobs", code, ignore=shutil.ignore_patterns("__pycache__"))
    (code / "_marker.py").write_text(f"TAG = {tag!r}\n")
    nocode = _spec(f"nocode-{tag}", good.trigger.topic, f"nocode-{tag}", code=code)
    badtopic = _spec(f"badtopic-{tag}", "bad topic!", f"bad-{tag}")

    with Client.local(settings) as client:
        client.submit(good)
        stored = client.submit(nocode)
        uri = client.specs()[[s.name for s in client.specs()].index(nocode.name)].spec.job.code_uri
        assert stored.status.value == "succeeded" and uri is not None
        filesystem, path = pafs.FileSystem.from_uri(uri)
        filesystem.delete_file(path)  # the job code is gone from the store (a lost bucket, a bad cleanup)
        client.submit(badtopic)

        client.publish(_events(nocode.dataset.name, 1, seed=3), good.trigger.topic)
        published = _events(good.dataset.name, 2, seed=1)
        client.publish(published[:1], good.trigger.topic)

        bad = _wait_spec(client, badtopic.name, lambda s: s.state == "error")
        assert bad.error.startswith("topic 'bad topic!' cannot be consumed: ServiceError: ")
        # the code check fails the spec on its first turn, possibly before its event is read: wait for both
        broken = _wait_spec(client, nocode.name, lambda s: s.state == "error" and s.queue_depth == 1)
        assert broken.error == (f'ConfigError: Got "{uri}" for job.code_uri of spec {nocode.name}; nothing is '
                                "stored there")
        assert broken.queue_depth == 1 and broken.retry_at is not None

        first = client.wait(event_ids=[published[0].event_id], timeout_s=300)
        assert first.status in (RunStatus.PROMOTED, RunStatus.REJECTED), first.error
        client.publish(published[1:], good.trigger.topic)  # still flowing while both poison specs back off
        second = client.wait(event_ids=[published[1].event_id], timeout_s=300)
        assert second.status in (RunStatus.PROMOTED, RunStatus.REJECTED), second.error
        assert second.run_id != first.run_id

        status = {s.name: s for s in client.status().specs}
        assert status[good.name].state == "active" and status[good.name].error is None
        assert (status[nocode.name].state, status[badtopic.name].state) == ("error", "error")
        assert status[nocode.name].failures >= 2  # retried after its backoff, still refused
        assert client.runs(nocode.name)[0].status == RunStatus.PENDING  # kept, not lost: it starts once fixed

        deleted = client.delete_spec(nocode.name, reason="code gone")
        assert "1 pending run(s) cancelled" in deleted.outcome.message
        assert nocode.name not in {s.name for s in client.specs()}
    from ray import serve

    serve.delete(good.serve.app)  # the session's CPUs are shared: its replicas would starve later tests' trials
