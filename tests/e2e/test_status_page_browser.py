"""The status page in a real headless Chromium, against a running platform.

A real controller flow (Client.local on the session's Kafka and Ray) promotes one real run; the API is served by
the real HTTP server in token mode; the browser logs in through the page with a real token and reads the run, the
model and serving from the DOM, checked against the registry. Screenshots go to tests/artifacts/.

Needs Debian's chromium (``apt-get install -y chromium chromium-driver``; ``.ci/run`` installs it) and Playwright
for Python (the ``dev`` extra). Playwright drives the system browser: ``playwright install`` is never needed.
"""

from __future__ import annotations

import pathlib
import time
import uuid
from typing import Any

import pytest
import requests
import yaml

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.api.auth import hash_token, new_token
from streamtune.api.page_auth import COOKIE
from streamtune.api.server import start_api
from streamtune.dev.synthetic import make_sales
from streamtune.registry import open_registry

pytestmark = pytest.mark.e2e
ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}


def _spec(topic: str, app: str) -> JobSpec:
    """The demo spec, made cheap: 2 trials of 30 rounds, one replica."""
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="ui-gbdt", base_dir=str(ROOT / "configs"))
    data["trigger"].update(topic=topic, min_rows=1000)
    data["job"]["params"].update(num_boost_round=30)
    data["sweep"].update(num_samples=2, max_concurrent=2)
    data["serve"].update(app=app, replicas=1)
    return JobSpec.parse(data)


def _events(n: int, seed: int) -> list[DataArrival]:
    rows = make_sales(n * 600, drift=0.0, seed=seed).to_pylist()
    return [DataArrival(dataset="sales", rows=rows[i * 600:(i + 1) * 600], num_rows=600) for i in range(n)]


def _browser(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _say(request: pytest.FixtureRequest, *lines: str) -> None:
    """Print to the terminal even when pytest captures output (no -s needed)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))


def _requests_shown(page: Any, app: str, url: str, timeout_s: float = 15) -> int:
    """Reload the serving page until the active version's request count (sent by replica heartbeats) is > 0."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(url)
        count = int(page.locator(f'tr[data-app="{app}"] td.requests').first.inner_text())
        if count > 0 or time.monotonic() > deadline:
            return count
        time.sleep(1.0)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs chromium: apt-get install -y chromium chromium-driver")
def test_the_status_page_in_chromium_shows_the_real_run_model_and_serving(kafka_bootstrap, ray_services, tmp_path,
                                                                          free_api_port, request):
    from playwright.sync_api import sync_playwright

    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"ui-{uuid.uuid4().hex[:6]}")
    app = f"ui{uuid.uuid4().hex[:6]}"
    spec = _spec(f"ui-{uuid.uuid4().hex[:8]}", app)
    client = Client.local(settings, api=False)
    api = None
    try:
        client.submit(spec, reason="status page test")
        events = _events(2, seed=31)
        client.publish(events, spec.trigger.topic)
        run = client.wait(event_ids=[e.event_id for e in events], timeout_s=240)
        assert run.status == RunStatus.PROMOTED, run.error
        started = time.monotonic()
        for _ in range(5):
            assert client.predict(spec.name, [ROW]).version == run.model_version

        token = new_token()
        open_registry(settings.registry_url).add_token("ui-tester", hash_token(token))
        api = start_api(settings.model_copy(update={"auth": "token", "api_port": free_api_port}))
        base = api.url

        # without a token the page refuses: a browser goes to the login page, a bad bearer gets 401
        refused = requests.get(f"{base}/ui", allow_redirects=False, timeout=10)
        assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/login")
        assert requests.get(f"{base}/ui", headers={"Authorization": "Bearer st_bad"}, timeout=10).status_code == 401

        registry = open_registry(settings.registry_url)
        stored, champion = registry.get_run(run.run_id), registry.get_alias(spec.name, "champion")
        assert stored is not None and champion is not None and champion.version == stored.model_version

        with sync_playwright() as pw:
            browser = _browser(pw)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{base}/ui/runs/{run.run_id}")
            assert page.url.startswith(f"{base}/ui/login")
            page.fill("#token", "st_not-a-token")
            page.click("#login")
            assert page.inner_text("#login-error") == "token refused"

            page.fill("#token", token)
            page.click("#login")
            page.wait_for_url(f"{base}/ui/runs/{run.run_id}")
            cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
            assert page.evaluate("document.cookie") == "" and token not in page.url

            # the run page: the real run id, model, version and trigger reason, from the registry
            assert page.inner_text("#run-id") == stored.run_id
            assert page.inner_text("#run-spec") == spec.name
            assert page.inner_text("#run-version") == str(stored.model_version)
            assert stored.reason == "min_rows" and page.inner_text("#run-trigger").startswith(stored.reason)
            assert page.inner_text("#run-status") == "promoted"
            assert page.locator("#trials tr").count() == 1 + len(stored.sweep["trials"])
            assert page.locator("#trial-chart rect.best").count() == 1
            assert "passed" in page.inner_text("#gate-verdict")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            run_shot = ARTIFACTS / "status_page_run.png"
            page.screenshot(path=str(run_shot), full_page=True)

            # the overview lists the run with its trigger and version, and the spec's champion
            page.goto(f"{base}/ui")
            row = page.locator(f'#runs tr[data-run="{stored.run_id}"]')
            assert row.locator("td.trigger").inner_text().startswith(stored.reason)
            assert row.locator("td.version").inner_text() == str(stored.model_version)
            assert page.locator(f'#specs tr[data-spec="{spec.name}"] td.champion').inner_text() == str(
                champion.version)

            # serving: the app with the promoted version active, all traffic, live figures from the replicas
            served = _requests_shown(page, app, f"{base}/ui/serving")
            first = page.locator(f'tr[data-app="{app}"]').first
            assert first.locator("td.version").inner_text() == str(champion.version)
            assert first.locator("td.role").inner_text() == "active"
            assert first.locator("td.traffic").inner_text() == "100%"
            assert served >= 5
            serving_shot = ARTIFACTS / "status_page_serving.png"
            page.screenshot(path=str(serving_shot), full_page=True)

            # the model page: lineage names the run; the champion alias and its history
            page.goto(f"{base}/ui/models/{spec.name}")
            assert page.inner_text("#model-name") == spec.name
            assert page.locator('#aliases tr[data-alias="champion"] td.n').inner_text() == str(champion.version)
            assert stored.run_id in page.inner_text(f'#versions tr[data-version="{champion.version}"]')

            # a fresh browser without the cookie is sent to log in
            other = browser.new_context().new_page()
            other.goto(f"{base}/ui/serving")
            assert other.url.startswith(f"{base}/ui/login")
            browser.close()
        _say(request, f"screenshot: {run_shot}", f"screenshot: {serving_shot}",
             f"page checks took {time.monotonic() - started:.1f} s after the run was promoted")
    finally:
        if api is not None:
            api.stop()
        client.close()
        from ray import serve

        serve.delete(app)  # the session's CPUs are shared: its replica would starve later tests' trials


@pytest.fixture
def free_api_port() -> int:
    from fixtures_ray import free_port

    return free_port()
