"""Serving recovers from a desired version: killed replicas, a killed board, stale writers, fresh deploys.

Real local Ray Serve (the session's ``ray_services``) and real HTTP; each test has its own app and deletes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
import requests
from ray import serve
from test_serving_swap import CODE_DIR, ENTRYPOINT, ROWS, Load, make_artifact

from streamtune.config.jobspec import ServeSpec
from streamtune.errors import SwapError
from streamtune.serving import BoardSnapshot, ModelRef, ModelService, StaleFenceError
from streamtune.serving.board import NAMESPACE, board_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recovery-artifacts")


def _service(ray_services: Any, app: str, replicas: int = 2, fence: int = 0) -> ModelService:
    spec = ServeSpec(app=app, replicas=replicas, num_cpus=0.25)
    return ModelService(app, spec, ENTRYPOINT, CODE_DIR, http_port=ray_services.serve_port, fence=fence)


def _ref(artifacts: Path, version: int, **options: Any) -> ModelRef:
    return ModelRef(version=version, uri=make_artifact(artifacts, f"r{version}", float(version), **options))


def _board(svc: ModelService) -> BoardSnapshot:
    board = svc.status().board
    assert board is not None
    return board


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _replica_actors(app: str) -> dict[str, Any]:
    """The app's alive Serve replica actors, by replica id (the board's ids)."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=10_000)
    found = [a for a in actors if "ServeReplica" in a.class_name and f":{app}:" in a.class_name]
    return {a.name.rsplit("#", 1)[-1]: a for a in found}


def _running_replicas(app: str) -> int:
    status = serve.status().applications.get(app)
    if status is None:
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())


def _answers(svc: ModelService, n: int = 20) -> set[Any]:
    versions = set()
    for _ in range(n):
        response = requests.post(svc.url, json={"rows": ROWS}, timeout=10)
        assert response.status_code == 200, response.text
        versions.add(response.json()["version"])
    return versions


def test_replica_killed_mid_swap_comes_back_on_the_new_version(ray_services: Any, artifacts: Path) -> None:
    app = "recover-kill"
    svc = _service(ray_services, app)
    observer = _service(ray_services, app)  # status from this thread while the swap runs in another
    try:
        svc.deploy(desired=_ref(artifacts, 1))
        slow = _ref(artifacts, 2, load_sleep_s=3.0)
        outcome: dict[str, Any] = {}

        def swap() -> None:
            try:
                outcome["report"] = svc.swap(slow.version, slow.uri, timeout_s=90)
            except Exception as exc:  # reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=swap, daemon=True)
        thread.start()
        _wait_for("a replica loading v2", lambda: any(2 in r.loading for r in _board(observer).live()), 20)
        loading = {rid for rid, r in _board(observer).replicas.items() if 2 in r.loading}
        victim = next(a for rid, a in _replica_actors(app).items() if rid in loading)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim.name, namespace=victim.ray_namespace), no_restart=True)
        thread.join(120)
        assert "error" not in outcome, outcome.get("error")
        report = outcome["report"]
        print(f"\n[swap with a replica killed while loading] {report.model_dump_json()}")
        assert (report.version, report.previous) == (2, 1)

        def recovered() -> bool:
            alive = _replica_actors(app)
            board = _board(observer)
            return (
                _running_replicas(app) == 2
                and len(alive) == 2
                and set(board.live_replicas) == set(alive)
                and all(r.active == 2 for r in board.live())
            )

        waited = _wait_for("Serve to replace the replica, on v2", recovered, 90)
        print(f"[replica replaced and on v2] {time.monotonic() - killed_at:.1f}s after the kill (waited {waited:.1f}s)")
        board = _board(observer)
        assert victim.name.rsplit("#", 1)[-1] not in board.live_replicas
        assert board.active == slow and board.target is None
        assert _answers(svc) == {2}
    finally:
        svc.delete()


def test_killed_board_keeps_serving_and_ensure_recreates_it(ray_services: Any, artifacts: Path) -> None:
    app = "recover-board"
    svc = _service(ray_services, app)
    try:
        v1 = _ref(artifacts, 1)
        svc.deploy(desired=v1)
        before = _board(svc)
        with Load(svc.url, threads=2) as load:
            time.sleep(0.5)
            ray.kill(ray.get_actor(board_name(app), namespace=NAMESPACE))
            time.sleep(3.0)  # replicas lose the board and look for it; they keep serving v1
            assert svc.status().board is None
            started = time.monotonic()
            result = svc.ensure(v1)
            ensure_s = time.monotonic() - started
            time.sleep(0.5)
        print(f"\n[board killed under load] ensure {ensure_s:.2f}s: {result.model_dump_json()} "
              f"requests={len(load.records)} failures={len(load.failures())}")
        assert load.failures() == []
        assert set(load.versions()) == {1} and len(load.records) > 20
        assert result.action == "board_recreated" and result.report is None
        board = _board(svc)
        assert board.board_id != before.board_id
        assert board.active == v1 and board.target is None and board.fence == 0
        assert set(board.live_replicas) == set(before.live_replicas)  # re-registered, not restarted
        assert all(r.active == 1 for r in board.live())

        started = time.monotonic()
        again = svc.ensure(v1)
        print(f"[ensure when all is well] {time.monotonic() - started:.3f}s")
        assert again.action == "none"

        v2 = _ref(artifacts, 2)
        report = svc.swap(v2.version, v2.uri)
        assert (report.version, report.previous, report.replicas) == (2, 1, 2)
        assert _answers(svc) == {2}
    finally:
        svc.delete()


def test_stale_fence_is_refused_and_serving_is_unchanged(ray_services: Any, artifacts: Path) -> None:
    app = "recover-fence"
    leader = _service(ray_services, app, fence=5)
    try:
        leader.deploy()
        v1, v2 = _ref(artifacts, 1), _ref(artifacts, 2)
        leader.swap(v1.version, v1.uri)
        stale = _service(ray_services, app, fence=4)
        with pytest.raises(StaleFenceError, match="fence 4.*fence 5") as info:
            stale.swap(v2.version, v2.uri)
        assert isinstance(info.value, SwapError) and "newer controller" in info.value.headline
        with pytest.raises(StaleFenceError):
            stale.ensure(v2)
        board = _board(leader)
        assert board.active == v1 and board.target is None and board.fence == 5
        assert board.last_swap is not None and board.last_swap.version == 1
        assert _answers(leader) == {1}

        leader.fence = 6  # a newer lease moves it on
        assert leader.swap(v2.version, v2.uri).version == 2
        assert _board(leader).fence == 6
    finally:
        leader.delete()


def test_deploy_with_desired_serves_it_from_the_first_request(ray_services: Any, artifacts: Path) -> None:
    app = "recover-fresh"
    svc = _service(ray_services, app)
    try:
        desired = _ref(artifacts, 7, load_sleep_s=1.0)
        started = time.monotonic()
        assert svc.deploy(desired=desired) is True
        deploy_s = time.monotonic() - started
        response = requests.post(svc.url, json={"rows": ROWS}, timeout=10)
        print(f"\n[fresh deploy with desired v7] {deploy_s:.2f}s; first answer {response.status_code}")
        assert response.status_code == 200, response.text
        assert response.json() == {"version": 7, "predictions": [7.0, 7.0]}
        board = _board(svc)
        assert board.active == desired and board.previous is None
        assert board.last_swap is not None and board.last_swap.kind == "deploy"
        assert board.serving(desired, 2)
        assert svc.ensure(desired).action == "none"
    finally:
        svc.delete()


def test_ensure_on_a_missing_app_deploys_the_desired_version(ray_services: Any, artifacts: Path) -> None:
    app = "recover-missing"
    svc = _service(ray_services, app, replicas=1)
    try:
        desired = _ref(artifacts, 3)
        assert svc.status().serve_status == "NOT_DEPLOYED"
        result = svc.ensure(desired)
        assert result.action == "deployed", result.detail
        assert svc.predict(ROWS)["version"] == 3
        serve.delete(app)  # the app goes away (e.g. someone deleted it); the board keeps the desired state
        _wait_for("the app to go", lambda: svc.status().serve_status == "NOT_DEPLOYED", 30)
        again = svc.ensure(desired)
        assert again.action == "deployed", again.detail
        assert svc.predict(ROWS)["version"] == 3
    finally:
        svc.delete()
