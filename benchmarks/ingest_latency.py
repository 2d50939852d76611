"""Latency from produce to the run's row: p50/p99 with ``min_rows: 1``, against raw kafka-python produce→consume.

One real Kafka broker (the embedded one, or ``STREAMTUNE_KAFKA_BOOTSTRAP``) and one real ``Controller`` (its
thread, its loop, a SQLite registry, a folder artifact store). Events (inline rows, one row each) are produced one
by one, 50 ms apart; for each, the latency is the time its run row is first visible to a reader (the window
closed into a committed run) minus the wall time just before the produce call. A reader thread polls the registry
every 10 ms for new run rows (``RunRecord.created_at`` is the ingest step's start, before its poll, so it cannot
be used). In the same run a raw kafka-python consumer (its own group, assigned partition) reads the same topic
and records when each event reached it: the baseline.

Ray is not needed: the latency spec is paused (its windows close into pending runs and nothing is submitted), and
serving is a stand-in whose ``swap`` sleeps ``--swap-s`` seconds, like a canary observation. Phase ``idle``
measures the loop alone; phase ``during_swap`` keeps a promote of another spec in flight the whole time (a promote
command is appended again as soon as the previous one finishes), so it shows whether a swap delays another
spec's windows.

Run: ``.venv/bin/python benchmarks/ingest_latency.py benchmarks/results/ingest-latency-2core-vm.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from stand_ins import NoJobs

from streamtune.config.jobspec import JobSpec
from streamtune.config.settings import Settings
from streamtune.controller.loop import Controller
from streamtune.embedded import LocalKafka
from streamtune.events import DataArrival, EventProducer
from streamtune.registry import open_registry
from streamtune.registry.commands import Promote
from streamtune.runtime.kafka import ensure_topic
from streamtune.serving.records import AccessPolicy, EnsureResult, SwapReport

WATCH_S = 0.01
"""How often the benchmark looks for new run rows (the resolution of the streamtune latency)."""
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1, "sales": 10.0}


class SlowServing:
    """Serving whose swap takes ``swap_s`` seconds (a canary observation); counts swaps."""

    def __init__(self, swap_s: float) -> None:
        self.swap_s = swap_s
        self.fence = 0
        self.policy: AccessPolicy | None = None
        self.swaps = 0

    def set_policy(self, policy: AccessPolicy) -> list[str]:
        self.policy = policy
        return []

    def swap(self, spec: Any, ref: Any, rollout: Any = None) -> SwapReport:
        time.sleep(self.swap_s)
        self.swaps += 1
        return SwapReport.model_construct(version=ref.version, previous=None, load_s=0.0, flip_s=0.0,
                                          total_s=self.swap_s, replicas=1)

    def ensure(self, spec: Any, ref: Any) -> EnsureResult:
        return EnsureResult(app=spec.serve.app, action="none", desired=ref, detail="benchmark stand-in")


def _spec(name: str, topic: str, dataset: str, code_uri: str) -> JobSpec:
    return JobSpec.model_validate({
        "name": name, "dataset": {"name": dataset, "label": "sales"},
        "trigger": {"topic": topic, "min_rows": 1, "max_wait": "1h"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job", "code_uri": code_uri}, "serve": {"app": name},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
    })


def _free_port_pair() -> int:
    """A free port whose successor (the broker's controller listener) is free too."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports for the benchmark's Kafka broker")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] * 1000, 1)


def _summary(latencies: list[float]) -> dict[str, float]:
    return {"n": len(latencies), "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
            "max_ms": round(max(latencies) * 1000, 1), "mean_ms": round(statistics.fmean(latencies) * 1000, 1)}


def _phase(name: str, bootstrap: str, topic: str, dataset: str, registry_url: str, events: int,
           gap_s: float) -> dict[str, Any]:
    received: dict[str, float] = {}
    stop = threading.Event()

    def raw_consume() -> None:  # the baseline: plain kafka-python on the same topic, in the same run
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                 enable_auto_commit=False)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)
        ready.set()
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=100).values():
                now = time.time()
                for msg in batch:
                    received.setdefault(json.loads(msg.value)["event_id"], now)
        consumer.close()

    sent: dict[str, float] = {}
    committed: dict[str, float] = {}
    registry = open_registry(registry_url, create=False)

    def watch_runs() -> None:  # when each run row is first visible to a reader: committed
        while not stop.is_set():
            now = time.time()
            for run in registry.list_runs(status="pending", limit=1000):
                for eid in run.event_ids:
                    committed.setdefault(eid, now)
            time.sleep(WATCH_S)

    ready = threading.Event()
    thread = threading.Thread(target=raw_consume, daemon=True)
    thread.start()
    ready.wait(30)
    watcher = threading.Thread(target=watch_runs, daemon=True)
    watcher.start()
    with EventProducer(bootstrap) as producer:
        for _ in range(events):
            event = DataArrival(dataset=dataset, rows=[ROW], num_rows=1)
            sent[event.event_id] = time.time()
            producer.publish([event], topic)
            time.sleep(gap_s)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(e in committed for e in sent) and all(e in received for e in sent):
            break
        time.sleep(0.2)
    stop.set()
    thread.join(5)
    watcher.join(5)
    registry.close()
    created = {e: committed[e] for e in sent if e in committed}
    loop = [created[e] - t for e, t in sent.items() if e in created]
    raw = [received[e] - t for e, t in sent.items() if e in received]
    result = {"streamtune_produce_to_run_row": _summary(loop), "raw_kafka_python_produce_to_consume": _summary(raw),
              "missing_runs": len(sent) - len(created)}
    print(name, json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="Where to write the JSON result.")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--gap-s", type=float, default=0.05, help="Pause between produced events.")
    parser.add_argument("--swap-s", type=float, default=5.0, help="How long the other spec's swap takes.")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="st-latency-"))
    settings = Settings(home=home, consumer_group=f"lat-{uuid.uuid4().hex[:6]}", kafka_port=_free_port_pair(),
                        kafka_bootstrap=os.environ.get("STREAMTUNE_KAFKA_BOOTSTRAP") or None)
    kafka = LocalKafka(settings)
    kafka.start()
    settings = settings.model_copy(update={"kafka_bootstrap": kafka.bootstrap})
    tag = uuid.uuid4().hex[:6]
    topic = f"latency-{tag}"
    ensure_topic(kafka.bootstrap, topic)
    serving = SlowServing(args.swap_s)
    seed = open_registry(settings.registry_url)
    code = f"file://{home}/code.zip"
    Path(home, "code.zip").write_bytes(b"")
    seed.put_spec(_spec("lat", topic, f"ds-{tag}", code))
    seed.set_spec_paused("lat", True)
    seed.put_spec(_spec("other", f"other-{tag}", f"other-{tag}", code))
    seed.register_model("other", "r-0", f"file://{home}/m1", {}, {"rmse": 1.0}, {})
    seed.register_model("other", "r-1", f"file://{home}/m2", {}, {"rmse": 0.9}, {})
    ctrl = Controller(settings, jobs=NoJobs(), services=serving)  # type: ignore[arg-type]
    ctrl.start()
    try:
        assert ctrl.wait_until_active(30), "the controller never became active"
        time.sleep(2)  # the consumer is open on both topics
        idle = _phase("idle", kafka.bootstrap, topic, f"ds-{tag}", settings.registry_url, args.events, args.gap_s)

        swapping = threading.Event()

        def keep_swapping() -> None:
            version = 1
            while not swapping.is_set():
                cmd = seed.append_command(Promote(model="other", version=version), actor="bench")
                while not (seed.get_command(cmd.id) or cmd).done and not swapping.is_set():
                    time.sleep(0.05)
                version = 3 - version

        swapper = threading.Thread(target=keep_swapping, daemon=True)
        swapper.start()
        time.sleep(0.5)
        during = _phase("during_swap", kafka.bootstrap, topic, f"ds-{tag}", settings.registry_url, args.events,
                        args.gap_s)
        swapping.set()
        swapper.join(args.swap_s + 5)
    finally:
        ctrl.stop()
        kafka.stop()
    import kafka as kafka_python

    result = {
        "benchmark": "produce -> run row committed (min_rows 1, inline rows, paused spec), vs raw kafka-python "
                     "produce -> consume on the same topic in the same run",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "kafka_python": kafka_python.__version__, "platform": platform.platform()},
        "params": {"events_per_phase": args.events, "gap_s": args.gap_s, "swap_s": args.swap_s,
                   "poll_interval_s": settings.poll_interval,
                   "run_row_watch_s": WATCH_S},
        "idle": idle,
        "during_swap": {**during, "swaps_completed": serving.swaps},
        "goal": "p99 under 1 s, also while another spec is in a canary observation",
        "ratios": {
            "idle_p99_vs_raw": round(idle["streamtune_produce_to_run_row"]["p99_ms"]
                                     / max(idle["raw_kafka_python_produce_to_consume"]["p99_ms"], 0.1), 1),
            "during_swap_p99_vs_idle": round(during["streamtune_produce_to_run_row"]["p99_ms"]
                                             / max(idle["streamtune_produce_to_run_row"]["p99_ms"], 0.1), 1),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"]))


if __name__ == "__main__":
    main()
