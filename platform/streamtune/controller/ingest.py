"""Consume → trigger → store: the exactly-once half of the controller loop."""

from __future__ import annotations

import logging
import time

import pyarrow as pa
import pyarrow.parquet as pq

from streamtune.artifacts.store import ArtifactStore, filesystem
from streamtune.config.jobspec import JobSpec
from streamtune.events.source import EventRecord, EventSource
from streamtune.faults import kill_point
from streamtune.registry.base import Registry
from streamtune.registry.records import RunRecord, run_id_for
from streamtune.triggers.window import Window, WindowTrigger

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]


class Ingestor:
    """Feeds events into trigger windows and stores offsets, windows and new runs in one transaction.

    Kafka's committed offsets are only a hint: on start the source seeks to the offsets stored in the
    registry, and records below them (replays after a crash or rebalance) are dropped here.

    Example:
        >>> from streamtune.registry import open_registry
        >>> from streamtune.artifacts import ArtifactStore
        >>> ing = Ingestor(open_registry("sqlite:///:memory:"), "streamtune-controller", ArtifactStore("/tmp/st"))
        >>> ing.offsets, ing.events_seen
        ({}, 0)
    """

    def __init__(self, registry: Registry, group: str, store: ArtifactStore) -> None:
        self.registry = registry
        self.store = store
        self.group = group
        self.offsets: Offsets = registry.load_offsets(group)
        self.trigger = WindowTrigger(registry.load_windows())
        self.bad_events = 0
        self.events_seen = 0

    def step(self, source: EventSource, specs: dict[str, JobSpec], *, poll_s: float = 0.5) -> list[str]:
        """Poll once, update windows, close due ones; returns the run ids inserted."""
        records = source.poll(timeout_s=poll_s, max_records=500)
        changed: Offsets = {}
        now = time.time()
        for rec in records:
            key = (rec.topic, rec.partition)
            if rec.offset < self.offsets.get(key, 0):
                continue  # already stored: a replay after a restart or a rebalance
            changed[key] = self.offsets[key] = rec.offset + 1
            self._route(rec, specs, now)
        closed = self.trigger.due(specs, now=now)
        windows = self.trigger.take_state()
        if not changed and not closed and not windows:
            return []
        runs = [_run_from(win, reason, now, self.store) for win, reason in closed]
        kill_point("ingest.before_commit")
        inserted = self.registry.commit_window(self.group, changed, windows, runs)
        kill_point("ingest.after_commit")
        if changed:
            source.commit(changed)
        for run in runs:
            log.info("window of %s closed (%s): run %s, %d rows", run.spec_name, run.reason, run.run_id, run.num_rows)
        return inserted

    def _route(self, rec: EventRecord, specs: dict[str, JobSpec], now: float) -> None:
        if rec.event is None:
            self.bad_events += 1
            return
        self.events_seen += 1
        for spec in specs.values():
            if spec.trigger.topic == rec.topic and spec.dataset.name == rec.event.dataset:
                self.trigger.add(spec, rec.event, topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                 now=now)


def _run_from(win: Window, reason: str, now: float, store: ArtifactStore) -> RunRecord:
    offsets = win.offsets()
    run_id = run_id_for(win.dataset, offsets, spec_name=win.spec_name)
    uris = sorted({u for e in win.events for u in e.uris})
    rows = [row for e in win.events for row in e.rows]
    if rows:  # inline rows become a Parquet file in the store, so a run is fully described by its URIs
        uri = store.join("inline", f"{run_id}.parquet")
        fs, path = filesystem(uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(pa.Table.from_pylist(rows), path, filesystem=fs)
        uris.append(uri)
    return RunRecord(
        run_id=run_id,
        spec_name=win.spec_name, dataset=win.dataset, reason=reason,
        event_ids=[e.event_id for e in win.events], offsets=offsets, num_rows=win.num_rows, uris=uris,
        created_at=now, updated_at=now, timings={"window_s": round(now - win.opened_at, 3)},
    )

