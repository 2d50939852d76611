"""The demo loop end to end: Kafka events → sweep → gate → registry → hot-swap under real HTTP load."""

import json
import pathlib

import pytest
import requests
from rich.console import Console

from streamtune.config import Settings
from streamtune.dev.demo import SAMPLE_ROW, run_demo

pytestmark = pytest.mark.e2e
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_demo_promotes_v2_with_zero_failed_requests(kafka_bootstrap, ray_services, tmp_path):
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap,
                        dashboard_port=ray_services.dashboard_port, serve_port=ray_services.serve_port,
                        consumer_group=f"e2e-{tmp_path.name}")
    summary = run_demo(settings, spec_path=ROOT / "configs" / "demo.yaml",
                       console=Console(width=200, record=True), timeout_s=420)
    v1, v2 = summary["versions"]
    serving = summary["serving"]
    assert summary["ok"], json.dumps(summary, indent=1, default=str)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["gate"]["champion"] is None and v2["gate"]["champion"] > v2["gate"]["challenger"]
    assert serving["failed"] == 0 and serving["requests"] > 20
    assert set(serving["versions"]) == {"1", "2"} and serving["last_version"] == "2"
    assert v2["timings"]["swap_flip_s"] < 1.0
    # the registry kept the lineage of the serving version
    from streamtune.registry import open_registry

    reg = open_registry(settings.registry_url)
    champ = reg.get_alias("sales-gbdt", "champion")
    assert champ.version == 2 and len(champ.lineage["event_ids"]) == 4
    assert champ.lineage["snapshot_fingerprint"] and champ.lineage["offsets"]
    # and a real HTTP request now is answered by v2
    url = f"http://127.0.0.1:{settings.serve_port}/sales"
    body = requests.post(url, json={"rows": [SAMPLE_ROW]}, timeout=10).json()
    assert body["version"] in (2, "2") and len(body["predictions"]) == 1
