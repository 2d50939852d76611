"""``GET /metrics`` after a real promotion: the figures match what happened, and webhooks saw it, signed.

``Client.local`` on the session's broker and Ray runs the whole flow (events -> window -> sweep -> gate -> registry
-> swap) with a controller and the API in this process, as ``streamtune up`` does; two webhooks are configured
through Settings: one records, one hangs (and must not slow the flow). Then N predictions, and the scrape.
"""

from __future__ import annotations

import math
import pathlib
import socket
import time
import uuid

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from webhook_receiver import Receiver

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.config.webhooks import WebhookConfig
from streamtune.dev.synthetic import make_sales
from streamtune.observe import parse_event
from streamtune.observe.webhooks import verify_signature

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "whsec-metrics-test"
PREDICTIONS = 25
ROWS_PER_PREDICTION = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spec(topic: str) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="metrics-gbdt", base_dir=str(ROOT / "configs"))
    data["trigger"].update(topic=topic, min_rows=1000)
    data["sweep"].update(num_samples=2, max_concurrent=2)
    data["serve"].update(app="metricsapp", replicas=1)
    return JobSpec.parse(data)


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(response.text) for s in f.samples}


def _get(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_and_webhooks_follow_a_real_promotion(kafka_bootstrap, ray_services, tmp_path):
    receiver = Receiver()
    hooks = [WebhookConfig(url=receiver.url("/ok"), secret=SECRET, name="recorder",
                           events=["run_finished", "gate_passed", "gate_rejected", "promoted"]),
             WebhookConfig(url=receiver.url("/hang"), secret=SECRET, name="hangs", timeout_s=30)]
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"metrics-{uuid.uuid4().hex[:6]}",
                        api_port=_free_port(), webhooks=hooks)
    spec = _spec(f"metrics-{uuid.uuid4().hex[:8]}")
    rows = make_sales(1200, seed=5).to_pylist()
    events = [DataArrival(dataset="sales", rows=rows[i * 600:(i + 1) * 600], num_rows=600) for i in range(2)]
    try:
        with Client.local(settings) as client:
            assert client.api_url is not None
            client.submit(spec, reason="metrics test")
            started = time.monotonic()
            client.publish(events, spec.trigger.topic)
            run = client.wait(event_ids=[e.event_id for e in events], timeout_s=300)
            flow_s = time.monotonic() - started
            assert run.status == RunStatus.PROMOTED, run.error
            features = [{k: v for k, v in r.items() if k != "sales"} for r in make_sales(400, seed=6).to_pylist()]
            for i in range(PREDICTIONS):
                batch = features[i * ROWS_PER_PREDICTION:(i + 1) * ROWS_PER_PREDICTION]
                assert client.predict("metrics-gbdt", batch).version == 1

            v1 = {"spec": "metrics-gbdt", "app": "metricsapp", "version": "1"}
            deadline = time.monotonic() + 30  # replicas send their figures with each board heartbeat (~1 s)
            samples = _scrape(client.api_url)
            while _get(samples, "streamtune_serving_requests_total", **v1) != PREDICTIONS:
                assert time.monotonic() < deadline, _get(samples, "streamtune_serving_requests_total", **v1)
                time.sleep(0.5)
                samples = _scrape(client.api_url)

            assert _get(samples, "streamtune_runs", spec="metrics-gbdt", status="promoted") == 1
            assert _get(samples, "streamtune_gate_verdicts_total", spec="metrics-gbdt", verdict="passed") == 1
            assert _get(samples, "streamtune_gate_verdicts_total", spec="metrics-gbdt", verdict="rejected") is None
            assert _get(samples, "streamtune_runs_finished_total", spec="metrics-gbdt", status="promoted") == 1
            assert _get(samples, "streamtune_promotions_total", spec="metrics-gbdt") == 1
            assert _get(samples, "streamtune_events_consumed_total") >= len(events)
            assert _get(samples, "streamtune_windows_closed_total") >= 1
            assert _get(samples, "streamtune_dead_letters_total") == 0
            swap = {"spec": "metrics-gbdt", "kind": "promote", "phase": "total"}
            assert _get(samples, "streamtune_swap_seconds_count", **swap) == 1
            assert _get(samples, "streamtune_swap_seconds_sum", **swap) == pytest.approx(
                client.run(run.run_id).timings["swap_total_s"], abs=1e-3)
            assert _get(samples, "streamtune_champion_version", model="metrics-gbdt") == 1
            assert _get(samples, "streamtune_sweep_trials", spec="metrics-gbdt") == 2
            assert _get(samples, "streamtune_sweep_trials_per_second", spec="metrics-gbdt") > 0
            assert _get(samples, "streamtune_serving_model_errors_total", **v1) == 0
            assert _get(samples, "streamtune_serving_latency_seconds_count", **v1) == PREDICTIONS
            assert _get(samples, "streamtune_serving_predictions_total", **v1) == PREDICTIONS * ROWS_PER_PREDICTION
            drift = _get(samples, "streamtune_prediction_psi", **v1)
            assert drift is not None and math.isfinite(drift) and 0 <= drift < 1.0  # same generator as training
            assert _get(samples, "streamtune_listener_events_total", listener="recorder", outcome="handled") >= 3

            got = receiver.wait_for("/ok", 3)  # gate_passed, run_finished and promoted
            assert all(verify_signature(g.body, g.headers, SECRET) for g in got)
            kinds = {g.headers["x-streamtune-event"]: parse_event(g.body) for g in got}
            assert {"gate_passed", "run_finished", "promoted"} <= kinds.keys()
            assert kinds["promoted"].version == 1 and kinds["promoted"].app == "metricsapp"
            assert kinds["run_finished"].run_id == run.run_id and kinds["run_finished"].status == "promoted"
            assert receiver.on("/hang"), "the hanging receiver was called"
            print(f"flow {flow_s:.1f}s with a hanging webhook configured")
        from ray import serve

        serve.delete("metricsapp")  # the session's CPUs are shared with later tests' trials
    finally:
        receiver.close()
