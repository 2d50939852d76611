"""A spec is in force before the next poll once ``submit`` returns (issue 8, item 9).

The controller read its spec list before its blocking poll, so an event for a spec submitted during that poll was
consumed against the old list and lost (1 try in 4 of the README's own order: submit, then publish). Now each
turn runs the commands first, then reads the specs, then polls Kafka.
"""

from __future__ import annotations

import pathlib
import time
import uuid

import pytest
import yaml
from kafka import KafkaConsumer

from streamtune import Client, DataArrival, JobSpec, Settings
from streamtune.registry import open_registry

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1, "sales": 10.0}


def _spec(name: str, topic: str, dataset: str) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name=name, base_dir=str(ROOT / "configs"))
    data["dataset"]["name"] = dataset
    data["trigger"].update(topic=topic, min_rows=100_000, max_wait="1h")  # the window stays open: no Ray run
    data["serve"].update(app=name, replicas=1)
    return JobSpec.parse(data)


def test_event_published_right_after_submit_is_trained_on(kafka_bootstrap, ray_services, tmp_path):
    tag = uuid.uuid4().hex[:6]
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap,
                        dashboard_port=ray_services.dashboard_port, serve_port=ray_services.serve_port,
                        consumer_group=f"inforce-{tag}", dead_letter_topic=f"inforce-dlq-{tag}")
    shared = f"inforce-{tag}"
    published: dict[str, str] = {}  # event id -> spec
    with Client.local(settings, api=False) as client:
        for i in range(5):  # fresh spec and dataset each time; every other one on a topic new to the controller
            topic = shared if i % 2 == 0 else f"inforce-{tag}-{i}"
            spec = _spec(f"inforce-{tag}-{i}", topic, f"ds-{tag}-{i}")
            client.submit(spec)
            event = DataArrival(dataset=spec.dataset.name, rows=[ROW], num_rows=1)
            client.publish([event], topic)  # right away, as the README does
            published[event.event_id] = spec.name

        registry = open_registry(settings.registry_url, create=False)
        deadline = time.monotonic() + 60
        while True:
            windows = registry.load_windows()
            landed = {e["event_id"]: key for key, w in windows.items() for e in w.get("events", [])}
            landed.update({eid: r.spec_name for r in registry.list_runs(limit=100) for eid in r.event_ids})
            if set(published) <= set(landed) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        registry.close()

    dlq = KafkaConsumer(settings.dead_letter_topic, bootstrap_servers=kafka_bootstrap,
                        auto_offset_reset="earliest", consumer_timeout_ms=3000)
    dead = [m.value for m in dlq]
    dlq.close()
    assert not [v for v in dead if any(eid.encode() in v for eid in published)], dead
    assert {eid: landed.get(eid) for eid in published} == published
