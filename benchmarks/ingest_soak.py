"""Ingest soak: SIGKILL the real controller at named kill points while events stream in; nothing is lost or doubled.

The controller is the real daemon, ``python -m streamtune.controller``, on a SQLite registry and a Kafka broker;
its spec is paused, so windows close into pending runs and no Ray job starts (the ingest path needs no Ray).
Events go to 3 partitions in phases: in each phase a controller starts with ``STREAMTUNE_KILL_AT`` set to the
phase's kill point, the phase's events are published in small batches while it runs, and the test waits until
the kill point SIGKILLs it; the next phase starts a fresh controller (which waits for the dead one's lease to
lapse). A last controller, with no kill point, drains the topic and closes the last window on ``max_wait``.

The events: notification events (URIs under the dataset's root), inline-row events, about 8 % malformed ones
(random bytes, wrong types, mixed-type rows, a dataset with no spec, hostile URIs) and about 1 % producer
retries (the same event sent twice). Then the checks:

- every good event id is in exactly one run (0 lost, 0 counted twice) and the runs' ``num_rows`` add up to the
  good events' rows; run ids are distinct and the runs' offset ranges per partition do not overlap;
- every malformed record reached the dead-letter topic (by its source partition and offset), and nothing else
  did (a letter sent again after a kill between the dead-letter ack and the commit is counted, not an error).

``tests/integration/test_ingest_crash.py`` runs it with 2,000 events and 6 kills; as a benchmark:

    .venv/bin/python benchmarks/ingest_soak.py benchmarks/results/ingest-soak-2core-vm.json [--events 10000]

starts a local broker of its own (or uses ``STREAMTUNE_KAFKA_BOOTSTRAP``) and writes the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KILLS = (
    "ingest.after_parquet",
    "ingest.before_commit:2",
    "ingest.after_dead_letter",
    "ingest.after_commit:2",
    "ingest.after_parquet:2",
    "ingest.after_commit:3",
)
"""The named kill points, one per phase, in order (``name:N`` dies at the N-th hit)."""
PARTITIONS = 3
ROWS_PER_FILE = 10
MIN_ROWS = 120
LEASE_TTL = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Published:
    """What was sent: good events by id (with their rows), and the malformed records by where they landed."""

    good: dict[str, int] = field(default_factory=dict)  # event id -> num_rows
    good_at: dict[str, tuple[int, int]] = field(default_factory=dict)  # event id -> (partition, offset), first send
    bad_at: dict[tuple[int, int], str] = field(default_factory=dict)  # (partition, offset) -> kind
    resent: int = 0
    total: int = 0


def make_events(n: int, lake: str, other_root: str, seed: int = 0) -> list[tuple[str, bytes, str | None, int]]:
    """``n`` records as ``(kind, value, event id or None, num_rows)``; kind ``good`` or a malformed kind."""
    from streamtune.events.schema import DataArrival

    rng = random.Random(seed)
    out: list[tuple[str, bytes, str | None, int]] = []
    bad_kinds = ("bytes", "wrong_type", "mixed_rows", "no_spec", "dotdot", "etc", "other_root", "s3_dotdot")
    for i in range(n):
        roll = rng.random()
        if i > 0 and roll < 0.08:
            kind = bad_kinds[i % len(bad_kinds)]
            eid = f"bad-{i}"
            if kind == "bytes":
                value = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
            elif kind == "wrong_type":
                value = json.dumps({"event_id": eid, "dataset": "sales", "uris": [f"{lake}/b{i}.parquet"],
                                    "num_rows": "ten"}).encode()
            elif kind == "mixed_rows":
                value = DataArrival(event_id=eid, dataset="sales", rows=[{"x": 1.0, "y": 2.0}, {"x": "1.0", "y": 2.0}],
                                    num_rows=2).to_bytes()
            elif kind == "no_spec":
                value = DataArrival(event_id=eid, dataset="nobody", uris=[f"{lake}/n{i}.parquet"],
                                    num_rows=5).to_bytes()
            else:
                uri = {"dotdot": f"{lake}/../../outside/{i}.parquet", "etc": "file:///etc/passwd",
                       "other_root": f"{other_root}/{i}.parquet", "s3_dotdot": f"s3://lake/sales/../{i}.parquet"}[kind]
                value = DataArrival(event_id=eid, dataset="sales", uris=[uri], num_rows=5).to_bytes()
            out.append((kind, value, None, 0))
        elif i == 0 or roll < 0.38:
            k = rng.randint(1, 4)
            rows = [{"x": round(rng.random(), 4), "y": round(rng.random(), 4)} for _ in range(k)]
            ev = DataArrival(event_id=f"in-{i}", dataset="sales", rows=rows, num_rows=k)
            out.append(("good", ev.to_bytes(), ev.event_id, k))
        else:
            ev = DataArrival(event_id=f"f-{i}", dataset="sales", uris=[f"{lake}/part-{i}.parquet"],
                             num_rows=ROWS_PER_FILE)
            out.append(("good", ev.to_bytes(), ev.event_id, ROWS_PER_FILE))
        if out[-1][0] == "good" and i > 0 and rng.random() < 0.01:  # a producer retry: the same record again
            out.append(("resend", out[-1][1], out[-1][2], out[-1][3]))
    return out


class Soak:
    """One soak run: a topic, a home (registry), controllers started and killed in turn."""

    def __init__(self, bootstrap: str, workdir: Path, *, events: int, kills: tuple[str, ...] = KILLS,
                 seed: int = 0, log: Any = print) -> None:
        from kafka import KafkaProducer

        from streamtune.config import JobSpec
        from streamtune.registry import open_registry
        from streamtune.runtime.kafka import ensure_topic

        self.bootstrap, self.workdir, self.kills, self.log = bootstrap, workdir, kills, log
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.topic = f"soak-{uuid.uuid4().hex[:8]}"
        self.dlq = f"{self.topic}.dlq"
        self.group = f"g-{self.topic}"
        self.lake, self.other = str(workdir / "lake"), str(workdir / "other-lake")
        ensure_topic(bootstrap, self.topic, partitions=PARTITIONS)
        ensure_topic(bootstrap, self.dlq)
        self.registry = open_registry(f"sqlite:///{self.home / 'registry.db'}")
        self.spec = JobSpec.parse({
            "name": "soak", "dataset": {"name": "sales", "label": "y", "uri_roots": [self.lake]},
            "trigger": {"topic": self.topic, "min_rows": MIN_ROWS, "max_wait": "2s"},
            "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
            "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
            "serve": {"app": "soak"},
        })
        self.registry.put_spec(self.spec)
        self.registry.set_spec_paused("soak", True)  # windows close into pending runs; no sweep starts
        self.records = make_events(events, self.lake, self.other, seed)
        self.events = events
        self.published = Published()
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self.env = {
            **os.environ, "STREAMTUNE_HOME": str(self.home), "STREAMTUNE_KAFKA_BOOTSTRAP": bootstrap,
            "STREAMTUNE_LEASE_TTL": str(LEASE_TTL), "STREAMTUNE_POLL_INTERVAL": "0.1",
            "STREAMTUNE_CONSUMER_GROUP": self.group, "STREAMTUNE_DEAD_LETTER_TOPIC": self.dlq,
            "STREAMTUNE_REGISTRY_URL": f"sqlite:///{self.home / 'registry.db'}",
        }
        self.env.pop("STREAMTUNE_KILL_AT", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kill_log: list[dict[str, Any]] = []
        self._next = 0

    # -- processes -------------------------------------------------------------------------------------

    def start(self, name: str, kill_at: str | None) -> subprocess.Popen[bytes]:
        env = {**self.env, "STREAMTUNE_API_PORT": str(_free_port())}
        if kill_at:
            env["STREAMTUNE_KILL_AT"] = kill_at
        out = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "streamtune.controller"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def publish(self, count: int) -> None:
        """Send the next ``count`` records round-robin over the partitions and note where each landed."""
        batch = self.records[self._next:self._next + count]
        futures = []
        for i, (kind, value, eid, rows) in enumerate(batch, start=self._next):
            futures.append((kind, eid, rows, self.producer.send(self.topic, value=value, key=b"k",
                                                                partition=i % PARTITIONS)))
        self.producer.flush()
        for kind, eid, rows, future in futures:
            meta = future.get(timeout=30)
            self.published.total += 1
            if kind == "good":
                assert eid is not None
                self.published.good[eid] = rows
                self.published.good_at[eid] = (meta.partition, meta.offset)
            elif kind == "resend":
                self.published.resent += 1
            else:
                self.published.bad_at[(meta.partition, meta.offset)] = kind
        self._next += len(batch)

    # -- the run ---------------------------------------------------------------------------------------

    def run(self, *, phase_timeout_s: float = 60.0, drain_timeout_s: float = 120.0) -> dict[str, Any]:
        started = time.monotonic()
        phases = len(self.kills) + 1
        per_phase = -(-len(self.records) // phases)
        for n, kill_at in enumerate(self.kills):
            proc = self.start(f"c{n}", kill_at)
            end = min(self._next + per_phase, len(self.records))
            deadline = time.monotonic() + phase_timeout_s
            self.wait_active(proc, deadline)  # then each small batch is a step of its own: kill points ':N' are hit
            while proc.poll() is None:
                if self._next < end:
                    self.publish(min(40, end - self._next))
                    time.sleep(0.25)
                else:
                    time.sleep(0.05)
                if time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(f"kill point {kill_at} was not reached in {phase_timeout_s}s:\n"
                                         + self.tail(f"c{n}"))
            if self._next < end:
                self.publish(end - self._next)
            self.kill_log.append({"kill_at": kill_at, "returncode": proc.returncode,
                                  "stored_offsets": sum(self.stored().values())})
            if proc.returncode != -signal.SIGKILL or "kill point" not in self.tail(f"c{n}"):
                raise AssertionError(f"controller c{n} exited {proc.returncode}, not by kill point {kill_at}:\n"
                                     + self.tail(f"c{n}"))
            self.log(f"phase {n}: killed at {kill_at} (stored offsets {self.kill_log[-1]['stored_offsets']})")
        last = self.start("final", None)
        self.publish(len(self.records) - self._next)
        ends = self.end_offsets()
        deadline = time.monotonic() + drain_timeout_s
        try:
            while not (self.stored() == ends and not self.registry.load_windows().get("soak")):
                if last.poll() is not None:
                    raise AssertionError(f"the last controller exited {last.returncode}:\n" + self.tail("final"))
                if time.monotonic() > deadline:
                    raise AssertionError(f"not drained in {drain_timeout_s}s: stored {self.stored()}, ends {ends}")
                time.sleep(0.1)
        finally:
            last.terminate()
            last.wait(timeout=30)
        elapsed = time.monotonic() - started
        return self.verify(elapsed)

    def wait_active(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Wait until ``proc`` holds the controller lease and has had time to take its partitions."""
        while True:
            lease = self.registry.get_lease("controller")
            if lease is not None and f":{proc.pid}:" in lease.holder and not lease.expired():
                time.sleep(0.3)
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"controller {proc.pid} never became active:\n"
                                     + self.tail(f"c{len(self.kill_log)}"))
            time.sleep(0.05)

    def stored(self) -> dict[tuple[str, int], int]:
        return self.registry.load_offsets(self.group)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            return {(tp.topic, tp.partition): int(off) for tp, off in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def dead_letters(self) -> list[tuple[int, int]]:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.dlq, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=3000)
        try:
            out = []
            for msg in consumer:
                headers = dict(msg.headers)
                assert headers.get("streamtune.error"), "a dead letter without a reason"
                out.append((int(headers["streamtune.source.partition"]), int(headers["streamtune.source.offset"])))
            return out
        finally:
            consumer.close()

    def verify(self, elapsed: float) -> dict[str, Any]:
        runs = self.registry.list_runs("soak", limit=1_000_000)
        ids = [e for r in runs for e in r.event_ids]
        counts = Counter(ids)
        good = self.published.good
        lost = sorted(set(good) - set(counts))
        twice = sorted(e for e, c in counts.items() if c > 1)
        foreign = sorted(set(counts) - set(good))
        rows_ok = sum(r.num_rows for r in runs) == sum(good.values())
        overlap = 0
        for p in range(PARTITIONS):
            spans = sorted(tuple(r.offsets[f"{self.topic}:{p}"]) for r in runs if f"{self.topic}:{p}" in r.offsets)
            overlap += sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] <= a[1])
        letters = self.dead_letters()
        bad = set(self.published.bad_at)
        result = {
            "events": self.published.total,
            "good_events": len(good),
            "malformed": len(bad),
            "producer_retries": self.published.resent,
            "partitions": PARTITIONS,
            "kills": len(self.kill_log),
            "kill_points": self.kill_log,
            "windows": len(runs),
            "distinct_run_ids": len({r.run_id for r in runs}),
            "overlapping_windows": overlap,
            "duplicates": len(twice),
            "lost": len(lost),
            "foreign_ids": len(foreign),
            "rows_match": rows_ok,
            "dead_letters": len(letters),
            "dead_letters_distinct": len(set(letters)),
            "malformed_missing_from_dlq": len(bad - set(letters)),
            "good_in_dlq": len(set(letters) - bad),
            "offset_resets": len(self.registry.offset_resets(self.group)),
            "elapsed_s": round(elapsed, 2),
        }
        result["ok"] = (not lost and not twice and not foreign and rows_ok and overlap == 0
                        and result["distinct_run_ids"] == len(runs) and not result["malformed_missing_from_dlq"]
                        and not result["good_in_dlq"] and result["offset_resets"] == 0)
        return result

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.producer.close()
        self.registry.close()


def run_soak(bootstrap: str, workdir: Path, *, events: int, kills: tuple[str, ...] = KILLS, seed: int = 0,
             log: Any = print) -> dict[str, Any]:
    """Run one soak against the broker at ``bootstrap``; return the result (see :meth:`Soak.verify`)."""
    soak = Soak(bootstrap, workdir, events=events, kills=kills, seed=seed, log=log)
    try:
        return soak.run()
    finally:
        soak.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", help="where to write the JSON result")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from streamtune.config.settings import Settings
    from streamtune.embedded.kafka import LocalKafka

    with tempfile.TemporaryDirectory(prefix="st-soak-") as tmp:
        external = os.environ.get("STREAMTUNE_KAFKA_BOOTSTRAP")
        kafka = None if external else LocalKafka(Settings(home=Path(tmp) / "kafka-home", kafka_port=_free_port()))
        bootstrap = external or kafka.start(timeout=120)  # type: ignore[union-attr]
        try:
            result = run_soak(bootstrap, Path(tmp) / "soak", events=args.events, seed=args.seed)
        finally:
            if kafka is not None:
                kafka.stop()
    import kafka as kafka_python

    doc = {
        "benchmark": "ingest soak: the real controller SIGKILLed at named kill points while events stream in",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "kafka_python": kafka_python.__version__, "platform": platform.platform()},
        "config": {"events": args.events, "seed": args.seed, "partitions": PARTITIONS, "min_rows": MIN_ROWS,
                   "lease_ttl_s": LEASE_TTL, "kills": list(KILLS)},
        "result": result,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
