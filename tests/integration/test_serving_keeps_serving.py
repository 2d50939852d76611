"""Serving that keeps serving (issue 9, item 4), on a real Ray Serve with real HTTP clients.

Swaps under continuous load, bad candidates that must never take the traffic (one that fails to load, one that
answers NaN, one slow under canary, one that degrades after promotion), shadow traffic, the endpoint's input
checks, and a replica that retries a failed load. Helpers come from ``test_serving_swap``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_serving_swap import CODE_URI, ENTRYPOINT, ROWS, Load, make_artifact, show

from streamtune.config.jobspec import RolloutSpec, ServeSpec
from streamtune.errors import ServiceError, SwapError
from streamtune.registry.manifest import write_manifest
from streamtune.serving import AccessPolicy, InputSchema, ModelService, VersionFigures

pytestmark = pytest.mark.integration

APP = "keepserving"
SCHEMA = InputSchema(columns={"x": "double", "y": "string"})
POLICY = AccessPolicy(max_body_bytes=4096, max_rows=20)


@pytest.fixture(scope="module")
def service(ray_services: Any) -> Iterator[ModelService]:
    spec = ServeSpec(app=APP, replicas=2, num_cpus=0.25, replica_memory_mb=64)
    svc = ModelService(APP, spec, ENTRYPOINT, CODE_URI, http_port=ray_services.serve_port, input_schema=SCHEMA,
                       policy=POLICY)
    svc.deploy()
    yield svc
    svc.delete()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keepserving-artifacts")


def _figures_of(service: ModelService, version: int, timeout_s: float = 10) -> dict[Any, VersionFigures]:
    deadline = time.monotonic() + timeout_s
    while True:
        figures = service.figures()
        if version in figures or time.monotonic() > deadline:
            return figures
        time.sleep(0.2)


def _champion(service: ModelService) -> int:
    board = service.status().board
    assert board is not None and board.active is not None
    return int(board.active.version)


def test_swap_under_load_ten_swaps_fail_no_request(service: ModelService, artifacts: Path) -> None:
    service.swap(100, make_artifact(artifacts, "v100", 100.0))
    windows: list[tuple[int, int, float, float]] = []
    with Load(service.url, threads=4, max_s=90) as load:
        time.sleep(0.5)
        for version in range(101, 111):
            old = _champion(service)
            started = time.monotonic()
            report = service.swap(version, make_artifact(artifacts, f"v{version}", float(version)))
            windows.append((old, version, started, time.monotonic()))
            assert (report.version, report.previous, report.rolled_back) == (version, old, False)
            time.sleep(0.3)
    print(f"\n[10 swaps under load] requests={len(load.records)} failures={len(load.failures())}")
    assert load.failures() == [] and len(load.records) > 100
    for index, (old, new, started, done) in enumerate(windows):
        during = load.versions(started_after=started, ended_before=done)
        assert set(during) <= {old, new}, (old, new, during)
        until = windows[index + 1][2] if index + 1 < len(windows) else float("inf")
        after = load.versions(started_after=done, ended_before=until)
        assert set(after) == {new}, (new, after)  # after the flip only the new version answers


def test_candidate_that_fails_to_load_never_serves(service: ModelService, artifacts: Path) -> None:
    champion = _champion(service)
    broken = make_artifact(artifacts, "v201", 201.0, fail_load="weights are corrupt")
    with Load(service.url) as load:
        time.sleep(0.3)
        with pytest.raises(SwapError, match="weights are corrupt"):
            service.swap(201, broken, rollout=RolloutSpec(load_timeout="30s"))
        time.sleep(0.3)
    assert load.failures() == [] and set(load.versions()) == {champion}
    assert _champion(service) == champion


def test_candidate_answering_nan_is_withdrawn_under_shadow(service: ModelService, artifacts: Path) -> None:
    champion = _champion(service)
    nan = make_artifact(artifacts, "v202", float("nan"))
    rollout = RolloutSpec(shadow_percent=100, observe="4s", min_requests=5, max_error_rate=0.05)
    with Load(service.url) as load:
        time.sleep(0.3)
        with pytest.raises(SwapError, match="Shadow observation of version 202.*model error rate") as info:
            service.swap(202, nan, rollout=rollout)
        time.sleep(0.3)
    report = info.value.report
    show("NaN candidate withdrawn (shadow)", report, load)
    assert report.rolled_back and report.version == champion and report.candidate == 202
    assert report.canary is not None and report.canary.errors >= 5 and not report.canary.passed
    assert load.failures() == [] and set(load.versions()) == {champion}  # clients never saw the NaN model
    assert _figures_of(service, 202)[202].model_errors >= 5


def test_candidate_slow_under_canary_is_rolled_back(service: ModelService, artifacts: Path) -> None:
    champion = _champion(service)
    slow = make_artifact(artifacts, "v203", 203.0, predict_sleep_s=0.3)
    rollout = RolloutSpec(canary_percent=30, observe="6s", min_requests=5, max_p99_ms=150)
    with Load(service.url) as load:
        time.sleep(0.3)
        with pytest.raises(SwapError, match="Canary of version 203.*p99 latency") as info:
            service.swap(203, slow, rollout=rollout)
        done = time.monotonic()
        time.sleep(0.5)
    report = info.value.report
    show("slow candidate rolled back (canary)", report, load)
    assert report.rolled_back and report.version == champion and report.canary is not None
    assert report.canary.p99_ms is not None and report.canary.p99_ms > 150
    assert load.failures() == []  # slow, but every request answered
    assert set(load.versions(started_after=done)) == {champion}
    assert _champion(service) == champion


def test_candidate_degraded_after_promotion_is_rolled_back_by_the_live_watch(
    service: ModelService, artifacts: Path
) -> None:
    champion = _champion(service)
    degrading = make_artifact(artifacts, "v204", 204.0, predict_sleep_s=0.3, slow_after_s=2.0)
    rollout = RolloutSpec(watch="15s", min_requests=5, max_p99_ms=150)
    with Load(service.url) as load:
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(SwapError, match="live watch after promotion: p99 latency") as info:
            service.swap(204, degrading, rollout=rollout)
        done = time.monotonic()
        time.sleep(0.5)
    report = info.value.report
    show("degraded after promotion rolled back (watch)", report, load)
    assert report.rolled_back and report.version == champion and report.candidate == 204
    assert report.watch is not None and report.watch.rolled_back and report.watch.watch_s < 14
    assert load.failures() == []
    assert load.versions(started_after=started, ended_before=done)[204] > 0  # it did serve, then went back
    assert set(load.versions(started_after=done)) == {champion}
    board = service.status().board
    assert board is not None and board.active is not None and board.active.version == champion
    assert board.watching is None


def test_canary_without_enough_requests_fails(service: ModelService, artifacts: Path) -> None:
    champion = _champion(service)
    good = make_artifact(artifacts, "v205", 205.0)
    rollout = RolloutSpec(canary_percent=50, observe="1s", min_requests=50)
    with pytest.raises(SwapError, match="only 0 requests during the canary") as info:
        service.swap(205, good, rollout=rollout)
    assert info.value.report.version == champion and info.value.report.rolled_back
    assert _champion(service) == champion


def test_shadow_mirrors_requests_and_clients_get_only_the_champion(
    service: ModelService, artifacts: Path
) -> None:
    champion = _champion(service)
    candidate = make_artifact(artifacts, "v206", 206.0)
    rollout = RolloutSpec(shadow_percent=50, observe="3s", min_requests=5)
    before = service.figures().get(206)
    assert before is None
    with Load(service.url) as load:
        time.sleep(0.3)
        started = time.monotonic()
        report = service.swap(206, candidate, rollout=rollout)
        done = time.monotonic()
        time.sleep(0.3)
    show("shadow then promoted", report, load)
    assert report.canary is not None and report.canary.shadow_percent == 50 and report.canary.requests >= 5
    assert report.version == 206 and not report.rolled_back
    assert load.failures() == []
    # while mirrored (until the flip, just before the call returned) clients only got the champion's answer
    observed = load.versions(started_after=started, ended_before=done - 0.5)
    assert set(observed) == {champion} and observed[champion] > 0
    figures = service.figures()
    assert figures[206].requests >= report.canary.requests and figures[206].p99_ms is not None


def test_model_endpoint_input_gets_4xx_never_5xx(service: ModelService, artifacts: Path) -> None:
    url = service.url
    cases: list[tuple[str, bytes, int, str]] = [
        ("oversized", json.dumps({"rows": [{"x": 1.0, "y": "a" * 5000}]}).encode(), 413, "limit is 4096 bytes"),
        ("too many rows", json.dumps({"rows": [{"x": 1.0, "y": "a"}] * 21}).encode(), 422, "limit is 20 rows"),
        ("malformed", b'{"rows": [', 400, "not valid JSON"),
        ("missing feature", json.dumps({"rows": [{"x": 1.0}]}).encode(), 422, 'feature column "y"'),
        ("mistyped feature", json.dumps({"rows": [{"x": "abc", "y": "a"}]}).encode(), 422, 'column "x"'),
        ("mixed types", json.dumps({"rows": [{"x": 1.0, "y": "a"}, {"x": "b", "y": "a"}]}).encode(), 422, '"x"'),
    ]
    for name, body, status, expected in cases:
        response = requests.post(url, data=body, timeout=10)
        assert response.status_code == status, (name, response.status_code, response.text)
        assert expected in response.json()["message"], (name, response.json())
    ok = requests.post(url, json={"rows": [{"x": 1, "y": "a", "extra": True}]}, timeout=10)
    assert ok.status_code == 200, ok.text  # ints stand for doubles; extra columns are ignored


def test_model_that_reads_a_missing_column_gets_422_and_nan_gets_502(
    service: ModelService, artifacts: Path, ray_services: Any
) -> None:
    champion = _champion(service)
    spec = ServeSpec(app=APP, replicas=2, num_cpus=0.25, replica_memory_mb=64)
    plain = ModelService(APP, spec, ENTRYPOINT, CODE_URI, http_port=ray_services.serve_port, policy=POLICY)
    reads_z = make_artifact(artifacts, "v207", 207.0, features=["x", "z"])
    try:
        assert plain.deploy() is True  # no input schema: the replicas roll, still serving the champion
        plain.swap(207, reads_z)
        response = requests.post(plain.url, json={"rows": ROWS}, timeout=10)
        assert response.status_code == 422 and 'feature column "z"' in response.json()["message"]
        plain.swap(208, make_artifact(artifacts, "v208", float("inf")))
        response = requests.post(plain.url, json={"rows": ROWS}, timeout=10)
        assert response.status_code == 502 and "non-finite prediction" in response.json()["message"]
        figures = _figures_of(plain, 208)  # replicas send figures with their heartbeat (about once a second)
        assert figures[208].model_errors >= 1 and figures[207].model_errors == 0
        assert figures[207].client_errors >= 1
    finally:
        service.deploy()  # back to the schema-checking replicas
        service.swap(champion, str(artifacts / f"v{champion}"))


def test_replica_that_cannot_load_the_active_version_retries_with_backoff(
    service: ModelService, artifacts: Path, ray_services: Any
) -> None:
    folder = Path(make_artifact(artifacts, "v209", 209.0))
    service.swap(209, str(folder))
    (folder / "fail_load.txt").write_text("disk not mounted yet")  # the next load of v209 fails
    write_manifest(folder, version="v209")
    spec = ServeSpec(app=APP, replicas=3, num_cpus=0.25, replica_memory_mb=64)
    bigger = ModelService(APP, spec, ENTRYPOINT, CODE_URI, http_port=ray_services.serve_port, input_schema=SCHEMA,
                          policy=POLICY)
    try:
        with pytest.raises(ServiceError, match="did not have 3 live replicas"):
            bigger.deploy(timeout_s=6)
        board = bigger.status().board
        assert board is not None
        # The redeploy restarts every replica (the deploy fingerprint is an init argument): none can load v209.
        failing = [r for r in board.live() if 209 in r.failures]
        assert failing and len(failing) == len(board.live()), board.replicas
        for replica in failing:
            failure = replica.failures[209]
            assert failure.attempts >= 2 and failure.retry_in_s is not None and failure.retry_in_s >= 2
            assert "disk not mounted yet" in failure.reason
        (folder / "fail_load.txt").unlink()  # the cause goes away: the next retry loads it
        write_manifest(folder, version="v209")
        deadline = time.monotonic() + 45  # the backoff is at most 16 s by now
        while time.monotonic() < deadline:
            board = bigger.status().board
            if board is not None and board.active is not None and board.serving(board.active, 3):
                break
            time.sleep(0.5)
        assert board is not None and len(board.live()) == 3 and all(r.active == 209 for r in board.live())
        assert all(not r.failures for r in board.live())
    finally:
        service.deploy()
