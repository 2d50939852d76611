"""Ingestion throughput: streamtune's consumer and window store against a raw kafka-python consume loop.

One topic of 3 partitions holds 20,000 notification events (each names one Parquet file of 10 rows); the spec
closes a window every 1,000 events (``min_rows`` 10,000). Both sides read the same topic from the start, in the
same run, alternately (``--rounds`` each, the median kept):

- raw: a ``KafkaConsumer`` assigned the 3 partitions, polling until it has seen every record (no decoding);
- streamtune: ``KafkaEventSource(assign=True)`` with a dead-letter topic, and the :class:`Ingestor` on a real
  SQLite registry file, with the checks that are on by default (decode, schema, URI check against the dataset's
  root, dedupe by event id and URI against the registry's seen keys, one transaction per step storing offsets,
  window events, runs and seen keys), until the registry stores the end offsets.

    .venv/bin/python benchmarks/ingest_throughput.py benchmarks/results/ingest-throughput-2core-vm.json [--profile]

``--drift`` writes the 20,000 Parquet files the events name and adds, per round, a streamtune round with the
drift trigger on (the controller's triggers and ``WindowMonitor`` thread reading each open window's files and
computing PSI against a champion's reference), to show what measuring drift off the loop costs the loop.

``--profile`` runs one more streamtune round under cProfile and keeps the top functions in the JSON. It starts a
local broker of its own (or uses ``STREAMTUNE_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

EVENTS = 20_000
PARTITIONS = 3
ROWS = 10
WINDOW_EVENTS = 1_000
DRIFT_READINGS = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def produce(bootstrap: str, topic: str, lake: str, n: int) -> None:
    from kafka import KafkaProducer

    from streamtune.events.schema import DataArrival

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1)
    for i in range(n):
        ev = DataArrival(event_id=f"e-{i}", dataset="sales", uris=[f"{lake}/part-{i}.parquet"], num_rows=ROWS)
        producer.send(topic, value=ev.to_bytes(), key=b"k", partition=i % PARTITIONS)
    producer.flush()
    producer.close()


def raw_round(bootstrap: str, topic: str, n: int) -> float:
    """Seconds a plain kafka-python loop takes to read ``n`` records from the start."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    consumer.poll(timeout_ms=0)  # connect before the clock starts, as the ingest side's source does
    seen = 0
    started = time.perf_counter()
    while seen < n:
        for msgs in consumer.poll(timeout_ms=500, max_records=5000).values():
            seen += len(msgs)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def write_lake(lake: str, n: int) -> None:
    """Write the ``n`` Parquet files the events name (10 rows each), so the drift monitor reads real rows."""
    import pyarrow.parquet as pq

    from streamtune.dev.synthetic import make_sales

    Path(lake).mkdir(parents=True, exist_ok=True)
    table = make_sales(n * ROWS, seed=5)
    for i in range(n):
        pq.write_table(table.slice(i * ROWS, ROWS), f"{lake}/part-{i}.parquet")


def _champion_with_reference(reg, store, lake: str) -> None:  # noqa: ANN001
    """Register a champion whose lineage holds reference statistics, as the sweep job stores them."""
    from streamtune.data.stats import reference_stats
    from streamtune.dev.synthetic import FEATURES, make_sales

    uri = store.put_text(store.join("reference.json"), reference_stats(make_sales(5000, seed=1), FEATURES)
                         .model_dump_json())
    mv = reg.register_model("bench", "r-bench", lake, {}, {}, {"reference_uri": uri})
    reg.set_alias("bench", "champion", mv.version)


def streamtune_round(bootstrap: str, topic: str, dlq: str, lake: str, workdir: Path, n: int, *,
                     drift: bool = False) -> tuple[float, int]:
    """Seconds the Ingestor takes to store the offsets of ``n`` records, and the runs it inserted.

    With ``drift`` the spec has a drift trigger (threshold out of reach, so windows still close on rows) and the
    real controller triggers: its monitor thread reads every open window's files and computes PSI per feature
    against the champion's reference while the ingestor runs.
    """
    from streamtune.artifacts import ArtifactStore
    from streamtune.config import JobSpec
    from streamtune.controller.ingest import Ingestor
    from streamtune.events import KafkaEventSource
    from streamtune.registry import SqliteRegistry
    from streamtune.triggers.base import default_triggers
    from streamtune.triggers.drift import DriftTrigger, WindowMonitor

    workdir.mkdir(parents=True)
    reg = SqliteRegistry(f"sqlite:///{workdir / 'registry.db'}")
    trigger = {"topic": topic, "min_rows": ROWS * WINDOW_EVENTS, "max_wait": "1h"}
    if drift:
        trigger["drift"] = {"threshold": 1000.0, "min_rows": 100}
    spec = JobSpec.parse({
        "name": "bench", "dataset": {"name": "sales", "label": "sales", "uri_roots": [lake]},
        "trigger": trigger, "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "bench"},
    })
    reg.put_spec(spec)
    specs = {"bench": spec}
    store = ArtifactStore(str(workdir / "store"))
    monitor = None
    triggers = None
    if drift:
        _champion_with_reference(reg, store, lake)
        monitor = WindowMonitor(reg)
        triggers = default_triggers(DriftTrigger(monitor))
    ing = Ingestor(reg, f"g-{uuid.uuid4().hex[:6]}", store, triggers=triggers)
    source = KafkaEventSource(bootstrap, [topic], ing.group, start_offsets=ing.offsets, dead_letter_topic=dlq,
                              assign=True)
    source.seek({(topic, p): 0 for p in range(PARTITIONS)})
    inserted = 0
    started = time.perf_counter()
    while sum(ing.offsets.values()) < n:
        inserted += len(ing.step(source, specs, poll_s=0.5))
    elapsed = time.perf_counter() - started
    source.close()
    if monitor is not None:
        global DRIFT_READINGS  # noqa: PLW0603 -- reported beside the round's time
        DRIFT_READINGS = monitor.measured
        monitor.close()
    assert inserted == n // WINDOW_EVENTS, f"{inserted} runs, {n // WINDOW_EVENTS} expected"
    assert reg.load_windows() == {}
    reg.close()
    return elapsed, inserted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", help="where to write the JSON result")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--drift", action="store_true",
                        help="also run rounds with the drift trigger and its monitor thread on real Parquet files")
    args = parser.parse_args()
    from kafka import __version__ as kafka_python_version

    from streamtune.config.settings import Settings
    from streamtune.embedded.kafka import LocalKafka
    from streamtune.runtime.kafka import ensure_topic

    with tempfile.TemporaryDirectory(prefix="st-ingest-bench-") as tmp:
        external = os.environ.get("STREAMTUNE_KAFKA_BOOTSTRAP")
        kafka = None if external else LocalKafka(Settings(home=Path(tmp) / "kafka-home", kafka_port=_free_port()))
        bootstrap = external or kafka.start(timeout=120)  # type: ignore[union-attr]
        try:
            topic, dlq = f"bench-{uuid.uuid4().hex[:6]}", f"bench-dlq-{uuid.uuid4().hex[:6]}"
            lake = str(Path(tmp) / "lake")
            ensure_topic(bootstrap, topic, partitions=PARTITIONS)
            ensure_topic(bootstrap, dlq)
            produce(bootstrap, topic, lake, args.events)
            if args.drift:
                write_lake(lake, args.events)
            raw_round(bootstrap, topic, args.events)  # warm the broker's page cache
            raw, ours, drifted, readings = [], [], [], []
            for r in range(args.rounds):
                raw.append(raw_round(bootstrap, topic, args.events))
                ours.append(streamtune_round(bootstrap, topic, dlq, lake, Path(tmp) / f"r{r}", args.events)[0])
                print(f"round {r}: raw {args.events / raw[-1]:.0f} ev/s, streamtune {args.events / ours[-1]:.0f} ev/s",
                      flush=True)
                if args.drift:
                    drifted.append(streamtune_round(bootstrap, topic, dlq, lake, Path(tmp) / f"d{r}", args.events,
                                                    drift=True)[0])
                    readings.append(DRIFT_READINGS)
                    print(f"round {r}: streamtune with the drift monitor {args.events / drifted[-1]:.0f} ev/s "
                          f"({DRIFT_READINGS} window readings)", flush=True)
            profile: list[str] = []
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
                streamtune_round(bootstrap, topic, dlq, lake, Path(tmp) / "prof", args.events)
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
                profile = [line for line in buf.getvalue().splitlines() if line.strip()][:45]
        finally:
            if kafka is not None:
                kafka.stop()
    raw_eps = [args.events / s for s in raw]
    our_eps = [args.events / s for s in ours]
    result = {
        "raw_events_per_s": [round(x) for x in raw_eps],
        "streamtune_events_per_s": [round(x) for x in our_eps],
        "raw_median": round(statistics.median(raw_eps)),
        "streamtune_median": round(statistics.median(our_eps)),
        "ratio_median": round(statistics.median(our_eps) / statistics.median(raw_eps), 3),
        "ratio_per_round": [round(o / r, 3) for o, r in zip(our_eps, raw_eps, strict=True)],
        "goal_ratio": 0.8,
    }
    if args.drift:
        drift_eps = [args.events / s for s in drifted]
        result.update({
            "drift_monitor_events_per_s": [round(x) for x in drift_eps],
            "drift_monitor_median": round(statistics.median(drift_eps)),
            "drift_vs_plain_ratio_median": round(statistics.median(drift_eps) / statistics.median(our_eps), 3),
            "drift_window_readings": readings,
        })
    doc = {
        "benchmark": "ingest throughput: KafkaEventSource + Ingestor (SQLite registry, default checks) vs raw "
                     "kafka-python consume loop, same topic, same run",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "kafka_python": kafka_python_version, "platform": platform.platform()},
        "config": {"events": args.events, "partitions": PARTITIONS, "rows_per_event": ROWS,
                   "window_events": WINDOW_EVENTS, "rounds": args.rounds, "registry": "sqlite file"},
        "result": result,
    }
    if profile:
        doc["profile_top_tottime"] = profile
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
