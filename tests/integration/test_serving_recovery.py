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
from test_serving_swap import CODE_DIR, CODE_URI, ENTRYPOINT, ROWS, Load, make_artifact

from streamtune.config.jobspec import JobSpec, ServeSpec
from streamtune.errors import FencedError, SwapError
from streamtune.serving import BoardSnapshot, ModelRef, ModelService, ServeHub, StaleFenceError
from streamtune.serving.board import NAMESPACE, board_name
from streamtune.serving.swaps import BoardClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recovery-artifacts")


def _service(ray_services: Any, app: str, replicas: int = 2, fence: int = 0) -> ModelService:
    spec = ServeSpec(app=app, replicas=replicas, num_cpus=0.25)
    return ModelService(app, spec, ENTRYPOINT, CODE_URI, http_port=ray_services.serve_port, fence=fence)


def _ref(artifacts: Path, app: str, version: int, **options: Any) -> ModelRef:
    """A ConstJob artifact answering ``version``, in a folder of its own per app."""
    uri = make_artifact(artifacts, f"{app}-v{version}", float(version), **options)
    return ModelRef(version=version, uri=uri)


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


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; its result (or exception) lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # reported by the caller's assertion
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _all_on(observer: ModelService, version: int, replicas: int) -> bool:
    """Serve runs ``replicas`` replicas, each is live on the board, and each serves ``version``."""
    alive = _replica_actors(observer.app)
    board = _board(observer)
    return (
        _running_replicas(observer.app) == replicas
        and len(alive) == replicas
        and set(board.live_replicas) == set(alive)
        and all(r.active == version for r in board.live())
    )


def test_replica_killed_mid_swap_comes_back_on_the_new_version(ray_services: Any, artifacts: Path) -> None:
    app = "recover-kill"
    svc = _service(ray_services, app)
    observer = _service(ray_services, app)  # status from this thread while the swap runs in another
    try:
        svc.deploy(desired=_ref(artifacts, app, 1))
        slow = _ref(artifacts, app, 2, load_sleep_s=3.0)
        thread, outcome = _in_thread(lambda: svc.swap(slow.version, slow.uri, timeout_s=90))
        _wait_for("a replica loading v2", lambda: any(2 in r.loading for r in _board(observer).live()), 20)
        loading = {rid for rid, r in _board(observer).replicas.items() if 2 in r.loading}
        victim_id, victim = next((rid, a) for rid, a in _replica_actors(app).items() if rid in loading)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim.name, namespace=victim.ray_namespace), no_restart=True)
        thread.join(120)
        assert "error" not in outcome, outcome.get("error")
        report = outcome["result"]
        print(f"\n[swap with a replica killed while loading] {report.model_dump_json()}")
        assert (report.version, report.previous) == (2, 1)

        waited = _wait_for("Serve to replace the replica, on v2", lambda: _all_on(observer, 2, 2), 90)
        print(f"[replica replaced, on v2] {time.monotonic() - killed_at:.1f}s after the kill (waited {waited:.1f}s)")
        board = _board(observer)
        assert victim_id not in board.live_replicas
        assert board.active == slow and board.target is None
        assert _answers(svc) == {2}
    finally:
        svc.delete()


def test_killed_board_keeps_serving_and_ensure_recreates_it(ray_services: Any, artifacts: Path) -> None:
    app = "recover-board"
    svc = _service(ray_services, app)
    try:
        v1 = _ref(artifacts, app, 1)
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

        v2 = _ref(artifacts, app, 2)
        report = svc.swap(v2.version, v2.uri)
        assert (report.version, report.previous, report.replicas) == (2, 1, 2)
        assert _answers(svc) == {2}
    finally:
        svc.delete()


def test_replica_started_without_a_board_runs_and_joins_the_new_board(ray_services: Any, artifacts: Path) -> None:
    app = "recover-noboard"
    svc = _service(ray_services, app, replicas=1)
    try:
        v1 = _ref(artifacts, app, 1)
        svc.deploy(desired=v1)
        ray.kill(ray.get_actor(board_name(app), namespace=NAMESPACE))
        (old_id, old), = _replica_actors(app).items()
        ray.kill(ray.get_actor(old.name, namespace=old.ray_namespace), no_restart=True)

        def replaced() -> bool:
            alive = _replica_actors(app)
            return _running_replicas(app) == 1 and len(alive) == 1 and old_id not in alive

        waited = _wait_for("Serve to start a replica with no board", replaced, 90)
        response = requests.post(svc.url, json={"rows": ROWS}, timeout=10)
        print(f"\n[replica started without a board] after {waited:.1f}s; it answers {response.status_code}")
        # It cannot know the access policy without its board: it refuses rather than serve unchecked.
        assert response.status_code == 503 and "not reached its version board" in response.json()["message"]
        result = svc.ensure(v1)
        assert result.action == "board_recreated", result.detail
        assert _all_on(svc, 1, 1)
        assert _answers(svc, 5) == {1}
    finally:
        svc.delete()


def test_stale_fence_is_refused_and_serving_is_unchanged(ray_services: Any, artifacts: Path) -> None:
    app = "recover-fence"
    leader = _service(ray_services, app, fence=5)
    try:
        leader.deploy()
        v1, v2 = _ref(artifacts, app, 1), _ref(artifacts, app, 2)
        leader.swap(v1.version, v1.uri)
        stale = _service(ray_services, app, fence=4)
        with pytest.raises(StaleFenceError, match="fence 4.*fence 5") as info:
            stale.swap(v2.version, v2.uri)
        assert isinstance(info.value, SwapError) and isinstance(info.value, FencedError)
        print(f"\n[stale fence] {info.value.headline}")
        with pytest.raises(StaleFenceError):
            stale.ensure(v2)
        board = _board(leader)
        assert board.active == v1 and board.target is None and board.fence == 5
        assert board.last_swap is not None and board.last_swap.version == 1
        assert _answers(leader) == {1}
    finally:
        leader.delete()


def test_ensure_leaves_its_own_swap_alone_and_takes_over_an_older_fences(
    ray_services: Any, artifacts: Path
) -> None:
    app = "recover-takeover"
    leader = _service(ray_services, app, fence=5)
    try:
        v1, v2, v3 = _ref(artifacts, app, 1), _ref(artifacts, app, 2), _ref(artifacts, app, 3)
        leader.deploy(desired=v1)
        # The leader starts a canary and dies before promoting it: the target stays loaded, never flipped.
        client = BoardClient(ray.get_actor(board_name(app), namespace=NAMESPACE), app, fence=5)
        generation = client.set_target(v2, auto_flip=False)

        def loaded() -> bool:
            record = client.record(generation)
            return record is not None and record.loaded_at is not None

        _wait_for("the canary target to load", loaded)
        assert leader.ensure(v1).action == "none"
        busy = leader.ensure(v3)
        assert busy.action == "busy" and _board(leader).target == v2 and _answers(leader) == {1}

        successor = _service(ray_services, app, fence=6)
        result = successor.ensure(v3)
        print(f"\n[takeover] {result.detail}")
        assert result.action == "swapped" and "left by fence 5" in result.detail
        assert result.report is not None and (result.report.version, result.report.previous) == (3, 1)
        record = client.record(generation)
        assert record is not None and record.aborted == "taken over by fence 6"
        board = _board(successor)
        assert board.active == v3 and board.target is None and board.fence == 6
        assert _answers(successor) == {3}
        with pytest.raises(StaleFenceError, match="fence 5.*fence 6"):
            leader.swap(v2.version, v2.uri)
    finally:
        leader.delete()


def test_deploy_with_desired_serves_it_from_the_first_request(ray_services: Any, artifacts: Path) -> None:
    app = "recover-fresh"
    svc = _service(ray_services, app)
    try:
        desired = _ref(artifacts, app, 7, load_sleep_s=1.0)
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
        desired = _ref(artifacts, app, 3)
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


def _jobspec(app: str, replicas: int) -> JobSpec:
    return JobSpec.model_validate({
        "name": app,
        "dataset": {"name": "d", "label": "y"},
        "job": {"entrypoint": ENTRYPOINT, "code": str(CODE_DIR), "code_uri": CODE_URI},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"lr": {"type": "uniform", "low": 0.1, "high": 0.2}}},
        "serve": {"app": app, "replicas": replicas, "num_cpus": 0.25},
    })


def test_hub_ensures_swaps_and_redeploys_changed_settings(ray_services: Any, artifacts: Path) -> None:
    connects: list[int] = []
    hub = ServeHub(ray_services.serve_port, connect=lambda: connects.append(1))
    hub.fence = 2
    app = "recover-hub"
    spec = _jobspec(app, replicas=1)
    bigger = spec.model_copy(update={"serve": spec.serve.model_copy(update={"replicas": 2})})
    try:
        v1, v2 = _ref(artifacts, app, 1), _ref(artifacts, app, 2)
        assert hub.service(spec) is hub.service(spec) and connects == []  # no Ray needed yet
        assert hub.ensure(spec, v1).action == "deployed"
        report = hub.swap(spec, v2)
        assert (report.version, report.previous) == (2, 1)
        assert hub.ensure(spec, v2).action == "none"
        status = hub.status(spec)
        assert status.board is not None and status.board.active == v2 and status.board.fence == 2

        result = hub.ensure(bigger, v2)  # same app, two replicas: a changed deploy
        assert result.action == "deployed", result.detail
        board = _board(hub.service(bigger))
        assert board.serving(v2, 2)
        hub.fence = 3
        assert hub.service(bigger).fence == 3
        assert hub.ensure(bigger, v1).action == "swapped" and _board(hub.service(bigger)).fence == 3
        assert connects == [1]
    finally:
        hub.service(bigger).delete()
