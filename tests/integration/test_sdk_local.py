"""The SDK embedded (Client.local) on the session's real Kafka and Ray: inline-row events, promote,
rollback, and a broken batch that must never reach traffic."""

import pathlib
import uuid

import pytest
import yaml

from streamtune import Client, DataArrival, JobSpec, Settings, SwapError
from streamtune.dev.synthetic import make_sales
from streamtune.registry.records import RunStatus

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}


def _spec(topic: str) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="sdk-gbdt", base_dir=str(ROOT / "configs"))
    data["trigger"].update(topic=topic, min_rows=1000)
    data["sweep"].update(num_samples=3, max_concurrent=2)
    data["serve"].update(app="sdkapp")
    return JobSpec.parse(data)


def _events(n: int, *, drift: float, seed: int, drop_label: bool = False) -> list[DataArrival]:
    table = make_sales(n * 600, drift=drift, seed=seed)
    if drop_label:
        table = table.drop_columns(["sales"])
    rows = table.to_pylist()
    return [DataArrival(dataset="sales", rows=rows[i * 600:(i + 1) * 600], num_rows=600) for i in range(n)]


def _publish_and_wait(client: Client, spec: JobSpec, events: list[DataArrival]):
    client.publish(events, spec.trigger.topic)
    return client.wait(event_ids=[e.event_id for e in events], timeout_s=300)


def test_inline_events_promote_rollback_and_bad_batch(kafka_bootstrap, ray_services, tmp_path):
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"sdk-{uuid.uuid4().hex[:6]}")
    spec = _spec(f"sdk-{uuid.uuid4().hex[:8]}")
    with Client.local(settings) as client:
        client.submit(spec)
        run1 = _publish_and_wait(client, spec, _events(2, drift=0.0, seed=11))
        assert run1.status == RunStatus.PROMOTED, run1.error
        assert client.predict("sdkapp", [ROW])["version"] == 1
        run2 = _publish_and_wait(client, spec, _events(2, drift=1.0, seed=12))
        assert run2.status == RunStatus.PROMOTED, run2.error
        assert client.predict("sdkapp", [ROW])["version"] == 2

        report = client.rollback("sdk-gbdt")
        assert report["version"] == 1 and report["flip_s"] < 1.0
        assert client.predict("sdkapp", [ROW])["version"] == 1
        assert client.champion("sdk-gbdt").version == 1
        # a second, non-embedded client (as the CLI uses) joins the running Ray and promotes too
        other = Client(settings)
        assert other.promote("sdk-gbdt", 2)["version"] == 2
        assert client.predict("sdkapp", [ROW])["version"] == 2
        with pytest.raises(SwapError, match="no such version"):
            other.promote("sdk-gbdt", 9)

        bad = _publish_and_wait(client, spec, _events(2, drift=0.0, seed=13, drop_label=True))
        assert bad.status == RunStatus.FAILED and 'label "sales" is missing' in bad.error
        assert client.champion("sdk-gbdt").version == 2
        assert client.predict("sdkapp", [ROW])["version"] == 2
        assert sorted(m.version for m in client.models("sdk-gbdt")) == [1, 2]
