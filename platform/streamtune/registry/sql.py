"""The registry's queries, written once for every SQL database (:class:`SqlStore`).

:class:`~streamtune.registry.sqlite.SqliteRegistry` and :class:`~streamtune.registry.postgres.PostgresRegistry`
are this class with a connection and a :mod:`~streamtune.registry.dialect`. Plumbing, fencing and migrations
live in ``sql_base.py``; commands, the lease, offset resets and tokens in ``sql_control.py``.

Where SQLite serializes every write transaction on the file lock (``BEGIN IMMEDIATE``), Postgres runs them
side by side, so each write here locks what it reads before it writes (``tx.for_update``, ``tx.lock``):
``update_run`` its run's row, ``register_model`` the model name (two registrations never compute the same next
version), ``commit_window`` and ``reset_offsets`` the consumer group (offsets only move forward), aliases
the alias (each event records the true previous version).

Example:
    >>> from streamtune.registry import open_registry
    >>> with open_registry("sqlite:///:memory:") as reg:
    ...     isinstance(reg, SqlStore), reg.register_model("ctr", "r-1", "file:///a", {}, {}, {}).version
    (True, 1)
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from streamtune.config.jobspec import JobSpec
from streamtune.errors import RegistryError
from streamtune.registry.base import Registry
from streamtune.registry.dialect import Row, Tx, insert_sql, upsert_sql
from streamtune.registry.manifest import check_digest
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SeenKey, SpecRecord
from streamtune.registry.schema import _dumps, _loads
from streamtune.registry.sql_control import _OFFSET_UPSERT, SqlControl

__all__ = ["SqlStore"]

_RUN_COLUMNS = tuple(RunRecord.model_fields)
_JSON_RUN_COLUMNS = frozenset({"event_ids", "offsets", "uris", "sweep", "gate", "timings", "attempts",
                               "trigger_detail"})
_IMMUTABLE_RUN_FIELDS = frozenset({"run_id", "dataset", "offsets", "created_at"})
_MODEL_COLUMNS = tuple(ModelVersion.model_fields)
_MODEL_BY_RUN = "SELECT * FROM models WHERE name = ? AND run_id = ?"
_MODEL_BY_VERSION = "SELECT * FROM models WHERE name = ? AND version = ?"
_ALIAS_VERSION = "SELECT version FROM aliases WHERE name = ? AND alias = ?"
_SPEC = "SELECT * FROM specs WHERE name = ?"
_SPEC_UPSERT = upsert_sql("specs", ("name", "spec", "updated_at"), key=("name",))  # paused stays as it was
_SEEN_INSERT = insert_sql("seen_keys", ("spec_name", "key", "run_id", "first_seen"), ignore=("spec_name", "key"))
_RUN_INSERT = insert_sql("runs", _RUN_COLUMNS, ignore=("run_id",))
_OFFSETS = "SELECT topic, part, next_offset FROM consumer_offsets WHERE grp = ?"
_WINDOW_UPSERT = upsert_sql("windows", ("key", "state", "updated_at"), key=("key",))
_WINDOW_EVENT_INSERT = insert_sql("window_events", ("key", "body"))
_ALIAS_UPSERT = upsert_sql("aliases", ("name", "alias", "version", "updated_at"), key=("name", "alias"))
_ALIAS_EVENT = insert_sql("alias_events", ("name", "alias", "version", "previous", "reason", "at"))


def _runs_filter(spec_name: str | None, status: RunStatus | str | list[RunStatus | str] | None
                 ) -> tuple[str, tuple[Any, ...]]:
    """The ``WHERE`` clause (with a leading space, or empty) and its parameters for runs by spec and status."""
    where: list[str] = []
    params: list[Any] = []
    if spec_name is not None:
        where.append("spec_name = ?")
        params.append(spec_name)
    if status is not None:
        values = _status_values(status)
        where.append(f"status IN ({', '.join('?' * len(values))})")
        params.extend(values)
    return (f" WHERE {' AND '.join(where)}" if where else ""), tuple(params)


def _status_values(status: RunStatus | str | list[RunStatus | str]) -> list[str]:
    items = status if isinstance(status, list | tuple | set | frozenset) else [status]
    values = []
    for item in items:
        try:
            values.append(RunStatus(item).value)
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise RegistryError(f'Got "{item}" for status; must be one of {allowed}') from None
    return values


class SqlStore(SqlControl, Registry):
    """A :class:`Registry` in a SQL database: every query, for every dialect.

    Not opened directly: :func:`~streamtune.registry.open_registry` picks the subclass for a URL
    (:class:`~streamtune.registry.sqlite.SqliteRegistry`, :class:`~streamtune.registry.postgres.PostgresRegistry`).

    Example:
        >>> from streamtune.registry import open_registry
        >>> reg = open_registry("sqlite:///:memory:")
        >>> reg.register_model("ctr", "r-1", "file:///a", {}, {"auc": 0.91}, {}).version
        1
        >>> reg.close()
    """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- specs -------------------------------------------------------------------------------------

    def put_spec(self, spec: JobSpec) -> SpecRecord:
        """Store a spec under its name, replacing any earlier one (see :meth:`Registry.put_spec`)."""
        text = _dumps(spec.model_dump(mode="json"), f"spec {spec.name}")
        with self._tx() as tx:
            tx.run(_SPEC_UPSERT, (spec.name, text, time.time()))
            return self._spec_from(self._must(tx.one(_SPEC, (spec.name,))))

    def set_spec_paused(self, name: str, paused: bool) -> SpecRecord:
        """Pause or resume a stored spec (see :meth:`Registry.set_spec_paused`)."""
        with self._tx() as tx:
            if tx.run("UPDATE specs SET paused = ?, updated_at = ? WHERE name = ?",
                      (int(paused), time.time(), name)) != 1:
                raise RegistryError(f'Got "{name}" for spec; no spec of that name is stored')
            return self._spec_from(self._must(tx.one(_SPEC, (name,))))

    def set_spec_health(self, name: str, *, error: str | None, retry_at: float | None = None) -> SpecRecord:
        """Record a spec's failed turn (``error``, and when to try again) or its recovery (``error=None``)."""
        with self._tx() as tx:
            if error is None:
                done = tx.run("UPDATE specs SET error = NULL, failures = 0, retry_at = NULL WHERE name = ?", (name,))
            else:
                done = tx.run("UPDATE specs SET error = ?, failures = failures + 1, retry_at = ? WHERE name = ?",
                              (error, retry_at, name))
            if done != 1:
                raise RegistryError(f'Got "{name}" for spec; no spec of that name is stored')
            return self._spec_from(self._must(tx.one(_SPEC, (name,))))

    def delete_spec(self, name: str) -> bool:
        """Remove a spec, its open window and its seen keys; its runs and models stay. False if there was none."""
        with self._tx() as tx:
            gone = tx.run("DELETE FROM specs WHERE name = ?", (name,)) == 1
            tx.run("DELETE FROM windows WHERE key = ?", (name,))
            tx.run("DELETE FROM window_events WHERE key = ?", (name,))
            tx.run("DELETE FROM seen_keys WHERE spec_name = ?", (name,))
            return gone

    def get_spec(self, name: str) -> SpecRecord | None:
        """Return the spec stored under ``name``, or None."""
        rows = self._query(_SPEC, (name,))
        return self._spec_from(rows[0]) if rows else None

    def list_specs(self) -> list[SpecRecord]:
        """Return every stored spec, ordered by name."""
        return [self._spec_from(r) for r in self._query("SELECT * FROM specs ORDER BY name")]

    @staticmethod
    def _spec_from(row: Row) -> SpecRecord:
        try:
            spec = JobSpec.model_validate(_loads(row["spec"]))
        except ValidationError as exc:
            raise RegistryError(f"stored spec {row['name']} is no longer a valid JobSpec: {exc}",
                                fix="submit it again") from None
        return SpecRecord(name=row["name"], spec=spec, paused=bool(row["paused"]), updated_at=row["updated_at"],
                          error=row["error"], failures=row["failures"], retry_at=row["retry_at"])

    # -- the exactly-once core ---------------------------------------------------------------------

    def commit_window(
        self,
        group: str,
        offsets: dict[tuple[str, int], int],
        windows: dict[str, dict[str, Any] | None],
        new_runs: list[RunRecord],
        seen: list[SeenKey] | None = None,
        *,
        window_events: dict[str, list[Any]] | None = None,
    ) -> list[str]:
        """Store offsets, window state and events, new runs and seen keys atomically (see
        :meth:`Registry.commit_window`)."""
        window_rows = [self._window_rows(k, v) for k, v in windows.items()]
        appends = [(k, [_dumps(e, f"event of window {k}") for e in events])
                   for k, events in (window_events or {}).items() if events]
        run_rows = [self._run_row(run) for run in new_runs]
        with self._tx() as tx:
            self._upsert_offsets(tx, group, offsets)
            self._write_windows(tx, window_rows)
            self._append_events(tx, appends)
            inserted = self._insert_runs(tx, run_rows)
            tx.many(_SEEN_INSERT, [(k.spec_name, k.key, k.run_id, k.first_seen) for k in seen or ()])
            return inserted

    def seen_keys(self, spec_name: str, keys: list[str], *, since: float | None = None) -> set[str]:
        """Return which of ``keys`` spec ``spec_name`` has seen in a closed window, at ``since`` or later."""
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        age = "" if since is None else " AND first_seen >= ?"
        extra: tuple[Any, ...] = () if since is None else (since,)
        for start in range(0, len(unique), 500):  # stay under every database's parameter limit
            chunk = unique[start:start + 500]
            sql = f"SELECT key FROM seen_keys WHERE spec_name = ?{age} AND key IN ({', '.join('?' * len(chunk))})"
            found.update(r["key"] for r in self._query(sql, (spec_name, *extra, *chunk)))
        return found

    def purge_seen(self, older_than: float) -> int:
        """Forget seen keys first seen before ``older_than`` (Unix time); return how many."""
        with self._tx() as tx:
            return tx.run("DELETE FROM seen_keys WHERE first_seen < ?", (older_than,))

    @staticmethod
    def _upsert_offsets(tx: Tx, group: str, offsets: dict[tuple[str, int], int]) -> None:
        tx.lock("offsets", group)  # read, check, write: no other writer of this group in between
        now = time.time()
        stored = {(r["topic"], r["part"]): r["next_offset"] for r in tx.all(_OFFSETS, (group,))}
        for (topic, part), offset in offsets.items():
            if offset < stored.get((topic, int(part)), 0):
                raise RegistryError(
                    f"Got offset {offset} for {topic}:{part} of group {group}; stored offsets only move forward "
                    f"(stored: {stored[(topic, int(part))]})",
                    fix="rewind on purpose with reset_offsets(), which records who and why",
                )
        tx.many(_OFFSET_UPSERT, [(group, topic, int(part), int(off), now) for (topic, part), off in offsets.items()])

    @staticmethod
    def _window_rows(key: str, state: dict[str, Any] | None) -> tuple[str, str | None, list[str]]:
        """A window's header (its state, events left as an empty list) and its events, as stored."""
        if not state:
            return key, None, []
        header = {k: ([] if k == "events" else v) for k, v in state.items()}
        events = state.get("events") or []
        return key, _dumps(header, f"window {key}"), [_dumps(e, f"event of window {key}") for e in events]

    @staticmethod
    def _write_windows(tx: Tx, rows: list[tuple[str, str | None, list[str]]]) -> None:
        now = time.time()
        for key, header, events in rows:
            tx.run("DELETE FROM window_events WHERE key = ?", (key,))
            if header is None:
                tx.run("DELETE FROM windows WHERE key = ?", (key,))
                continue
            tx.run(_WINDOW_UPSERT, (key, header, now))
            tx.many(_WINDOW_EVENT_INSERT, [(key, body) for body in events])

    def _append_events(self, tx: Tx, appends: list[tuple[str, list[str]]]) -> None:
        now = time.time()
        for key, bodies in appends:
            if tx.run("UPDATE windows SET updated_at = ? WHERE key = ?", (now, key)) != 1:
                raise RegistryError(f"cannot append {len(bodies)} event(s) to window {key}: it has no stored state",
                                    fix="store the window's state (windows={key: state}) in the same commit")
            tx.many(_WINDOW_EVENT_INSERT, [(key, body) for body in bodies])

    def _insert_runs(self, tx: Tx, rows: list[dict[str, Any]]) -> list[str]:
        inserted = []
        for row in rows:
            if tx.run(_RUN_INSERT, tuple(row[c] for c in _RUN_COLUMNS)) == 1:
                inserted.append(row["run_id"])
                continue
            old = self._must(tx.one("SELECT dataset, offsets FROM runs WHERE run_id = ?", (row["run_id"],)))
            if (old["dataset"], old["offsets"]) != (row["dataset"], row["offsets"]):
                raise RegistryError(
                    f"run {row['run_id']} already exists for dataset {old['dataset']} offsets "
                    f"{old['offsets']}, not {row['dataset']} {row['offsets']}; run ids collide",
                    fix="derive run ids with run_id_for(dataset, offsets, spec_name=...)",
                )
        return inserted

    def load_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """Return ``(topic, partition) -> next offset`` stored for ``group``."""
        return {(r["topic"], r["part"]): r["next_offset"] for r in self._query(_OFFSETS, (group,))}

    def load_windows(self) -> dict[str, dict[str, Any]]:
        """Return every stored window state, by window key, with its appended events in order."""
        with self._lock, self._driver_errors():  # both tables from one snapshot
            tx = Tx(self._open_conn(), self.dialect)
            try:
                tx.run(self.dialect.begin_read)
                states = {r["key"]: _loads(r["state"]) for r in tx.all("SELECT key, state FROM windows")}
                events = tx.all("SELECT key, body FROM window_events ORDER BY seq")
                tx.run("COMMIT")
            except BaseException:
                self._rollback(tx)
                raise
        for row in events:
            state = states.get(row["key"])
            if state is not None:
                state.setdefault("events", []).append(_loads(row["body"]))
        return states

    # -- runs --------------------------------------------------------------------------------------

    @staticmethod
    def _run_row(run: RunRecord) -> dict[str, Any]:
        row = run.model_dump(mode="json")
        for col in _JSON_RUN_COLUMNS:
            if row[col] is not None:
                row[col] = _dumps(row[col], f"run {run.run_id} field {col}")
        return row

    @staticmethod
    def _run_from(row: Row) -> RunRecord:
        data = {c: row[c] for c in _RUN_COLUMNS}
        for col in _JSON_RUN_COLUMNS:
            data[col] = _loads(data[col])
        return RunRecord.model_validate(data)

    def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run, or None."""
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return self._run_from(rows[0]) if rows else None

    def list_runs(
        self,
        spec_name: str | None = None,
        status: RunStatus | str | list[RunStatus | str] | None = None,
        limit: int = 100,
        *,
        oldest_first: bool = False,
    ) -> list[RunRecord]:
        """Return runs newest (or oldest) first, filtered by spec and status (see :meth:`Registry.list_runs`)."""
        if limit < 1:
            raise RegistryError(f'Got "{limit}" for limit; must be at least 1')
        clause, params = _runs_filter(spec_name, status)
        order = "ASC" if oldest_first else "DESC"
        sql = f"SELECT * FROM runs{clause} ORDER BY created_at {order}, seq {order} LIMIT ?"
        return [self._run_from(r) for r in self._query(sql, (*params, limit))]

    def count_runs(self, spec_name: str | None = None,
                   status: RunStatus | str | list[RunStatus | str] | None = None) -> int:
        """Count runs by spec and status (see :meth:`Registry.count_runs`)."""
        clause, params = _runs_filter(spec_name, status)
        rows = self._query(f"SELECT COUNT(*) AS n FROM runs{clause}", params)
        return int(rows[0]["n"])

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change fields of a run and set ``updated_at`` (see :meth:`Registry.update_run`)."""
        unknown = sorted(set(fields) - set(_RUN_COLUMNS))
        if unknown:
            raise RegistryError(
                f"cannot update run {run_id}: unknown field(s) {', '.join(unknown)}; "
                f"fields are {', '.join(_RUN_COLUMNS)}"
            )
        frozen = sorted(set(fields) & _IMMUTABLE_RUN_FIELDS)
        if frozen:
            raise RegistryError(f"cannot update run {run_id}: {', '.join(frozen)} cannot change")
        with self._tx() as tx:
            row = tx.one(f"SELECT * FROM runs WHERE run_id = ?{tx.for_update}", (run_id,))
            if row is None:
                raise RegistryError(f"cannot update run {run_id}: no such run in {self.url}")
            run = self._merged_run(run_id, {**self._run_from(row).model_dump(), "updated_at": time.time(), **fields})
            new = self._run_row(run)
            cols = [c for c in _RUN_COLUMNS if c not in _IMMUTABLE_RUN_FIELDS]
            tx.run(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols)} WHERE run_id = ?",
                   (*(new[c] for c in cols), run_id))
        return run

    @staticmethod
    def _merged_run(run_id: str, merged: dict[str, Any]) -> RunRecord:
        try:
            return RunRecord.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(
                f'got "{e.get("input")}" for {".".join(map(str, e["loc"]))}: {e["msg"]}' for e in exc.errors()
            )
            raise RegistryError(f"cannot update run {run_id}: {problems}") from None

    # -- models ------------------------------------------------------------------------------------

    @staticmethod
    def _model_from(row: Row) -> ModelVersion:
        data = {c: row[c] for c in _MODEL_COLUMNS}
        for col in ("params", "metrics", "lineage"):
            data[col] = _loads(data[col])
        return ModelVersion.model_validate(data)

    def register_model(
        self,
        name: str,
        run_id: str,
        artifact_uri: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        manifest_sha256: str | None = None,
    ) -> ModelVersion:
        """Register the next version of ``name``; idempotent per run (see :meth:`Registry.register_model`)."""
        if not name:
            raise RegistryError('Got "" for model name; must be a non-empty string')
        if manifest_sha256 is not None:
            check_digest(manifest_sha256, f"manifest_sha256 of model {name} run {run_id}")
        blobs = [
            _dumps(v, f"model {name} {k}")
            for k, v in (("params", params), ("metrics", metrics), ("lineage", lineage))
        ]
        with self._tx() as tx:
            tx.lock("models", name)  # one registration of this model at a time: no two get the same version
            row = tx.one(_MODEL_BY_RUN, (name, run_id))
            if row is not None:
                return self._model_from(row)
            top = self._must(tx.one("SELECT MAX(version) AS v FROM models WHERE name = ?", (name,)))
            version = (top["v"] or 0) + 1
            tx.run(insert_sql("models", _MODEL_COLUMNS),
                   (name, version, run_id, artifact_uri, *blobs, time.time(), manifest_sha256))
            return self._model_from(self._must(tx.one(_MODEL_BY_VERSION, (name, version))))

    def get_model(self, name: str, version: int) -> ModelVersion | None:
        """Return one model version, or None."""
        rows = self._query(_MODEL_BY_VERSION, (name, version))
        return self._model_from(rows[0]) if rows else None

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Return model versions ordered by name then version."""
        if name is None:
            rows = self._query("SELECT * FROM models ORDER BY name, version")
        else:
            rows = self._query("SELECT * FROM models WHERE name = ? ORDER BY version", (name,))
        return [self._model_from(r) for r in rows]

    # -- aliases -----------------------------------------------------------------------------------

    @staticmethod
    def _record_alias(tx: Tx, name: str, alias: str, version: int | None, reason: str) -> AliasEvent:
        row = tx.one(_ALIAS_VERSION, (name, alias))
        event = AliasEvent(
            name=name, alias=alias, version=version, previous=row["version"] if row else None, reason=reason
        )
        if version is None:
            tx.run("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
        else:
            tx.run(_ALIAS_UPSERT, (name, alias, version, event.at))
        tx.run(_ALIAS_EVENT, (name, alias, version, event.previous, reason, event.at))
        return event

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> AliasEvent:
        """Point ``alias`` at ``version`` and record the change (see :meth:`Registry.set_alias`)."""
        if not alias:
            raise RegistryError(f'Got "" for the alias of model {name}; must be a non-empty string')
        with self._tx() as tx:
            tx.lock("alias", name, alias)  # each event records the version it really replaced
            if tx.one(_MODEL_BY_VERSION, (name, version)) is None:
                have = sorted(r["version"] for r in tx.all("SELECT version FROM models WHERE name = ?", (name,)))
                raise RegistryError(
                    f'cannot point {name}@{alias} at version {version}: model "{name}" has no such version '
                    f"(registered: {have or 'none'})"
                )
            return self._record_alias(tx, name, alias, version, reason)

    def remove_alias(self, name: str, alias: str, reason: str = "") -> AliasEvent | None:
        """Unset ``alias``; returns the event, or None if it was not set."""
        with self._tx() as tx:
            tx.lock("alias", name, alias)
            row = tx.one(_ALIAS_VERSION, (name, alias))
            return None if row is None else self._record_alias(tx, name, alias, None, reason)

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` points at, or None."""
        rows = self._query(
            "SELECT m.* FROM aliases a JOIN models m ON m.name = a.name AND m.version = a.version "
            "WHERE a.name = ? AND a.alias = ?",
            (name, alias),
        )
        return self._model_from(rows[0]) if rows else None

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Return alias changes of ``name`` (of one alias if given), oldest first."""
        sql = "SELECT name, alias, version, previous, reason, at FROM alias_events WHERE name = ?"
        params: tuple[Any, ...] = (name,)
        if alias is not None:
            sql += " AND alias = ?"
            params = (name, alias)
        return [AliasEvent.model_validate(dict(r)) for r in self._query(sql + " ORDER BY seq", params)]
