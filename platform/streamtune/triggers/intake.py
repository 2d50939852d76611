"""Intake: what one poll's records become, checked one by one before anything is stored.

:meth:`Intake.plan` walks a poll's records in order and stages each into the windows of the specs that watch
its topic and dataset (a :class:`~streamtune.triggers.window.TriggerStage`), or refuses it with a reason:

- a record that did not decode (not JSON, not a DataArrival, too big) is refused with the decoder's reason;
- an event for a dataset that no spec passed in watches (on that topic) is refused ("no spec ..."): it goes
  to the dead-letter topic, never silently away;
- each URI must pass :func:`~streamtune.data.uris.check_uri` for the spec's ``dataset.uri_roots`` (or the
  platform's own folders); inline rows must fit the dataset schema, given or pinned from the first rows;
- an event id or a file already in an open window, in a window closed in this poll, or in the registry's seen
  keys for the spec (within ``trigger.dedupe_for``) makes the event a duplicate: counted, its offset consumed,
  nothing added. An event naming some files already trained on and some new ones is refused, since its
  ``num_rows`` cannot be split between them.

Nothing here writes: the plan says which offsets move, which records to dead-letter and why, and which
schemas were pinned; the ingestor stores it all in one go.

Example:
    >>> from streamtune.triggers.window import WindowTrigger
    >>> intake = Intake(["/srv/st/artifacts"])
    >>> plan = intake.plan([], {}, WindowTrigger().stage(), schemas={}, seen=lambda *a, **k: set(), now=0.0)
    >>> plan.offsets, plan.rejected
    ({}, {})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from streamtune.config.jobspec import ColumnSpec, JobSpec
from streamtune.data.inline import check_rows, pin_schema
from streamtune.data.uris import UriChecker, check_all
from streamtune.errors import DataError
from streamtune.events.source import EventRecord, Offsets
from streamtune.triggers.window import TriggerStage, WindowEvent

__all__ = ["Intake", "Plan", "SeenLookup"]

SeenLookup = Callable[..., set[str]]
"""``seen(spec_name, keys, since=...) -> keys already seen``: :meth:`Registry.seen_keys`."""
Schema = Mapping[str, ColumnSpec]


@dataclass
class Plan:
    """What one poll changes, staged: nothing of it is stored or adopted yet."""

    stage: TriggerStage
    offsets: Offsets = field(default_factory=dict)
    rejected: dict[tuple[str, int, int], tuple[EventRecord, list[str]]] = field(default_factory=dict)
    schemas: dict[str, dict[str, ColumnSpec]] = field(default_factory=dict)
    duplicates: int = 0
    bad: int = 0
    accepted: int = 0
    events: int = 0

    def reject(self, record: EventRecord, reason: str) -> None:
        """Refuse ``record`` (one dead letter per record, with every reason given for it)."""
        key = (record.topic, record.partition, record.offset)
        self.rejected.setdefault(key, (record, []))[1].append(reason)


class Intake:
    """Checks records against the specs that watch them and stages the good ones into windows.

    Args:
        platform_roots: The platform's own data folders: what a dataset with no ``uri_roots`` may name.
    """

    def __init__(self, platform_roots: Sequence[str]) -> None:
        self.platform_roots = list(platform_roots)
        self._checkers: dict[tuple[str, ...], UriChecker] = {}

    def plan(self, records: Sequence[EventRecord], specs: Mapping[str, JobSpec], stage: TriggerStage, *,
             schemas: Mapping[str, Schema], seen: SeenLookup, now: float) -> Plan:
        """Stage ``records`` (all at or past the stored offsets) into ``stage``; return the plan.

        Args:
            records: One poll's records, in offset order per partition.
            specs: Every stored spec by name (paused ones too): routing uses these and no others.
            stage: The windows to fill (see :meth:`WindowTrigger.stage`).
            schemas: Schemas pinned earlier for specs that give none.
            seen: Looks up keys the registry has seen for a spec.
            now: The poll's time.
        """
        plan = Plan(stage)
        routes = _routes(specs)
        candidates: list[tuple[EventRecord, list[tuple[JobSpec, WindowEvent]]]] = []
        for rec in records:
            plan.offsets[(rec.topic, rec.partition)] = rec.offset + 1
            accepted = self._check(rec, routes, plan, schemas)
            if accepted:
                candidates.append((rec, accepted))
        known = _known_keys(candidates, seen, now)
        for rec, accepted in candidates:
            dups = sum(self._stage(rec, spec, ev, known[spec.name], plan, now) for spec, ev in accepted)
            plan.duplicates += dups == len(accepted)
        stage.tick(dict(specs), now=now)
        return plan

    def checker(self, spec: JobSpec) -> UriChecker:
        """The URI check of a spec's dataset (kept per set of roots)."""
        key = tuple(spec.dataset.uri_roots)
        checker = self._checkers.get(key)
        if checker is None:
            checker = self._checkers[key] = UriChecker(spec.dataset.uri_roots, self.platform_roots)
        return checker

    def _check(self, rec: EventRecord, routes: dict[tuple[str, str], list[JobSpec]], plan: Plan,
               schemas: Mapping[str, Schema]) -> list[tuple[JobSpec, WindowEvent]]:
        event = rec.event
        if event is None:
            plan.bad += 1
            plan.reject(rec, rec.error or "record could not be decoded")
            return []
        plan.events += 1
        targets = routes.get((rec.topic, event.dataset))
        if not targets:
            plan.reject(rec, f'Got dataset "{event.dataset}" on topic {rec.topic}; no submitted spec trains on it '
                        "there (submit its spec, then replay this record from the dead-letter topic)")
            return []
        out = []
        for spec in targets:
            try:
                out.append((spec, self._window_event(rec, spec, plan, schemas)))
            except DataError as exc:
                plan.reject(rec, exc.headline if len(targets) == 1 else f"spec {spec.name}: {exc.headline}")
        return out

    def _window_event(self, rec: EventRecord, spec: JobSpec, plan: Plan, schemas: Mapping[str, Schema]
                      ) -> WindowEvent:
        event = rec.event
        assert event is not None
        uris = check_all(event.uris, self.checker(spec)) if event.uris else []
        rows = event.rows or []
        if rows:
            _check_count(event.num_rows, len(rows), bool(uris))
            schema = spec.dataset.schema_ or plan.schemas.get(spec.name) or schemas.get(spec.name)
            pinned = None
            if schema is None:
                schema = pinned = pin_schema(rows)
            check_rows(rows, schema)
            if pinned is not None:
                plan.schemas[spec.name] = pinned
        return WindowEvent(event.event_id, rec.topic, rec.partition, rec.offset, event.num_rows, uris, rows)

    @staticmethod
    def _stage(rec: EventRecord, spec: JobSpec, ev: WindowEvent, known: set[str], plan: Plan, now: float) -> bool:
        """Add ``ev`` to the spec's window unless it repeats one; True when it was a duplicate."""
        stage, name = plan.stage, spec.name
        id_key = f"id:{ev.event_id}"
        if id_key in known or stage.has_key(name, id_key):
            return True
        repeated = [u for u in ev.uris if f"uri:{u}" in known or stage.has_key(name, f"uri:{u}")]
        if repeated:
            if len(repeated) == len(ev.uris) and not ev.rows:
                return True
            shown = ", ".join(repeated[:3]) + (f" and {len(repeated) - 3} more" if len(repeated) > 3 else "")
            plan.reject(rec, f"Got files spec {name} already trained on ({shown}) beside new ones in one event; "
                        "its num_rows cannot be split between them (send the new files in an event of their own)")
            return False
        stage.add(spec, ev, now=now)
        plan.accepted += 1
        return False


def _check_count(num_rows: int, inline: int, has_uris: bool) -> None:
    if (num_rows != inline and not has_uris) or num_rows < inline:
        rule = "at least" if has_uris else "equal to"
        raise DataError(f'Got "{num_rows}" for num_rows of an event with {inline} inline rows; it must be {rule} '
                        "the number of rows")


def _routes(specs: Mapping[str, JobSpec]) -> dict[tuple[str, str], list[JobSpec]]:
    routes: dict[tuple[str, str], list[JobSpec]] = {}
    for spec in specs.values():
        routes.setdefault((spec.trigger.topic, spec.dataset.name), []).append(spec)
    return routes


def _known_keys(candidates: Sequence[tuple[EventRecord, list[tuple[JobSpec, WindowEvent]]]], seen: SeenLookup,
                now: float) -> dict[str, set[str]]:
    """Per spec, which of the candidates' keys the registry has seen within the spec's ``dedupe_for``."""
    keys: dict[str, list[str]] = {}
    specs: dict[str, JobSpec] = {}
    for _, accepted in candidates:
        for spec, ev in accepted:
            specs[spec.name] = spec
            keys.setdefault(spec.name, []).extend(ev.keys())
    return {name: seen(name, wanted, since=now - specs[name].trigger.dedupe_for) for name, wanted in keys.items()}
