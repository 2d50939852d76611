"""Two controller processes on one registry and a real Kafka broker: one active, one standby.

The active one dies at a named kill point mid-stream (``STREAMTUNE_KILL_AT``, not a random moment); the
standby must take the lease within 5 s of it lapsing, consume again within 5 s of taking it, and between
them every event must land in exactly one window: no duplicate, no lost run. A stale leader (SIGSTOPped
while the standby took over) must step down when it wakes and write nothing.

The spec is paused, so windows close into pending runs and no sweep starts: this is the ingest path under
failover, and it needs no Ray. Every test runs on both registries: a SQLite file and a PostgreSQL database
(the session's server, a fresh database per test); the controllers get it as ``STREAMTUNE_REGISTRY_URL``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from fixtures_ray import free_port
from streamtune import Client, DataArrival, JobSpec, Settings
from streamtune.api.auth import hash_token, new_token
from streamtune.registry import RunRecord, open_registry
from streamtune.registry.urls import registry_kind

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LEASE_TTL = 2.0
EVENTS = 30
ROWS = 100


def _spec(topic: str) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="failover", base_dir=str(ROOT / "configs"))
    data["trigger"].update(topic=topic, min_rows=3 * ROWS, max_wait="10m")
    data["dataset"]["uri_roots"] = ["/data/sales"]  # the events name files there (never read: the spec is paused)
    return JobSpec.parse(data)


class Cluster:
    """Controller processes sharing one STREAMTUNE_HOME (registry) and a Kafka broker."""

    def __init__(self, home: Path, bootstrap: str, registry_url: str = "") -> None:
        self.home = home
        self.topic = f"failover-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(home=home, kafka_bootstrap=bootstrap, lease_ttl=LEASE_TTL, registry_url=registry_url,
                                 consumer_group=f"g-{self.topic}", command_timeout=60)
        self.kind = registry_kind(self.settings.registry_url)
        self.env = {
            **os.environ, "STREAMTUNE_HOME": str(home), "STREAMTUNE_KAFKA_BOOTSTRAP": bootstrap,
            "STREAMTUNE_LEASE_TTL": str(LEASE_TTL), "STREAMTUNE_POLL_INTERVAL": "0.2",
            "STREAMTUNE_CONSUMER_GROUP": f"g-{self.topic}", "STREAMTUNE_DEAD_LETTER_TOPIC": f"{self.topic}.dlq",
            "STREAMTUNE_REGISTRY_URL": self.settings.registry_url,
            "STREAMTUNE_SUBMIT_CHECKS": "false",  # these controllers have no Ray: the spec is paused, ingest only
        }
        self.env.pop("STREAMTUNE_KILL_AT", None)
        self.client = Client(self.settings)
        self.registry = open_registry(self.settings.registry_url)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.api: dict[int, str] = {}

    def start(self, name: str, kill_at: str | None = None) -> subprocess.Popen[bytes]:
        port = free_port()
        env = {**self.env, "STREAMTUNE_API_PORT": str(port)}
        if kill_at:
            env["STREAMTUNE_KILL_AT"] = kill_at
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "streamtune.controller"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.api[proc.pid] = f"http://127.0.0.1:{port}"
        return proc

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def wait_active(self, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> float:
        """Wait until ``proc`` holds the lease; return the Unix time it took it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lease = self.registry.get_lease("controller")
            if lease is not None and f":{proc.pid}:" in lease.holder and not lease.expired():
                return lease.acquired_at
            assert proc.poll() is None, f"controller {proc.pid} exited with {proc.returncode}"
            time.sleep(0.05)
        raise AssertionError(f"controller {proc.pid} did not become active within {timeout_s}s")

    def stored_offset(self) -> int:
        return self.registry.load_offsets(self.settings.consumer_group).get((self.topic, 0), 0)

    def wait_offset(self, at_least: int, timeout_s: float = 60) -> float:
        deadline = time.monotonic() + timeout_s
        while self.stored_offset() < at_least:
            assert time.monotonic() < deadline, f"stored offset {self.stored_offset()} never reached {at_least}"
            time.sleep(0.02)
        return time.time()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.client.close()
        self.registry.close()


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path: Path):
    registry_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    c = Cluster(tmp_path, kafka_bootstrap, registry_url)
    yield c
    c.close()


def _publish_stream(cluster: Cluster, events: list[DataArrival], every_s: float) -> threading.Thread:
    def run() -> None:
        for event in events:
            cluster.client.publish([event], cluster.topic)
            time.sleep(every_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _events(n: int) -> list[DataArrival]:
    return [DataArrival(dataset="sales", uris=[f"/data/sales/part-{i}.parquet"], num_rows=ROWS) for i in range(n)]


def _assert_every_event_in_exactly_one_window(cluster: Cluster, events: list[DataArrival]) -> list[RunRecord]:
    runs = sorted(cluster.registry.list_runs("failover", limit=1000), key=lambda r: r.offsets[f"{cluster.topic}:0"])
    spans = [r.offsets[f"{cluster.topic}:0"] for r in runs]
    window = cluster.registry.load_windows().get("failover", {"events": []})
    open_offsets = [e["offset"] for e in window["events"]]
    covered = [o for lo, hi in spans for o in range(lo, hi + 1)] + open_offsets
    assert sorted(covered) == list(range(len(events))), f"runs {spans}, open window {open_offsets}"
    ids = [i for r in runs for i in r.event_ids] + [e["event_id"] for e in window["events"]]
    assert sorted(ids) == sorted(e.event_id for e in events), "an event was lost or counted twice"
    assert len({r.run_id for r in runs}) == len(runs)
    for run in runs:
        lo, hi = run.offsets[f"{cluster.topic}:0"]
        assert run.num_rows == ROWS * (hi - lo + 1) >= 3 * ROWS and run.status.value == "pending"
    return runs


@pytest.mark.parametrize("kill_at", ["ingest.before_commit:4", "ingest.after_commit:4"])
def test_standby_takes_over_within_5s_of_the_lease_lapsing_with_no_duplicate_and_no_lost_run(
    cluster: Cluster, kill_at: str
) -> None:
    first = cluster.start("a", kill_at=kill_at)
    cluster.wait_active(first)
    standby = cluster.start("b")
    cluster.client.submit(_spec(cluster.topic), reason="failover test")
    cluster.client.pause("failover", reason="ingest only")
    time.sleep(1.0)  # the standby is up and polling for the lease
    assert standby.poll() is None and cluster.registry.get_lease("controller").token == 1

    events = _events(EVENTS)
    publisher = _publish_stream(cluster, events, every_s=0.1)
    first.wait(timeout=60)
    died_at = time.time()
    assert first.returncode == -signal.SIGKILL, cluster.log("a")
    lapses_at = cluster.registry.get_lease("controller").expires_at
    offset_at_death = cluster.stored_offset()

    took_at = cluster.wait_active(standby, timeout_s=LEASE_TTL + 10)
    consumed_at = cluster.wait_offset(offset_at_death + 1)
    publisher.join(timeout=30)
    cluster.wait_offset(EVENTS)
    runs = _assert_every_event_in_exactly_one_window(cluster, events)

    takeover_s, resume_s = took_at - lapses_at, consumed_at - took_at
    print(f"\n[failover {cluster.kind} {kill_at}] killed at offset {offset_at_death}; lease lapsed "
          f"{lapses_at - died_at:.2f}s after the kill; standby took it {takeover_s:.2f}s after it lapsed and "
          f"consumed again {resume_s:.2f}s later; "
          f"{len(runs)} runs, {EVENTS} events, token {cluster.registry.get_lease('controller').token}")
    assert 0 <= takeover_s < 5.0 and resume_s < 5.0
    assert cluster.registry.get_lease("controller").token == 2
    assert "kill point" in cluster.log("a") and "is active (lease token 2)" in cluster.log("b")


def test_a_stale_leader_steps_down_when_it_wakes_and_writes_nothing(cluster: Cluster) -> None:
    leader = cluster.start("a")
    cluster.wait_active(leader)
    standby = cluster.start("b")
    cluster.client.submit(_spec(cluster.topic))
    cluster.client.pause("failover")
    events = _events(12)
    cluster.client.publish(events[:6], cluster.topic)
    cluster.wait_offset(6)

    leader.send_signal(signal.SIGSTOP)  # a long GC pause, a frozen VM: it still thinks it leads
    cluster.wait_active(standby, timeout_s=LEASE_TTL + 10)
    cluster.client.publish(events[6:], cluster.topic)
    cluster.wait_offset(12)
    before = (cluster.registry.load_offsets(cluster.settings.consumer_group), cluster.registry.load_windows(),
              [r.run_id for r in cluster.registry.list_runs(limit=1000)])
    leader.send_signal(signal.SIGCONT)

    deadline = time.monotonic() + 10
    while "steps down" not in cluster.log("a"):
        assert time.monotonic() < deadline, cluster.log("a")
        time.sleep(0.1)
    time.sleep(1.0)
    assert leader.poll() is None, "the stale leader stays up, as a standby"
    after = (cluster.registry.load_offsets(cluster.settings.consumer_group), cluster.registry.load_windows(),
             [r.run_id for r in cluster.registry.list_runs(limit=1000)])
    assert after == before, "the stale leader changed the registry after it lost the lease"
    assert f":{standby.pid}:" in cluster.registry.get_lease("controller").holder
    _assert_every_event_in_exactly_one_window(cluster, events)
    # every controller serves the API: a command sent to the stale one, now a standby, is carried out by the
    # active one
    token = new_token()
    cluster.registry.add_token("ops", hash_token(token))
    remote = Client(cluster.api[leader.pid], token=token)
    assert requests.get(f"{cluster.api[leader.pid]}/healthz", timeout=5).json() == {"status": "ok", "active": False}
    assert requests.get(f"{cluster.api[standby.pid]}/healthz", timeout=5).json() == {"status": "ok", "active": True}
    done = remote.pause("failover", reason="sent to the standby")
    assert done.actor == "ops" and f":{standby.pid}:" in (done.controller or "")
    remote.close()
