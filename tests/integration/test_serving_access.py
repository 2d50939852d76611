"""Model endpoints enforce the board's access policy: bearer tokens, body size and row count.

Real local Ray Serve (the session's ``ray_services``) and real HTTP; each test has its own app and deletes it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray
import requests
from test_serving_recovery import _board, _in_thread, _jobspec, _ref, _replica_actors, _service, _wait_for
from test_serving_swap import ROWS

from streamtune.errors import ServiceError
from streamtune.serving import AccessPolicy, ModelService, ServeHub
from streamtune.serving.board import NAMESPACE, board_name

pytestmark = pytest.mark.integration


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _policy(*tokens: str) -> AccessPolicy:
    return AccessPolicy(required=True, token_sha256=tuple(_sha(t) for t in tokens), max_body_bytes=2048, max_rows=5)


def _post(svc: ModelService, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kwargs.setdefault("json", {"rows": ROWS})
    return requests.post(svc.url, headers=headers, timeout=10, **kwargs)


def _statuses(svc: ModelService, token: str | None, n: int = 30) -> Counter:
    return Counter(_post(svc, token).status_code for _ in range(n))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("access-artifacts")


def test_tokens_and_request_limits_are_enforced_before_any_model_runs(ray_services: Any, artifacts: Path) -> None:
    app = "access-limits"
    svc = _service(ray_services, app)
    try:
        v1 = _ref(artifacts, app, 1)
        svc.deploy(desired=v1, policy=_policy("good"))
        assert _board(svc).policy == _policy("good")

        for token in (None, "bad", ""):
            response = _post(svc, token)
            assert (response.status_code, response.json()) == (401, {"message": "unauthorized"}), token
            assert response.headers["www-authenticate"] == "Bearer"
        basic = requests.post(svc.url, json={"rows": ROWS}, headers={"Authorization": "Basic Z29vZA=="}, timeout=10)
        assert basic.status_code == 401
        assert requests.get(svc.url, timeout=10).status_code == 401  # no method or route detail before auth
        assert _statuses(svc, "good") == Counter({200: 30})
        answer = _post(svc, "good")
        assert answer.json() == {"version": 1, "predictions": [1.0, 1.0]} and answer.headers["x-model-version"] == "1"

        big = json.dumps({"rows": [{"x": float(i), "y": "z" * 40} for i in range(60)]}).encode()
        assert len(big) > 2048
        response = _post(svc, "good", data=big, json=None)
        assert response.status_code == 413
        assert response.json() == {"message": f"request body is {len(big)} bytes; the limit is 2048 bytes"}
        assert _post(svc, None, data=big, json=None).status_code == 401  # the token first, then the size
        chunked = _post(svc, "good", data=iter([big[i:i + 512] for i in range(0, len(big), 512)]), json=None)
        assert chunked.status_code == 413 and "the limit is 2048 bytes" in chunked.json()["message"]

        six = [{"x": float(i), "y": "a"} for i in range(6)]
        response = _post(svc, "good", json={"rows": six})
        assert response.status_code == 422
        assert response.json() == {"message": "request has 6 rows; the limit is 5 rows per request"}
        assert _post(svc, "good", json={"rows": six[:5]}).json()["predictions"] == [1.0] * 5
        bad = _post(svc, "good", data=b"not json", json=None)
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]

        assert svc.predict(ROWS, token="good")["version"] == 1
        with pytest.raises(ServiceError, match="answered 401: unauthorized"):
            svc.predict(ROWS)
        print(f"\n[access limits] board policy {_board(svc).policy.model_dump_json()}")
    finally:
        svc.delete()


def test_policy_change_reaches_every_replica_without_a_redeploy(ray_services: Any, artifacts: Path) -> None:
    app = "access-rotate"
    svc = _service(ray_services, app)
    try:
        v1 = _ref(artifacts, app, 1)
        svc.deploy(desired=v1, policy=_policy("good"))
        before = _board(svc)
        actors = set(_replica_actors(app))
        assert set(before.live_replicas) == actors and len(actors) == 2
        assert _statuses(svc, "good") == Counter({200: 30})

        started = time.monotonic()
        assert svc.set_policy(_policy("other")) is True
        set_s = time.monotonic() - started

        def rotated() -> bool:
            revoked = _statuses(svc, "good", 20) == Counter({401: 20})
            return revoked and _statuses(svc, "other", 20) == Counter({200: 20})

        waited = _wait_for("every replica to take the new policy", rotated, 10)
        applied = _board(svc)
        print(f"\n[policy rotated] set_policy {set_s:.3f}s, enforced over HTTP {waited:.2f}s after it returned; "
              f"board epoch {before.epoch} -> {applied.epoch}, min applied {applied.min_applied_epoch}")
        assert waited < 2.0
        assert applied.min_applied_epoch >= applied.epoch  # every live replica applied the view carrying it
        assert set(applied.live_replicas) == actors == set(_replica_actors(app))  # no replica restarted
        assert applied.board_id == before.board_id and applied.active == v1
        assert svc.set_policy(_policy("other")) is False  # the same policy: no new epoch
        assert _board(svc).epoch == applied.epoch

        opened = AccessPolicy()
        assert svc.ensure(v1, policy=opened).action == "policy"
        _wait_for("the endpoint to open", lambda: _statuses(svc, None, 20) == Counter({200: 20}), 10)
        assert svc.ensure(v1, policy=opened).action == "none"
    finally:
        svc.delete()


class _Prober:
    """Threads POSTing without a token, and with ``token``, until stopped; they record the statuses."""

    def __init__(self, svc: ModelService, token: str) -> None:
        self.svc, self.token = svc, token
        self.anonymous: Counter = Counter()
        self.authorized: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in (None, None, token)]

    def __enter__(self) -> _Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _run(self, token: str | None) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status = session.post(self.svc.url, json={"rows": ROWS}, headers=headers, timeout=10).status_code
            except requests.RequestException:
                status = -1
            (self.authorized if token else self.anonymous)[status] += 1


def test_a_recreated_board_never_opens_the_endpoint(ray_services: Any, artifacts: Path) -> None:
    app = "access-board"
    svc = _service(ray_services, app)
    try:
        v1 = _ref(artifacts, app, 1)
        svc.deploy(desired=v1, policy=_policy("good"))
        before = _board(svc)
        with _Prober(svc, "good") as probe:
            time.sleep(0.5)
            ray.kill(ray.get_actor(board_name(app), namespace=NAMESPACE))
            time.sleep(3.0)  # replicas lose the board; they keep enforcing the last policy they saw
            assert svc.status().board is None
            started = time.monotonic()
            result = svc.ensure(v1, policy=_policy("good", "third"))
            ensure_s = time.monotonic() - started
            time.sleep(1.0)
        print(f"\n[board killed, policy kept] ensure {ensure_s:.2f}s: {result.detail}; "
              f"anonymous {dict(probe.anonymous)}, with token {dict(probe.authorized)}")
        assert result.action == "board_recreated" and "access policy set" in result.detail
        assert set(probe.anonymous) == {401} and probe.anonymous[401] > 50  # never a 200, never open
        assert set(probe.authorized) == {200} and probe.authorized[200] > 20  # and serving went on
        board = _board(svc)
        assert board.board_id != before.board_id and board.policy == _policy("good", "third")
        assert set(board.live_replicas) == set(before.live_replicas)  # re-registered, not restarted
        assert _statuses(svc, "third") == Counter({200: 30})
    finally:
        svc.delete()


def test_hub_deploys_closed_and_pushes_policy_changes(ray_services: Any, artifacts: Path) -> None:
    app = "access-hub"
    hub = ServeHub(ray_services.serve_port, connect=lambda: None, policy=_policy("good"))
    spec = _jobspec(app, replicas=1)
    svc = hub.service(spec)
    try:
        v1 = _ref(artifacts, app, 1)
        thread, outcome = _in_thread(lambda: hub.ensure(spec, v1))
        seen: Counter = Counter()
        while thread.is_alive():  # while the app comes up: never a 200 without a token
            try:
                seen[_post(svc).status_code] += 1
            except requests.RequestException:
                seen["unreachable"] += 1
            time.sleep(0.05)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].action == "deployed"
        assert 200 not in seen and _post(svc).status_code == 401 and _post(svc, "good").status_code == 200
        assert hub.set_policy(_policy("other")) == [app]
        _wait_for("the new token", lambda: _post(svc, "other").status_code == 200, 5)
        assert _post(svc, "good").status_code == 401
        assert hub.set_policy(_policy("other")) == []
        print(f"\n[hub] while deploying, tokenless requests saw {dict(seen)}")
    finally:
        svc.delete()
