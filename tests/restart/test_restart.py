"""Against a real ``streamtune up`` (local broker, detached Ray head with token auth, a controller daemon with
its API) on ports of its own:

- the remote SDK and the CLI, with a token: submit, publish, wait, promote, rollback, run now;
- 401 for a missing and a wrong token on the API and on a model endpoint;
- serving rebuilt from the registry after ``streamtune down`` then ``up``, and after the version board actor
  is killed under load: the champion is back in service with no retrain.
"""

from __future__ import annotations

import json
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
            "STREAMTUNE_SERVE_PORT": str(_free_port()), "STREAMTUNE_API_PORT": str(_free_port()),
            "STREAMTUNE_LEASE_TTL": "3",
            "STREAMTUNE_RECONCILE_INTERVAL": "1", "STREAMTUNE_RAY_NUM_CPUS": "2",
        }
        for name in ("STREAMTUNE_KAFKA_BOOTSTRAP", "STREAMTUNE_RAY_ADDRESS", "STREAMTUNE_REGISTRY_URL",
                     "STREAMTUNE_URL", "STREAMTUNE_TOKEN", "STREAMTUNE_AUTH",
                     "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN"):  # set in this process for an earlier stack's Ray
            self.env.pop(name, None)
        fields = {k.removeprefix("STREAMTUNE_").lower(): v for k, v in self.env.items() if k.startswith("STREAMTUNE_")}
        self.settings = Settings.model_validate({k: v for k, v in fields.items() if k in Settings.model_fields})
        self.home = home

    def cli(self, *args: str, timeout: float = 240, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "streamtune.cli", *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"streamtune {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    @property
    def token(self) -> str:
        return (self.home / "api_token").read_text().strip()

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.token}"}

    def client(self) -> Client:
        """A remote client: the API and a token only (it never opens the registry or joins Ray)."""
        return Client(self.settings.api_url, token=self.token)

    def controller_log(self) -> str:
        return (self.home / "logs" / "controller.log").read_text(errors="replace")


def _wait_answer(stack: Stack, url: str, version: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            response = requests.post(url, json={"rows": [ROW]}, headers=stack.auth(), timeout=5)
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
    submitted = client.submit(spec, reason="restart test")
    assert submitted.actor == "operator" and "/code/" in submitted.command.spec.job.code_uri  # the code was shipped
    seen: list[str] = []
    run = _train(stack, client, spec, drift=0.0, seed=5, on_change=lambda r: seen.append(r.status.value))
    assert run.status is RunStatus.PROMOTED, run.error
    assert seen[-1] == "promoted" and len(seen) >= 2, seen  # wait() reported progress
    _wait_answer(stack, stack.settings.serve_url(spec.serve.app), 1, 10)
    client.close()
    return spec


def _train(stack: Stack, client: Client, spec: JobSpec, *, drift: float, seed: int, on_change=None):
    uris = write_batch(stack.home / "data" / f"batch-{seed}", files=2, rows_per_file=600, drift=drift, seed=seed)
    events = [DataArrival(dataset="sales", uris=[u], num_rows=600) for u in uris]
    client.publish(events, spec.trigger.topic)
    return client.wait(event_ids=[e.event_id for e in events], timeout_s=300, on_change=on_change)


def test_remote_sdk_and_cli_with_a_token_promote_rollback_and_run_now(stack: Stack, champion: JobSpec) -> None:
    remote = json.loads(stack.cli("token", "create", "remote-user", "--json"))
    client = Client(stack.settings.api_url, token=remote["token"])
    run2 = _train(stack, client, champion, drift=1.0, seed=6)
    assert run2.status is RunStatus.PROMOTED and run2.model_version == 2, run2.error
    assert client.predict(champion.name, [ROW]).version == 2
    back = client.rollback(champion.name, reason="p99 regressed")
    assert (back.actor, back.outcome.version) == ("remote-user", 1) and back.outcome.swap.flip_s < 1.0
    env = {"STREAMTUNE_URL": stack.settings.api_url, "STREAMTUNE_TOKEN": remote["token"]}
    promoted = json.loads(stack.cli("promote", champion.name, "2", "--reason", "fixed", "--json", env=env))
    assert (promoted["actor"], promoted["outcome"]["version"]) == ("remote-user", 2)
    assert client.predict(champion.name, [ROW]).version == 2
    manual = json.loads(stack.cli("run-now", champion.name, "--json", env=env))
    run = client.wait(manual["outcome"]["run_id"], timeout_s=300)
    assert run.reason == "manual" and run.status in (RunStatus.PROMOTED, RunStatus.REJECTED), run.error
    history = client.alias_history(champion.name, "champion")
    assert "rollback by remote-user: p99 regressed" in [e.reason for e in history]
    client.close()


def test_a_missing_or_wrong_token_gets_401_on_the_api_and_on_the_model_endpoint(
    stack: Stack, champion: JobSpec
) -> None:
    serve_url = stack.settings.serve_url(champion.serve.app)
    for url, body in ((f"{stack.settings.api_url}/v1/runs", None), (serve_url, {"rows": [ROW]})):
        for headers in ({}, stack.auth("st_wrong")):
            response = requests.request("POST" if body else "GET", url, json=body, headers=headers, timeout=10)
            assert response.status_code == 401 and response.json() == {"message": "unauthorized"}, (url, headers)
    assert requests.post(serve_url, json={"rows": [ROW]}, headers=stack.auth(), timeout=10).status_code == 200
    revoked = json.loads(stack.cli("token", "create", "short-lived", "--json"))["token"]
    stack.cli("token", "revoke", "short-lived")
    deadline = time.monotonic() + 15  # the controller pushes the revocation to every replica
    while requests.post(serve_url, json={"rows": [ROW]}, headers=stack.auth(revoked), timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still reaches the model"
        time.sleep(0.5)


def test_down_then_up_brings_the_champion_back_without_retraining(stack: Stack, champion: JobSpec) -> None:
    client = stack.client()
    runs_before = [(r.run_id, r.status) for r in client.runs()]
    models_before = [m.version for m in client.models()]
    version = client.champion(champion.name).version
    client.close()
    stack.cli("down")
    stack.cli("up")
    started = time.monotonic()
    body = _wait_answer(stack, stack.settings.serve_url(champion.serve.app), version)
    print(f"\n[down/up] v{body['version']} serving {time.monotonic() - started:.1f}s after `streamtune up` returned")
    client = stack.client()
    assert [(r.run_id, r.status) for r in client.runs()] == runs_before, "something retrained"
    assert [m.version for m in client.models()] == models_before
    assert client.status().controller.active
    _wait_log(stack, f"reconciled to v{version}: deployed")
    client.close()


def test_killing_the_board_under_load_drops_nothing_and_the_board_comes_back(
    stack: Stack, champion: JobSpec
) -> None:
    from streamtune.runtime.ray import NAMESPACE, join_ray

    join_ray(stack.settings)  # before `import ray`: it turns on the token auth that `ray start` enabled
    import ray

    client = stack.client()
    version = client.champion(champion.name).version
    client.close()
    url = stack.settings.serve_url(champion.serve.app)
    results: list[tuple[int, object]] = []
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(url, json={"rows": [ROW]}, headers=stack.auth(), timeout=10)
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
            if snapshot.active is not None and snapshot.active.version == version and len(snapshot.live_replicas) == 2:
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
    print(f"\n[board kill] board back with v{version} on 2 replicas {back_s:.1f}s after the kill; "
          f"{len(results)} requests, {len(failed)} failed")
    assert failed == [] and {v for _, v in results} == {version} and len(results) > 20
    _wait_log(stack, f"reconciled to v{version}: board_recreated")
