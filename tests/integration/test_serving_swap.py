"""In-place hot-swap on a real local Ray Serve: real HTTP requests keep flowing while versions change.

The job code (``tests/assets/testjobs/testjobs``) reaches the replicas only through runtime_env py_modules;
this process never puts it on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from fixtures_ray import stored_code
from streamtune.artifacts import stored_manifest_sha256
from streamtune.config.jobspec import RolloutSpec, ServeSpec
from streamtune.errors import SwapError
from streamtune.registry import open_registry
from streamtune.registry.manifest import write_manifest
from streamtune.serving import ModelService, SwapReport

pytestmark = pytest.mark.integration

CODE_DIR = Path(__file__).resolve().parents[1] / "assets" / "testjobs" / "testjobs"
CODE_URI = stored_code(CODE_DIR, Path(tempfile.mkdtemp(prefix="testjobs-code-")))  # as submit stores it
ENTRYPOINT = "testjobs.const_job:ConstJob"
APP = "swaptest"
ROWS = [{"x": 1.0, "y": "a"}, {"x": 2.0, "y": "b"}]


def _const_job_module() -> Any:
    # Loaded by file under another name: the driver must not get `testjobs` importable by accident.
    spec = importlib.util.spec_from_file_location("_const_job_for_tests", CODE_DIR / "const_job.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_artifact(root: Path, name: str, value: Any, **options: Any) -> str:
    folder = root / name
    _const_job_module().write_artifact(folder, value, **options)
    write_manifest(folder, version=name)
    return str(folder)


class Load:
    """Client threads POSTing real HTTP requests until stopped (and never longer than ``max_s``)."""

    def __init__(self, url: str, threads: int = 4, max_s: float = 30.0) -> None:
        self.url = url
        self.max_s = max_s
        self.records: list[tuple[float, float, int, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = session.post(self.url, json={"rows": ROWS}, timeout=10)
                status = response.status_code
                version = response.json().get("version")
                assert status != 200 or response.headers["x-model-version"] == str(version)
            except Exception as exc:  # counted as a failure below
                status, version = -1, repr(exc)
            with self._lock:
                self.records.append((started, time.monotonic(), status, version))

    def failures(self) -> list[tuple[float, float, int, Any]]:
        return [r for r in self.records if r[2] != 200]

    def versions(self, *, started_after: float = 0.0, ended_before: float = float("inf")) -> Counter:
        return Counter(r[3] for r in self.records if r[0] >= started_after and r[1] <= ended_before)


def show(label: str, report: SwapReport, load: Load | None = None) -> None:
    extra = {} if load is None else {"requests": len(load.records), "failures": len(load.failures())}
    print(f"\n[{label}] {json.dumps({**report.model_dump(), **extra})}")


@pytest.fixture(scope="module")
def service(ray_services: Any) -> Any:
    spec = ServeSpec(app=APP, replicas=2, num_cpus=0.25)
    svc = ModelService(APP, spec, ENTRYPOINT, CODE_URI, http_port=ray_services.serve_port)
    svc.deploy()
    yield svc
    svc.delete()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


def test_job_code_is_not_on_the_drivers_path() -> None:
    assert importlib.util.find_spec("testjobs") is None


def test_before_any_swap_answers_503_and_names_bad_bodies(service: ModelService) -> None:
    board = service.status().board
    assert board is not None
    replicas = board.live_replicas
    assert service.deploy() is False  # idempotent: a second call leaves the replicas alone
    again = service.status().board
    assert again is not None and again.live_replicas == replicas and len(replicas) == 2
    assert again.board_id == board.board_id
    response = requests.post(service.url, json={"rows": ROWS}, timeout=10)
    assert response.status_code == 503
    assert "no model loaded" in response.json()["message"]
    cases = [
        (b"not json", "not valid JSON"),
        (json.dumps({"data": []}).encode(), '"rows" list'),
        (json.dumps({"rows": []}).encode(), "non-empty"),
        (json.dumps({"rows": [1]}).encode(), '"rows"[0]'),
    ]
    for body, expected in cases:
        response = requests.post(service.url, data=body, timeout=10)
        assert response.status_code == 400, body
        assert expected in response.json()["message"]


def test_hot_swap_under_load_drops_nothing(service: ModelService, artifacts: Path) -> None:
    first = service.swap(1, make_artifact(artifacts, "v1", 1.0))
    show("swap v1 (cold)", first)
    assert (first.version, first.previous, first.replicas) == (1, None, 2)
    answer = service.predict(ROWS)
    assert answer == {"version": 1, "predictions": [1.0, 1.0]}

    slow = make_artifact(artifacts, "v2", 2.0, load_sleep_s=1.5)
    with Load(service.url) as load:
        time.sleep(0.8)
        swap_started = time.monotonic()
        report = service.swap(2, slow)
        swap_done = time.monotonic()
        time.sleep(1.0)
    show("swap v1->v2 under load", report, load)
    assert load.failures() == []
    assert load.versions(ended_before=swap_started) == Counter(
        {1: load.versions(ended_before=swap_started)[1]}
    )
    # v1 kept answering while v2 loaded (the load alone takes 1.5 s).
    assert load.versions(started_after=swap_started + 0.3, ended_before=swap_started + 1.3)[1] > 0
    after = load.versions(started_after=swap_done)
    assert set(after) == {2} and after[2] > 0
    assert (report.version, report.previous, report.replicas) == (2, 1, 2)
    assert report.load_s >= 1.4
    assert report.flip_s < 0.5


def test_rollback_flips_back_without_loading(service: ModelService) -> None:
    with Load(service.url) as load:
        time.sleep(0.5)
        report = service.rollback()
        done = time.monotonic()
        time.sleep(0.8)
    show("rollback v2->v1 under load", report, load)
    assert load.failures() == []
    assert set(load.versions(started_after=done)) == {1}
    assert (report.version, report.previous, report.rolled_back) == (1, 2, True)
    assert report.load_s < 0.5  # v1 was still loaded
    assert report.flip_s < 0.5


def test_tampered_artifact_is_refused_and_current_keeps_serving(
    service: ModelService, artifacts: Path
) -> None:
    folder = Path(make_artifact(artifacts, "v3", 3.0))
    (folder / "value.json").write_text("666")
    with pytest.raises(SwapError, match="does not match its manifest"):
        service.swap(3, str(folder), timeout_s=60)
    assert service.predict(ROWS)["version"] == 1
    board = service.status().board
    assert board is not None and board.active is not None
    assert board.active.version == 1 and board.target is None
    assert board.last_swap is not None and board.last_swap.aborted == "load failed"
    assert board.last_swap.failure is not None and "manifest" in board.last_swap.failure.reason


def test_registered_artifact_changed_with_a_regenerated_manifest_is_refused_under_load(
    service: ModelService, artifacts: Path, tmp_path: Path
) -> None:
    folder = Path(make_artifact(artifacts, "v30", 30.0))
    with open_registry(f"sqlite:///{tmp_path}/registry.db") as registry:  # registration records the digest
        registered = registry.register_model(APP, "r-30", str(folder), {}, {}, {},
                                             manifest_sha256=stored_manifest_sha256(str(folder)))
        (folder / "value.json").write_text("666")  # new weights, and a manifest that matches them again
        write_manifest(folder, version="v30")
        forged = stored_manifest_sha256(str(folder))
        model = registry.get_model(APP, registered.version)
    assert model is not None and model.manifest_sha256 == registered.manifest_sha256 != forged
    with Load(service.url) as load:
        time.sleep(0.5)
        with pytest.raises(SwapError) as info:
            service.swap(30, model.artifact_uri, timeout_s=60, manifest_sha256=model.manifest_sha256)
        done = time.monotonic()
        time.sleep(0.5)
    print(f"\n[forged manifest refused under load] requests={len(load.records)} failures={len(load.failures())}")
    headline = info.value.headline
    assert f"app {APP} version 30 refused: its MANIFEST.json has sha256 {forged}" in headline
    assert f"the registry recorded {model.manifest_sha256}" in headline and "version 1 keeps serving" in headline
    assert load.failures() == [] and len(load.records) > 0
    assert set(load.versions()) == {1} and set(load.versions(started_after=done)) == {1}
    board = service.status().board
    assert board is not None and board.active is not None and board.active.version == 1
    assert board.target is None and board.last_swap is not None and board.last_swap.aborted == "load failed"


def test_failing_load_is_refused_with_the_replicas_reason(service: ModelService, artifacts: Path) -> None:
    broken = make_artifact(artifacts, "v4", 4.0, fail_load="weights are corrupt")
    with pytest.raises(SwapError, match="weights are corrupt") as info:
        service.swap(4, broken, timeout_s=60)
    assert "version 1 keeps serving" in info.value.headline
    assert service.predict(ROWS)["version"] == 1


def test_canary_with_failing_candidate_rolls_back(service: ModelService, artifacts: Path) -> None:
    bad = make_artifact(artifacts, "v5", 5.0, fail_predict="NaN in layer 3")
    rollout = RolloutSpec(canary_percent=50, observe="4s", max_error_rate=0.05)
    with Load(service.url) as load:
        time.sleep(0.3)
        with pytest.raises(SwapError, match="Canary of version 5") as info:
            service.swap(5, bad, rollout=rollout)
        done = time.monotonic()
        time.sleep(0.8)
    report = info.value.report
    show("canary v5 rolled back", report, load)
    assert report.rolled_back and report.canary is not None and report.canary.errors > 0
    assert {r[3] for r in load.failures()} == {5}  # only the candidate's canary share failed
    assert set(load.versions(started_after=done)) == {1}
    assert all(r[2] == 200 for r in load.records if r[0] >= done)
    board = service.status().board
    assert board is not None and board.active is not None and board.active.version == 1


def test_canary_with_good_candidate_promotes(service: ModelService, artifacts: Path) -> None:
    good = make_artifact(artifacts, "v6", 6.0)
    rollout = RolloutSpec(canary_percent=50, observe="1.5s", max_error_rate=0.05)
    with Load(service.url) as load:
        time.sleep(0.3)
        report = service.swap(6, good, rollout=rollout)
        done = time.monotonic()
        time.sleep(0.5)
    show("canary v6 promoted", report, load)
    assert load.failures() == []
    assert report.canary is not None and report.canary.requests > 0 and report.canary.errors == 0
    assert set(load.versions(started_after=done)) == {6}
    status = service.status()
    assert status.serve_status == "RUNNING" and status.board is not None
    assert len(status.board.live_replicas) == 2
    for replica in status.board.live():
        assert replica.active == 6 and {1, 6} <= set(replica.loaded)
    assert status.board.counters[6].requests > 0


def test_scaling_up_warm_starts_new_replicas_on_the_active_version(
    service: ModelService, ray_services: Any
) -> None:
    spec = ServeSpec(app=APP, replicas=3, num_cpus=0.25)
    bigger = ModelService(APP, spec, ENTRYPOINT, CODE_URI, http_port=ray_services.serve_port)
    with Load(service.url) as load:
        bigger.deploy()
        time.sleep(0.5)
    print(f"\n[scale 2->3 under load] requests={len(load.records)} failures={len(load.failures())}")
    assert load.failures() == []
    assert set(load.versions()) == {6}
    board = bigger.status().board
    assert board is not None and len(board.live_replicas) == 3
    assert all(replica.active == 6 for replica in board.live())
