"""Replay and backfill: rebuild a spec's windows from Kafka's retained history as replay runs.

The ``replay`` command (:class:`~streamtune.registry.commands.Replay`) reads the spec's topic with a consumer
of its own (:func:`~streamtune.events.history.read_history`), checks each event as the live intake does (URIs,
inline rows against the schema; events of other datasets are skipped, since the live consumer already routed
them), and closes windows by the spec's ``min_rows``; the last, partial window closes at the end of the range.
Replays skip live deduplication: events already trained on live are replayed (that is the point of a
backfill), though an event repeated within the replayed range still counts once.

Replay runs never collide with live windows: their ids derive from the replay's command id and the offsets,
their reason is ``replay`` with the replay's id and start in ``trigger_detail``, and nothing of the live
state moves (offsets, open windows, seen keys). The same command carried out again after a failover inserts
nothing new.

Example:
    >>> replay_run_id("c-1", {"t:0": [0, 9]}) == replay_run_id("c-1", {"t:0": [0, 9]}) != replay_run_id(
    ...     "c-2", {"t:0": [0, 9]})
    True
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.data.inline import rows_table, write_parquet
from streamtune.events.source import EventRecord
from streamtune.registry.commands import Replay
from streamtune.registry.records import RunRecord, TriggerDetail
from streamtune.triggers.base import RowsTrigger
from streamtune.triggers.intake import Intake
from streamtune.triggers.window import Window, WindowTrigger

__all__ = ["CHUNK", "HistoryReader", "build_replay_runs", "replay_run_id"]

CHUNK = 5000
"""Records staged at a time, so a long replay holds one chunk and the open window in memory."""

HistoryReader = Callable[[str, Replay], Iterable[EventRecord]]
"""``reader(topic, command) -> records from the command's start to the topic's end``."""


def replay_run_id(command_id: str, offsets: dict[str, list[int]]) -> str:
    """The id of a replay run: from the replay's command id and the window's offsets."""
    body = json.dumps({"replay": command_id, "offsets": offsets}, sort_keys=True)
    return "r-" + hashlib.sha256(body.encode()).hexdigest()[:16]


def _chunks(records: Iterable[EventRecord]) -> Iterator[list[EventRecord]]:
    chunk: list[EventRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _windows(spec: JobSpec, records: Iterable[EventRecord], platform_roots: list[str]) -> Iterator[Window]:
    """The spec's windows over ``records``, closed by ``min_rows``; the partial last one too."""
    intake = Intake(platform_roots)
    trigger = WindowTrigger(triggers=[RowsTrigger()])
    schemas = {spec.name: dict(spec.dataset.schema_)} if spec.dataset.schema_ else {}
    for chunk in _chunks(records):
        stage = trigger.stage()
        intake.plan([r for r in chunk if r.ok], {spec.name: spec}, stage, schemas=schemas,
                    seen=lambda *_a, **_k: set(), now=time.time())
        trigger.adopt(stage)
        yield from (win for win, _ in stage.closed)
    yield from (win for win in trigger if win.events)


def build_replay_runs(spec: JobSpec, command: Replay, command_id: str, records: Iterable[EventRecord],
                      store: ArtifactStore, platform_roots: list[str]) -> list[RunRecord]:
    """The replay runs of ``records`` for ``spec`` (inline rows written to the store as Parquet)."""
    runs = []
    now = time.time()
    for win in _windows(spec, records, platform_roots):
        offsets = win.offsets()
        run_id = replay_run_id(command_id, offsets)
        uris = sorted({u for e in win.events for u in e.uris})
        rows = [row for e in win.events for row in e.rows]
        if rows:
            table = rows_table(rows, spec.dataset.schema_)
            uris.append(write_parquet(table, store.join("inline", f"{run_id}.parquet")))
        detail = TriggerDetail(kind="replay", rows=win.num_rows, replay_id=command_id, from_offset=command.from_offset,
                               from_time=command.from_time, command_id=command_id)
        runs.append(RunRecord(run_id=run_id, spec_name=spec.name, dataset=spec.dataset.name, reason="replay",
                              event_ids=[e.event_id for e in win.events], offsets=offsets, num_rows=win.num_rows,
                              uris=uris, created_at=now, updated_at=now, command_id=command_id,
                              trigger_detail=detail))
    return runs
