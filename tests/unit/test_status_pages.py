"""The status page without services: pages over a LocalControlPlane on a temp SQLite registry, served over real
HTTP (uvicorn in a thread); token login by cookie or bearer; everything a record carries is escaped."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
import requests
from fastapi import FastAPI

from streamtune.api import errors
from streamtune.api.app import asgi, create_app
from streamtune.api.auth import hash_token
from streamtune.api.page_auth import COOKIE
from streamtune.api.pages import _run_parts, install_pages, render
from streamtune.api.server import ApiServer
from streamtune.api.serving_state import read_serving
from streamtune.api.views import drift_table, gate_headline, trigger_details, trigger_summary
from streamtune.config.jobspec import JobSpec
from streamtune.config.settings import Settings
from streamtune.control.local import LocalControlPlane
from streamtune.registry import open_registry
from streamtune.registry.records import RunRecord, RunStatus, SpecRecord
from streamtune.serving.records import BoardSnapshot, ModelRef, RequestCounts, ServiceStatus
from streamtune.sweeps.schema import HoldoutScores, SweepResult, SweepSpend, TrialSummary
from streamtune.validation.gate import GateCheck, GateReport

EVIL = '<script>alert("pwned")</script>'
TOKEN = "st_unit-test-token"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(name: str = "sales-gbdt", app: str = "sales") -> JobSpec:
    return JobSpec.model_validate({
        "name": name, "dataset": {"name": "sales", "label": "y"}, "job": {"entrypoint": "jobs.x:Job"},
        "serve": {"app": app},
        "sweep": {"metric": "rmse", "mode": "min", "num_samples": 2,
                  "space": {"num_leaves": {"type": "int", "low": 7, "high": 63}}},
    })


def _sweep(run_id: str) -> dict[str, Any]:
    trials = [TrialSummary(trial_id="t_0001", params={"num_leaves": 31}, metrics={"rmse": 2.5}, iterations=6),
              TrialSummary(trial_id="t_0002", params={"num_leaves": EVIL}, metrics={"rmse": 1.25}, iterations=6),
              TrialSummary(trial_id="t_0003", params={"num_leaves": 9}, error=f"ValueError: {EVIL}")]
    spent = SweepSpend(trials_planned=4, trials_started=3, trials_completed=2, trials_failed=1, wall_s=61.5,
                       cpu_hours=0.25, stopped_by="cpu_hours", cpu_hours_budget=0.25)
    return SweepResult(run_id=run_id, best=trials[1], trials=trials, snapshot={"fingerprint": "f", "num_rows": 1200},
                       holdout=HoldoutScores(metric="rmse", challenger=1.3, rows=240),
                       spent=spent, warnings=[f"trials train on CPU {EVIL}"]).model_dump(mode="json")


def _gate() -> dict[str, Any]:
    checks = [GateCheck(name="rows", passed=True, value=240, limit=50, reason="240 holdout rows"),
              GateCheck(name="threshold", passed=True, value=1.3, limit=8.0, reason=f"rmse 1.3 <= 8 {EVIL}")]
    return GateReport(passed=True, reasons=[c.reason for c in checks], checks=checks,
                      numbers={"metric": "rmse", "challenger": 1.3, "champion": None,
                               "holdout_rows": 240}).model_dump(mode="json")


def _seed(registry: Any) -> None:
    registry.put_spec(_spec())
    promoted = RunRecord(run_id="r-promoted", spec_name="sales-gbdt", dataset="sales", reason="min_rows",
                         num_rows=1200, event_ids=["e1", "e2"], offsets={"t:0": [0, 1]})
    running = RunRecord(run_id="r-running", spec_name="sales-gbdt", dataset="sales", reason="max_wait",
                        offsets={"t:0": [2, 2]}, created_at=promoted.created_at + 1)
    failed = RunRecord(run_id="r-failed", spec_name="sales-gbdt", dataset="sales", reason="manual",
                       offsets={"t:0": [3, 3]}, created_at=promoted.created_at + 2)
    registry.commit_window("g", {}, {}, [promoted, running, failed])
    registry.update_run("r-promoted", status=RunStatus.PROMOTED, sweep=_sweep("r-promoted"), gate=_gate(),
                        model_version=1)
    registry.update_run("r-running", status=RunStatus.RUNNING, timings={"submitted_at": promoted.created_at})
    registry.update_run("r-failed", status=RunStatus.FAILED, error=f"DataGateFailed: {EVIL}",
                        gate={"data_gate": {"passed": False, "reasons": ["column x: type string"], "rows": 3}})
    registry.register_model("sales-gbdt", "r-promoted", "/artifacts/sales-gbdt/1", {"num_leaves": 31},
                            {"rmse": 1.25}, {"run_id": "r-promoted", "trigger_reason": "min_rows",
                                             "event_ids": ["e1", "e2"], "note": EVIL})
    registry.set_alias("sales-gbdt", "champion", 1, reason=f"promoted by ana: {EVIL}")
    registry.add_token("ana", hash_token(TOKEN))


def _board(record: SpecRecord) -> ServiceStatus:
    board = BoardSnapshot(app=record.spec.serve.app, board_id="b", epoch=4, generation=2, live_replicas=["r1", "r2"],
                          active=ModelRef(version=1, uri="/a/1"), target=ModelRef(version=2, uri="/a/2"),
                          canary_percent=10.0, counters={1: RequestCounts.timed([4.0] * 190 + [120.0] * 10, errors=2)})
    return ServiceStatus(app=record.spec.serve.app, url="http://127.0.0.1:1/sales", serve_status="RUNNING",
                         board=board)


@pytest.fixture
def site(tmp_path):
    """A token-mode API with the pages (boards faked), over a seeded registry, on a real HTTP port."""
    settings = Settings(home=tmp_path, auth="token", api_port=_port())
    control = LocalControlPlane(settings, registry=open_registry(settings.registry_url))
    _seed(control.registry)
    app = FastAPI()
    errors.install(app)
    install_pages(app, control, settings, serving=_board)
    server = ApiServer(app, "127.0.0.1", settings.api_port)
    server.start()
    server.closers = [control.close]
    yield server.url
    server.stop()


def _logged_in(url: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{url}/ui/login?next=/ui/runs/r-promoted", data={"token": TOKEN}, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/runs/r-promoted"
    return session


def test_without_a_token_a_browser_is_sent_to_log_in_and_a_bad_bearer_gets_401(site):
    answer = requests.get(f"{site}/ui/runs/r-promoted", allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login?next=%2Fui%2Fruns%2Fr-promoted"
    assert requests.get(f"{site}/ui/serving", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert requests.get(f"{site}/ui", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert requests.get(f"{site}/ui", cookies={COOKIE: "st_forged"}, allow_redirects=False).status_code == 303


def test_the_login_cookie_is_httponly_strict_and_a_bad_token_sets_none(site):
    refused = requests.post(f"{site}/ui/login", data={"token": "st_wrong"}, allow_redirects=False)
    assert refused.status_code == 401 and "set-cookie" not in refused.headers and "token refused" in refused.text
    cross = requests.post(f"{site}/ui/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"},
                          allow_redirects=False)
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
    good = requests.post(f"{site}/ui/login?next=https://evil.example/", data={"token": TOKEN},
                         allow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/ui"  # no open redirect
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert TOKEN not in good.headers["location"]
    session = _logged_in(site)
    page = session.get(f"{site}/ui")
    assert page.status_code == 200 and "ana" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"] and "<script" not in page.text
    out = session.post(f"{site}/ui/logout", allow_redirects=False)
    assert out.status_code == 303 and f"{COOKIE}=" in out.headers["set-cookie"]
    assert session.get(f"{site}/ui", allow_redirects=False).status_code == 303


def test_every_page_escapes_what_records_carry(site):
    session = _logged_in(site)
    for path in ("/ui", "/ui/runs/r-promoted", "/ui/runs/r-failed", "/ui/models/sales-gbdt", "/ui/serving",
                 "/ui/drift"):
        page = session.get(f"{site}{path}")
        assert page.status_code == 200, path
        assert EVIL not in page.text, path
    run = session.get(f"{site}/ui/runs/r-promoted").text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in run  # the trial param and the check's reason


def test_the_run_page_shows_trigger_gate_trials_and_best(site):
    page = _logged_in(site).get(f"{site}/ui/runs/r-promoted").text
    assert 'id="run-trigger">min_rows' in page and 'id="run-version">1<' in page
    assert "passed: rmse 1.3 vs champion -" in page and 'id="gate-checks"' in page
    assert "best: trial <code>t_0002</code>, <strong>rmse 1.25</strong>" in page
    assert ('id="spent">spent: 3 of 4 trial(s) started (2 completed,\n0 pruned, 0 stopped, 1 failed) in 61.5 s,\n'
            "0.25 CPU-hours, 0 GPU-hours;\n<strong>stopped by sweep.cpu_hours</strong>, the best trial so far "
            "won") in page
    assert ('id="sweep-warning-1"><strong>warning:</strong> trials train on CPU '
            "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;</p>") in page
    assert page.count('class="best"') == 1 and page.count('class="bar"') == 2  # three trials, one errored
    assert "curves come when the sweep records per-step progress" in page
    assert '<meta http-equiv="refresh"' not in page  # a finished run does not reload


def test_a_running_run_reloads_itself_and_says_where_its_trials_are(site):
    session = _logged_in(site)
    page = session.get(f"{site}/ui/runs/r-running").text
    assert '<meta http-equiv="refresh" content="3">' in page and "Sweep in progress" in page
    assert "2 trial(s) planned" in page
    assert '<meta http-equiv="refresh"' not in session.get(f"{site}/ui/runs/r-running?refresh=0").text
    failed = session.get(f"{site}/ui/runs/r-failed").text
    assert "data gate failed" in failed and "column x: type string" in failed
    missing = session.get(f"{site}/ui/runs/r-nope")
    assert missing.status_code == 404 and "r-nope" in missing.text


def test_models_serving_and_drift_pages(site):
    session = _logged_in(site)
    model = session.get(f"{site}/ui/models/sales-gbdt").text
    assert 'data-alias="champion"' in model and "promoted by ana: &lt;script&gt;" in model
    assert "trigger min_rows, 2 event(s)" in model and "/artifacts/sales-gbdt/1" in model
    assert session.get(f"{site}/ui/models/nope").status_code == 404
    serving = session.get(f"{site}/ui/serving").text
    assert 'data-app="sales"' in serving and "90%" in serving and "10%" in serving  # active 90, canary 10
    assert ">0.01<" in serving and ">150<" in serving  # error rate and p99 of version 1
    assert "no drift measured yet" in session.get(f"{site}/ui/drift").text


def test_the_real_app_serves_the_pages_in_local_mode_and_keeps_them_out_of_openapi(tmp_path):
    settings = Settings(home=tmp_path, auth="none", api_port=_port())
    control = LocalControlPlane(settings)
    _seed(control.registry)
    # an app no Serve has: the same page whether or not an earlier test in this process joined Ray
    control.registry.put_spec(_spec(app=f"ui-absent-{uuid.uuid4().hex[:8]}"))
    app = create_app(control, settings)
    assert not [p for p in app.openapi()["paths"] if p.startswith("/ui")]
    server = ApiServer(asgi(app), "127.0.0.1", settings.api_port, auth_required=False)
    server.start()
    server.closers = [control.close]
    try:
        page = requests.get(f"{server.url}/ui/serving")
        assert page.status_code == 200 and "NOT_DEPLOYED" in page.text  # no board to read: said, not faked
        assert "no version board" in page.text
        assert requests.get(f"{server.url}/ui/login").status_code == 200
    finally:
        server.stop()


def test_a_drift_trigger_renders_per_feature_values():
    run = RunRecord.model_validate({"run_id": "r-d", "spec_name": "s", "dataset": "d", "reason": "drift",
                                    "trigger_detail": {"kind": "drift", "rows": 800, "drift_method": "psi",
                                                       "drift": {"price": 0.41, "temp": 0.02, EVIL: 0.3},
                                                       "threshold": 0.2}})
    assert trigger_summary(run) == "drift (rows=800, drift_method=psi, threshold=0.2)"
    table = drift_table(trigger_details(run))
    assert table is not None and table.drifted == ["price", EVIL]
    assert table.rows[1] == ("temp", ["0.02", "0.2", "False"])
    page = render("run.html", run=run, spec=None, live=False, now=0.0, **_run_parts(run, None)).body.decode()
    assert "Drift per feature" in page and "0.41" in page and 'id="trigger-details"' in page
    assert EVIL not in page and "&lt;script&gt;" in page
    assert gate_headline(run) == "-"


def test_a_board_that_hangs_or_fails_becomes_a_note(monkeypatch):
    from streamtune.api import serving_state

    monkeypatch.setattr(serving_state, "READ_TIMEOUT_S", 0.2)
    record = SpecRecord(name="s", spec=_spec("s", "app-s"))

    def hang(_: SpecRecord) -> ServiceStatus:
        import time

        time.sleep(1)
        raise AssertionError("never read")

    def boom(_: SpecRecord) -> ServiceStatus:
        raise RuntimeError("board gone")

    slow, = read_serving(hang, [(record, 1)])
    failed, = read_serving(boom, [(record, None)])
    assert slow.serve_status == "UNKNOWN" and "did not answer within 0.2 s" in (slow.note or "")
    assert failed.note == "could not read serving: RuntimeError: board gone" and failed.champion is None


def test_a_running_sweep_shows_its_trials_by_state_curves_and_the_best_so_far(site, tmp_path):
    from streamtune.artifacts import ArtifactStore
    from streamtune.sweeps.progress import ProgressWriter, run_out_uri

    session = _logged_in(site)
    assert "No progress from the sweep yet" in session.get(f"{site}/ui/runs/r-running?refresh=0").text
    store = ArtifactStore.from_settings(Settings(home=tmp_path))
    writer = ProgressWriter(run_out_uri(store, "sales-gbdt", "r-running"), metric="rmse", mode="min", planned=6,
                            max_t=3, every_s=0)
    for step, value in enumerate([4.0, 3.1, 2.4], start=1):
        writer.result("t_00000", step, {"rmse": value})
    writer.ended("t_00000", 3, error=False)
    writer.result("t_00001", 1, {"rmse": 5.0})
    writer.ended("t_00001", 1, error=False)  # stopped before max_t: pruned
    writer.result("t_00002", 1, {"rmse": 3.5})
    page = session.get(f"{site}/ui/runs/r-running?refresh=0").text
    assert "<strong>1</strong> running, <strong>1</strong> done, <strong>1</strong> pruned" in page
    assert 'id="best-so-far">rmse 2.4' in page and "<code>t_00000</code>" in page
    assert page.count("<polyline") == 3 and 'class="best"' in page
