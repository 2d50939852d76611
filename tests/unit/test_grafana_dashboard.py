"""The example Grafana dashboard only uses metric names that ``GET /metrics`` exposes, scraped over real HTTP.

The API is the real app (``create_app`` over a ``LocalControlPlane`` on a temp SQLite registry) served by the real
``ApiServer`` (uvicorn) on a free port; no Ray, no Kafka.
"""

from __future__ import annotations

import json
import pathlib
import re
import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from streamtune.api.app import asgi, create_app
from streamtune.api.auth import hash_token, new_token
from streamtune.api.server import ApiServer
from streamtune.config.settings import Settings
from streamtune.control.local import LocalControlPlane
from streamtune.observe import EventBus, GateVerdict, IngestProgress, Promoted
from streamtune.observe.metrics import METRICS

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "streamtune-dashboard.json"
_NAME = re.compile(r"\bstreamtune_[a-z0-9_]+\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _expressions(node) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and template-variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, str) and "streamtune_" in value:
                found.append(value)
            else:
                found.extend(_expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_expressions(item))
    return found


@pytest.fixture
def serve_api(tmp_path):
    """Start the real API over a temp registry: ``serve_api(auth, events) -> (base URL, control plane)``."""
    servers: list[ApiServer] = []
    controls: list[LocalControlPlane] = []

    def start(auth: str, events: EventBus | None = None) -> tuple[str, LocalControlPlane]:
        settings = Settings(home=tmp_path / auth, auth=auth, api_port=_free_port())
        control = LocalControlPlane(settings)
        server = ApiServer(asgi(create_app(control, settings, events=events)), "127.0.0.1", settings.api_port,
                           auth_required=auth == "token")
        server.start()
        servers.append(server)
        controls.append(control)
        return server.url, control

    yield start
    for server in servers:
        server.stop()
    for control in controls:
        control.close()


def test_every_metric_the_dashboard_uses_is_exposed(serve_api):
    bus = EventBus()  # a controller's bus with something counted, as in a controller process
    bus.emit(IngestProgress(records=3, events=3, accepted=3, windows_closed=1, runs_inserted=1))
    bus.emit(GateVerdict(spec="sales-gbdt", run_id="r-1", passed=True, metric="rmse"))
    bus.emit(Promoted(spec="sales-gbdt", version=1, swap_s=2.0, load_s=1.5, flip_s=0.01))
    url, _ = serve_api("none", bus)
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(response.text))
    exposed = {f.name + suffix for f in families for suffix in _SUFFIXES.get(f.type, ("",))}
    exposed |= {s.name for f in families for s in f.samples}
    assert {m.name for m in METRICS} <= {f.name for f in families}
    assert "process_cpu_seconds_total" in exposed  # the process's own figures ride along

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard)
    used = {name for expr in expressions for name in _NAME.findall(expr)}
    assert len(expressions) >= 20 and len(used) >= 20
    assert sorted(used - exposed) == []
    documented = {m.name for m in METRICS}
    assert {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used} <= documented


def test_the_dashboard_panels_are_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys() and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_metrics_need_a_token_unless_the_platform_runs_in_local_mode(serve_api):
    url, control = serve_api("token")
    refused = requests.get(f"{url}/metrics", timeout=10)
    assert refused.status_code == 401 and refused.json() == {"message": "unauthorized"}
    token = new_token()
    control.registry.add_token("prometheus", hash_token(token))
    scraped = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert scraped.status_code == 200 and "# TYPE streamtune_runs gauge" in scraped.text
