"""Consume → check → trigger → store: the exactly-once half of the controller loop.

One :meth:`Ingestor.step` is one transaction. It polls, checks every record (:mod:`streamtune.triggers.intake`),
stages the windows it fills, closes the ones that reach ``min_rows`` (on that very event) or waited
``max_wait``, and then, in this order: writes the closed windows' inline rows as Parquet in the artifact
store, sends the refused records to the dead-letter topic and waits for the acks, stores a schema pinned from
the first inline rows with the spec, and calls :meth:`Registry.commit_window` with the offsets, the window
changes (new windows, and only the new events of open ones), the new runs and their seen keys. Only after
that returns are the offsets, windows and pinned schemas adopted in memory. If anything raises, nothing is
adopted: the ingestor reloads offsets and windows from the registry and seeks the source back to them, so the
next step reads the same records again. A dead letter that was not acknowledged, a Parquet file that could not
be written, a registry that refused the commit: the records stay unconsumed and are retried.

Offsets only move forward, except through a recorded reset: a partition whose end offset fell below the
stored next offset belongs to a recreated topic, and is reset to its new beginning with
``Registry.reset_offsets(reason="topic recreated: ...", actor="controller")``; the windows of a reset partition
get run ids of their own (``run_id_for(..., resets=...)``).

Kill points (``STREAMTUNE_KILL_AT``): ``ingest.after_parquet``, ``ingest.after_dead_letter``,
``ingest.before_commit``, ``ingest.after_commit``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import ColumnSpec, JobSpec
from streamtune.data.inline import rows_table, write_parquet
from streamtune.errors import DataError, ServiceError
from streamtune.events.dlq import letter_for
from streamtune.events.source import EventRecord, EventSource, Offsets
from streamtune.faults import kill_point
from streamtune.registry.base import Registry
from streamtune.registry.records import RunRecord, SeenKey, TriggerDetail, run_id_for, scheduled_run_id
from streamtune.triggers.base import Trigger, default_triggers
from streamtune.triggers.intake import Intake, Plan
from streamtune.triggers.window import Window, WindowTrigger

log = logging.getLogger(__name__)

__all__ = ["MAX_RECORDS", "IngestStats", "Ingestor"]

MAX_RECORDS = 5000
"""Most records one step polls: one registry transaction per step."""
PURGE_EVERY_S = 600.0
"""How often seen keys older than every spec's ``trigger.dedupe_for`` are purged."""
WATERMARKS_EVERY_S = 10.0
"""How often stored partitions are checked for a recreated topic (and at once when a record is below them)."""


@dataclass
class IngestStats:
    """Counters since the ingestor started, for status and metrics."""

    records: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    bad_events: int = 0
    windows_closed: int = 0
    runs_inserted: int = 0
    offset_resets: int = 0
    replays_dropped: int = 0
    failed_steps: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


class Ingestor:
    """Feeds events into trigger windows and stores offsets, windows and new runs in one transaction per step.

    Kafka's committed offsets are only a hint: the controller's source starts at :attr:`offsets`, the ones the
    registry stores, and the ingestor seeks it back to them whenever a step fails.

    Routing uses exactly the ``specs`` given to :meth:`step`: pass every stored spec (paused ones too), read
    after the previous turn's commands ran, so an event published once ``submit`` returned finds its spec.
    An event whose dataset no spec watches at that moment is dead-lettered with that reason (never dropped), and
    can be replayed from the dead-letter topic once its spec is submitted.

    Args:
        registry: Where offsets, windows, runs and seen keys are stored.
        group: The consumer group the offsets belong to.
        store: The artifact store: inline rows' Parquet files, dead letters too big for the topic.
        platform_roots: The platform's own data folders, which a dataset with no ``uri_roots`` may name
            (default: the artifact store root only; the controller passes ``platform_roots(store.root, home)``).
        max_records: Most records one step polls.
        triggers: What closes windows, asked in order (default:
            :func:`~streamtune.triggers.base.default_triggers`: min_rows, max_wait, schedule).

    Example:
        >>> from streamtune.registry import open_registry
        >>> from streamtune.artifacts import ArtifactStore
        >>> ing = Ingestor(open_registry("sqlite:///:memory:"), "streamtune-controller", ArtifactStore("/tmp/st"))
        >>> ing.offsets, ing.events_seen, ing.stats.duplicates
        ({}, 0, 0)
    """

    def __init__(self, registry: Registry, group: str, store: ArtifactStore, *,
                 platform_roots: Sequence[str] | None = None, max_records: int = MAX_RECORDS,
                 triggers: Sequence[Trigger] | None = None) -> None:
        self.registry = registry
        self.store = store
        self.group = group
        self.max_records = max_records
        self.platform_roots = list(platform_roots) if platform_roots is not None else [store.root]
        self.intake = Intake(self.platform_roots)
        self.stats = IngestStats()
        self.offsets: Offsets = {}
        self.triggers: list[Trigger] = list(triggers) if triggers is not None else default_triggers()
        self.trigger = WindowTrigger(triggers=self.triggers)
        self._resets: Counter[tuple[str, int]] = Counter()
        self._pinned: dict[str, dict[str, ColumnSpec]] = {}
        self._rewind: Offsets = {}
        self._stale = False
        self._next_purge = self._next_marks = 0.0
        self._load()

    @property
    def bad_events(self) -> int:
        """Records that could not be decoded (dead-lettered)."""
        return self.stats.bad_events

    @property
    def events_seen(self) -> int:
        """Events decoded and routed."""
        return self.stats.events

    # -- one step ------------------------------------------------------------------------------------

    def step(self, source: EventSource, specs: Mapping[str, JobSpec], *, poll_s: float = 0.5) -> list[str]:
        """Poll once, check, stage and store; returns the run ids inserted.

        Raises:
            StreamtuneError: the step failed and nothing of it was stored or adopted; the source was sought
                back, so the next step reads the same records again.
        """
        if self._stale:
            self._reload(source)
        now = time.time()
        self._maintain(source, specs, now)
        records = source.poll(timeout_s=poll_s, max_records=self.max_records)
        if not records and not self.trigger.windows and not any(s.trigger.schedule for s in specs.values()):
            return []
        try:
            fresh = self._fresh(records, source)
            plan = self.intake.plan(fresh, specs, self.trigger.stage(), schemas=self._pinned,
                                    seen=self.registry.seen_keys, now=now)
            inserted = self._commit(plan, specs, source, now)
        except BaseException:
            self.stats.failed_steps += 1
            self._rollback(source, records)
            raise
        self._adopt(plan, len(records), inserted)
        self._hint(source, plan.offsets)
        return inserted

    def _commit(self, plan: Plan, specs: Mapping[str, JobSpec], source: EventSource, now: float) -> list[str]:
        runs, seen = self._close_windows(plan, specs, now)
        changes, appends = plan.stage.changes()
        if not (plan.offsets or runs or changes or appends or plan.rejected):
            return []
        letters = [letter_for(rec, "; ".join(reasons), self.store) for rec, reasons in plan.rejected.values()]
        if letters:
            source.dead_letter(letters)
            kill_point("ingest.after_dead_letter")
        for name, schema in plan.schemas.items():
            spec = specs[name]
            self.registry.put_spec(spec.model_copy(update={"dataset": spec.dataset.model_copy(
                update={"schema_": schema})}))
            log.info("pinned the schema of dataset %s for spec %s: %s", spec.dataset.name, name,
                     {k: v.type for k, v in schema.items()})
        kill_point("ingest.before_commit")
        inserted = self.registry.commit_window(self.group, plan.offsets, changes, runs, seen, window_events=appends)
        kill_point("ingest.after_commit")
        for run in runs:
            log.info("window of %s closed (%s): run %s, %d events, %d rows", run.spec_name, run.reason, run.run_id,
                     len(run.event_ids), run.num_rows)
        self.stats.dead_lettered += len(letters)
        return inserted

    def _close_windows(self, plan: Plan, specs: Mapping[str, JobSpec], now: float
                       ) -> tuple[list[RunRecord], list[SeenKey]]:
        """Runs (and their seen keys) of the windows closed in this step; one that cannot become a run is
        dead-lettered whole instead."""
        runs: list[RunRecord] = []
        seen: list[SeenKey] = []
        for win, detail in plan.stage.closed:
            spec = specs.get(win.spec_name)
            schema = (spec.dataset.schema_ if spec else None) or plan.schemas.get(win.spec_name) \
                or self._pinned.get(win.spec_name)
            try:
                run = self._run_for(win, detail, schema, now)
            except DataError as exc:
                self._reject_window(plan, win, exc.headline)
                continue
            runs.append(run)
            seen.extend(SeenKey(win.spec_name, key, run.run_id, now) for key in win.keys)
        for name, detail in plan.stage.scheduled:
            again = self._scheduled_run(name, detail, now)
            if again is not None:
                runs.append(again)
        return runs, seen

    def _scheduled_run(self, spec_name: str, detail: TriggerDetail, now: float) -> RunRecord | None:
        """A schedule slot with no open window: train the spec's latest window again (its files, no new offsets).

        The run id derives from the spec and the slot, so the slot fired again (a retried step, a restart)
        inserts nothing new.
        """
        latest = next((r for r in self.registry.list_runs(spec_name, limit=20) if r.uris and r.command_id is None),
                      None)
        if latest is None:
            log.info("schedule %s of spec %s fired with no window ever stored: nothing to train on yet",
                     detail.schedule, spec_name)
            return None
        return RunRecord(
            run_id=scheduled_run_id(spec_name, float(detail.slot or now)), spec_name=spec_name,
            dataset=latest.dataset, reason="schedule", event_ids=list(latest.event_ids), num_rows=latest.num_rows,
            uris=list(latest.uris), created_at=now, updated_at=now, trigger_detail=detail,
        )

    def _run_for(self, win: Window, detail: TriggerDetail, schema: Mapping[str, ColumnSpec] | None,
                 now: float) -> RunRecord:
        offsets = win.offsets()
        resets = {f"{t}:{p}": n for (t, p), n in self._resets.items()}
        run_id = run_id_for(win.dataset, offsets, spec_name=win.spec_name, resets=resets)
        uris = sorted({u for e in win.events for u in e.uris})
        rows = [row for e in win.events for row in e.rows]
        if rows:  # inline rows become a Parquet file in the store, so a run is fully described by its URIs
            uris.append(write_parquet(rows_table(rows, schema), self.store.join("inline", f"{run_id}.parquet")))
            kill_point("ingest.after_parquet")
        return RunRecord(
            run_id=run_id, spec_name=win.spec_name, dataset=win.dataset, reason=detail.kind,
            event_ids=[e.event_id for e in win.events], offsets=offsets, num_rows=win.num_rows, uris=uris,
            created_at=now, updated_at=now, timings={"window_s": round(now - win.opened_at, 3)},
            trigger_detail=detail,
        )

    @staticmethod
    def _reject_window(plan: Plan, win: Window, why: str) -> None:
        reason = f"the window of spec {win.spec_name} (offsets {win.offsets()}) cannot become a run: {why}"
        log.error("%s; its %d events go to the dead-letter topic", reason, len(win.events))
        for ev in win.events:
            body = {"event_id": ev.event_id, "dataset": win.dataset, "uris": ev.uris, "num_rows": ev.num_rows}
            if ev.rows:
                body["rows"] = ev.rows
            raw = _json_bytes(body)
            plan.reject(EventRecord(ev.topic, ev.partition, ev.offset, None, reason, raw, win.dataset.encode()),
                        reason)

    # -- adopt, or roll back -------------------------------------------------------------------------

    def _adopt(self, plan: Plan, polled: int, inserted: list[str]) -> None:
        self.offsets.update(plan.offsets)
        self.trigger.adopt(plan.stage)
        self._pinned.update(plan.schemas)
        s = self.stats
        s.records += polled
        s.events += plan.events
        s.accepted += plan.accepted
        s.duplicates += plan.duplicates
        s.bad_events += plan.bad
        s.windows_closed += len(plan.stage.closed)
        s.runs_inserted += len(inserted)

    def _rollback(self, source: EventSource, records: Sequence[EventRecord]) -> None:
        """Forget the failed step: reload from the registry and seek the source back to what it stores."""
        for rec in records:  # partitions with no stored offset go back to the first record polled
            self._rewind.setdefault((rec.topic, rec.partition), rec.offset)
        try:
            self._reload(source)
        except Exception as exc:  # the registry is down too: reload at the start of the next step
            self._stale = True
            log.error("could not reload offsets and windows after a failed step (retried next step): %s", exc)

    def _reload(self, source: EventSource) -> None:
        self._stale = True
        self._load()
        positions = {**self._rewind, **{tp: off for tp, off in self.offsets.items()}}
        source.seek(positions)
        self._rewind, self._stale = {}, False

    def _load(self) -> None:
        self.offsets = self.registry.load_offsets(self.group)
        self.trigger = WindowTrigger(self.registry.load_windows(), self.triggers)
        self._resets = Counter((r.topic, r.partition) for r in self.registry.offset_resets(self.group))

    @staticmethod
    def _hint(source: EventSource, offsets: Offsets) -> None:
        if offsets:
            try:
                source.commit(offsets)
            except ServiceError as exc:  # a hint only: the registry holds the offsets
                log.warning("Kafka did not take the offset hint: %s", exc)

    # -- upkeep: seen keys and recreated topics ------------------------------------------------------

    def _maintain(self, source: EventSource, specs: Mapping[str, JobSpec], now: float) -> None:
        if specs and now >= self._next_purge:
            keep = max(s.trigger.dedupe_for for s in specs.values())
            purged = self.registry.purge_seen(now - keep)
            if purged:
                log.info("forgot %d seen keys older than %.0f s", purged, keep)
            self._next_purge = now + PURGE_EVERY_S
        if now >= self._next_marks:
            topics = {s.trigger.topic for s in specs.values()}
            self._check_recreated(source, [tp for tp in self.offsets if tp[0] in topics])
            self._next_marks = now + WATERMARKS_EVERY_S

    def _fresh(self, records: list[EventRecord], source: EventSource) -> list[EventRecord]:
        """The records at or past the stored offsets; records below them trigger a check for a recreated topic."""
        offsets = self.offsets
        below = {(r.topic, r.partition) for r in records if r.offset < offsets.get((r.topic, r.partition), 0)}
        if not below:
            return records
        reset = self._check_recreated(source, sorted(below))
        fresh = [r for r in records if (r.topic, r.partition) not in reset
                 and r.offset >= offsets.get((r.topic, r.partition), 0)]
        dropped = len(records) - len(fresh)
        self.stats.replays_dropped += dropped
        log.info("dropped %d record(s) below the stored offsets of %s (replays, or a reset partition read again)",
                 dropped, sorted(below))
        return fresh

    def _check_recreated(self, source: EventSource, partitions: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Reset, on the record, every partition whose end offset fell below the stored next offset."""
        done = set()
        for tp, (first, end) in source.watermarks(partitions).items():
            stored = self.offsets.get(tp)
            if stored is None or end >= stored:
                continue
            reason = (f"topic recreated: {tp[0]}[{tp[1]}] now ends at offset {end} (first {first}), below the stored "
                      f"next offset {stored}; consuming it from its new beginning")
            self.registry.reset_offsets(self.group, {tp: first}, reason=reason, actor="controller")
            log.warning("%s (group %s)", reason, self.group)
            self.offsets[tp] = first
            self._resets[tp] += 1
            self.stats.offset_resets += 1
            source.seek({tp: first})
            done.add(tp)
        return done


def _json_bytes(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, default=str).encode()
