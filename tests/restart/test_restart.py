"""Serving rebuilt from the registry after the cluster goes away: ``streamtune down`` then ``up``, and the
version board actor killed under load. Both must bring the champion back into service with no retrain.

A real ``streamtune up`` (local broker, detached Ray head, controller daemon) on ports of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.dev.synthetic import write_batch

ROOT = Path(__file__).resolve().parents[2]
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}


def _free_port(*, pair: bool = False) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


class Stack:
    """``streamtune up`` / ``down`` in a home of its own, driven through the CLI as a user would."""

    def __init__(self, home: Path) -> None:
        self.env = {
            **os.environ, "STREAMTUNE_HOME": str(home), "STREAMTUNE_KAFKA_PORT": str(_free_port(pair=True)),
            "STREAMTUNE_RAY_PORT": str(_free_port()), "STREAMTUNE_DASHBOARD_PORT": str(_free_port()),
            "STREAMTUNE_SERVE_PORT": str(_free_port()), "STREAMTUNE_LEASE_TTL": "3",
            "STREAMTUNE_RECONCILE_INTERVAL": "1", "STREAMTUNE_RAY_NUM_CPUS": "2",
        }
        for name in ("STREAMTUNE_KAFKA_BOOTSTRAP", "STREAMTUNE_RAY_ADDRESS", "STREAMTUNE_REGISTRY_URL"):
            self.env.pop(name, None)
        fields = {k.removeprefix("STREAMTUNE_").lower(): v for k, v in self.env.items() if k.startswith("STREAMTUNE_")}
        self.settings = Settings.model_validate({k: v for k, v in fields.items() if k in Settings.model_fields})
        self.home = home

    def cli(self, *args: str, timeout: float = 240) -> str:
        done = subprocess.run([sys.executable, "-m", "streamtune.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"streamtune {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def client(self) -> Client:
        return Client(self.settings)

    def controller_log(self) -> str:
        return (self.home / "logs" / "controller.log").read_text(errors="replace")


def _wait_answer(url: str, version: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            response = requests.post(url, json={"rows": [ROW]}, timeout=5)
            last = (response.status_code, response.text[:200])
            if response.status_code == 200 and response.json()["version"] == version:
                return response.json()
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered with v{version}; last: {last}")


def _wait_log(stack: Stack, text: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in stack.controller_log():
        assert time.monotonic() < deadline, f"{text!r} not in the controller log:\n{stack.controller_log()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    s = Stack(tmp_path_factory.mktemp("restart-home"))
    s.cli("up")
    try:
        yield s
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([sys.executable, "-m", "streamtune.cli", "down"], env=s.env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def champion(stack: Stack) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(base_dir=str(ROOT / "configs"))
    data["trigger"].update(min_rows=1000)
    data["sweep"].update(num_samples=3)
    spec = JobSpec.parse(data)
    client = stack.client()
    client.submit(spec, reason="restart test")
    uris = write_batch(stack.home / "data", files=2, rows_per_file=600, drift=0.0, seed=5)
    events = [DataArrival(dataset="sales", uris=[u], num_rows=600) for u in uris]
    client.publish(events, spec.trigger.topic)
    run = client.wait(event_ids=[e.event_id for e in events], timeout_s=300)
    assert run.status is RunStatus.PROMOTED, run.error
    _wait_answer(stack.settings.serve_url(spec.serve.app), 1, 10)
    client.close()
    return spec


def test_down_then_up_brings_the_champion_back_without_retraining(stack: Stack, champion: JobSpec) -> None:
    client = stack.client()
    runs_before = [(r.run_id, r.status) for r in client.runs()]
    client.close()
    stack.cli("down")
    stack.cli("up")
    started = time.monotonic()
    body = _wait_answer(stack.settings.serve_url(champion.serve.app), 1)
    print(f"\n[down/up] v{body['version']} serving {time.monotonic() - started:.1f}s after `streamtune up` returned")
    client = stack.client()
    assert [(r.run_id, r.status) for r in client.runs()] == runs_before, "something retrained"
    assert [m.version for m in client.models()] == [1]
    assert client.status().controller.active
    _wait_log(stack, "reconciled to v1: deployed")
    client.close()


def test_killing_the_board_under_load_drops_nothing_and_the_board_comes_back(
    stack: Stack, champion: JobSpec
) -> None:
    from streamtune.runtime.ray import NAMESPACE, join_ray

    join_ray(stack.settings)  # before `import ray`: it turns on the token auth that `ray start` enabled
    import ray

    url = stack.settings.serve_url(champion.serve.app)
    results: list[tuple[int, object]] = []
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(url, json={"rows": [ROW]}, timeout=10)
                results.append((response.status_code, response.json().get("version")))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    board = ray.get_actor(f"streamtune-board-{champion.serve.app}", namespace=NAMESPACE)
    ray.kill(board, no_restart=True)
    killed = time.monotonic()
    while True:
        try:
            board = ray.get_actor(f"streamtune-board-{champion.serve.app}", namespace=NAMESPACE)
            snapshot = ray.get(board.snapshot.remote())
            if snapshot.active is not None and snapshot.active.version == 1 and len(snapshot.live_replicas) == 2:
                break
        except ValueError:
            pass
        assert time.monotonic() - killed < 60, "the board was not recreated"
        time.sleep(0.2)
    back_s = time.monotonic() - killed
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    failed = [r for r in results if r[0] != 200]
    print(f"\n[board kill] board back with v1 on 2 replicas {back_s:.1f}s after the kill; "
          f"{len(results)} requests, {len(failed)} failed")
    assert failed == [] and {v for _, v in results} == {1} and len(results) > 20
    _wait_log(stack, "reconciled to v1: board_recreated")
