"""SQLite implementation of :class:`~streamtune.registry.base.Registry` on the stdlib ``sqlite3``.

The SDK, the CLI and the controller (a thread or another process) share one database file. The file runs
in WAL mode so readers never block the writer, and every write opens ``BEGIN IMMEDIATE``, so two
processes serialize on the file lock (waiting up to 10 s) instead of failing on a stale read. In a
process, one connection is shared between threads behind a lock. Plumbing, fencing and migrations live in
``sql_base.py``; commands, the lease and offset resets in ``sql_control.py``.

Example:
    >>> import tempfile
    >>> from streamtune.registry.commands import RunNow
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/sub/registry.db"
    >>> with SqlRegistry(url) as reg:
    ...     _ = reg.append_command(RunNow(spec="ctr"), actor="ana")
    >>> [c.command.describe() for c in SqlRegistry(url).list_commands()]
    ['run ctr now']
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from pydantic import ValidationError

from streamtune.config.jobspec import JobSpec
from streamtune.errors import RegistryError
from streamtune.registry.base import Registry
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
from streamtune.registry.sql_control import SqlControl
from streamtune.registry.sqlite_schema import SCHEMA_VERSION, _dumps, _loads, parse_sqlite_url

__all__ = ["SCHEMA_VERSION", "SqlRegistry", "parse_sqlite_url"]

_RUN_COLUMNS = tuple(RunRecord.model_fields)
_JSON_RUN_COLUMNS = frozenset({"event_ids", "offsets", "uris", "sweep", "gate", "timings"})
_IMMUTABLE_RUN_FIELDS = frozenset({"run_id", "dataset", "offsets", "created_at"})
_MODEL_COLUMNS = tuple(ModelVersion.model_fields)
_MODEL_BY_RUN = "SELECT * FROM models WHERE name = ? AND run_id = ?"
_MODEL_BY_VERSION = "SELECT * FROM models WHERE name = ? AND version = ?"
_ALIAS_VERSION = "SELECT version FROM aliases WHERE name = ? AND alias = ?"
_SPEC = "SELECT * FROM specs WHERE name = ?"


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


class SqlRegistry(SqlControl, Registry):
    """A :class:`Registry` in a SQLite file, shared safely by threads and processes.

    Args:
        url: ``sqlite:///`` followed by an absolute path (parent folders are created), or
            ``sqlite:///:memory:`` for a private in-memory database (tests, doctests).

    Raises:
        RegistryError: the URL is invalid or Postgres, the file cannot be opened, or it was created by a
            newer streamtune.

    Example:
        >>> reg = SqlRegistry("sqlite:///:memory:")
        >>> reg.register_model("ctr", "r-1", "file:///a", {}, {"auc": 0.91}, {}).version
        1
        >>> reg.close()
    """

    def __repr__(self) -> str:
        return f"SqlRegistry({self.url!r})"

    # -- specs -------------------------------------------------------------------------------------

    def put_spec(self, spec: JobSpec) -> SpecRecord:
        """Store a spec under its name, replacing any earlier one (see :meth:`Registry.put_spec`)."""
        text = _dumps(spec.model_dump(mode="json"), f"spec {spec.name}")
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO specs (name, spec, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                (spec.name, text, time.time()),
            )
            return self._spec_from(conn.execute(_SPEC, (spec.name,)).fetchone())

    def set_spec_paused(self, name: str, paused: bool) -> SpecRecord:
        """Pause or resume a stored spec (see :meth:`Registry.set_spec_paused`)."""
        with self._tx() as conn:
            done = conn.execute("UPDATE specs SET paused = ?, updated_at = ? WHERE name = ?",
                                (int(paused), time.time(), name))
            if done.rowcount != 1:
                raise RegistryError(f'Got "{name}" for spec; no spec of that name is stored')
            return self._spec_from(conn.execute(_SPEC, (name,)).fetchone())

    def get_spec(self, name: str) -> SpecRecord | None:
        """Return the spec stored under ``name``, or None."""
        rows = self._query(_SPEC, (name,))
        return self._spec_from(rows[0]) if rows else None

    def list_specs(self) -> list[SpecRecord]:
        """Return every stored spec, ordered by name."""
        return [self._spec_from(r) for r in self._query("SELECT * FROM specs ORDER BY name")]

    @staticmethod
    def _spec_from(row: sqlite3.Row) -> SpecRecord:
        try:
            spec = JobSpec.model_validate(_loads(row["spec"]))
        except ValidationError as exc:
            raise RegistryError(f"stored spec {row['name']} is no longer a valid JobSpec: {exc}",
                                fix="submit it again") from None
        return SpecRecord(name=row["name"], spec=spec, paused=bool(row["paused"]), updated_at=row["updated_at"])

    # -- the exactly-once core ---------------------------------------------------------------------

    def commit_window(
        self,
        group: str,
        offsets: dict[tuple[str, int], int],
        windows: dict[str, dict[str, Any] | None],
        new_runs: list[RunRecord],
    ) -> list[str]:
        """Store offsets, window state and new runs atomically (see :meth:`Registry.commit_window`)."""
        window_rows = [(k, _dumps(v, f"window {k}") if v else None) for k, v in windows.items()]
        run_rows = [self._run_row(run) for run in new_runs]
        with self._tx() as conn:
            self._upsert_offsets(conn, group, offsets)
            self._write_windows(conn, window_rows)
            return self._insert_runs(conn, run_rows)

    @staticmethod
    def _upsert_offsets(conn: sqlite3.Connection, group: str, offsets: dict[tuple[str, int], int]) -> None:
        now = time.time()
        stored = {(r["topic"], r["part"]): r["next_offset"] for r in conn.execute(
            "SELECT topic, part, next_offset FROM consumer_offsets WHERE grp = ?", (group,))}
        for (topic, part), offset in offsets.items():
            if offset < stored.get((topic, int(part)), 0):
                raise RegistryError(
                    f"Got offset {offset} for {topic}:{part} of group {group}; stored offsets only move forward "
                    f"(stored: {stored[(topic, int(part))]})",
                    fix="rewind on purpose with reset_offsets(), which records who and why",
                )
        conn.executemany(
            "INSERT INTO consumer_offsets (grp, topic, part, next_offset, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset = excluded.next_offset, "
            "updated_at = excluded.updated_at",
            [(group, topic, int(part), int(off), now) for (topic, part), off in offsets.items()],
        )

    @staticmethod
    def _write_windows(conn: sqlite3.Connection, rows: list[tuple[str, str | None]]) -> None:
        now = time.time()
        for key, state in rows:
            if state is None:
                conn.execute("DELETE FROM windows WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT INTO windows (key, state, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                    (key, state, now),
                )

    def _insert_runs(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[str]:
        sql = "INSERT OR IGNORE INTO runs ({}) VALUES ({})".format(
            ", ".join(_RUN_COLUMNS), ", ".join("?" * len(_RUN_COLUMNS))
        )
        inserted = []
        for row in rows:
            if conn.execute(sql, tuple(row[c] for c in _RUN_COLUMNS)).rowcount == 1:
                inserted.append(row["run_id"])
                continue
            old = conn.execute(
                "SELECT dataset, offsets FROM runs WHERE run_id = ?", (row["run_id"],)
            ).fetchone()
            if (old["dataset"], old["offsets"]) != (row["dataset"], row["offsets"]):
                raise RegistryError(
                    f"run {row['run_id']} already exists for dataset {old['dataset']} offsets "
                    f"{old['offsets']}, not {row['dataset']} {row['offsets']}; run ids collide",
                    fix="derive run ids with run_id_for(dataset, offsets, spec_name=...)",
                )
        return inserted

    def load_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """Return ``(topic, partition) -> next offset`` stored for ``group``."""
        rows = self._query("SELECT topic, part, next_offset FROM consumer_offsets WHERE grp = ?", (group,))
        return {(r["topic"], r["part"]): r["next_offset"] for r in rows}

    def load_windows(self) -> dict[str, dict[str, Any]]:
        """Return every stored window state, by window key."""
        return {r["key"]: _loads(r["state"]) for r in self._query("SELECT key, state FROM windows")}

    # -- runs --------------------------------------------------------------------------------------

    @staticmethod
    def _run_row(run: RunRecord) -> dict[str, Any]:
        row = run.model_dump(mode="json")
        for col in _JSON_RUN_COLUMNS:
            if row[col] is not None:
                row[col] = _dumps(row[col], f"run {run.run_id} field {col}")
        return row

    @staticmethod
    def _run_from(row: sqlite3.Row) -> RunRecord:
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
    ) -> list[RunRecord]:
        """Return runs newest first, filtered by spec and status (see :meth:`Registry.list_runs`)."""
        if limit < 1:
            raise RegistryError(f'Got "{limit}" for limit; must be at least 1')
        where, params = [], []
        if spec_name is not None:
            where.append("spec_name = ?")
            params.append(spec_name)
        if status is not None:
            values = _status_values(status)
            where.append(f"status IN ({', '.join('?' * len(values))})")
            params.extend(values)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = f"SELECT * FROM runs {clause}ORDER BY created_at DESC, seq DESC LIMIT ?"
        return [self._run_from(r) for r in self._query(sql, (*params, limit))]

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
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise RegistryError(f"cannot update run {run_id}: no such run in {self.url}")
            merged = {**self._run_from(row).model_dump(), "updated_at": time.time(), **fields}
            try:
                run = RunRecord.model_validate(merged)
            except ValidationError as exc:
                problems = "; ".join(
                    f'got "{e.get("input")}" for {".".join(map(str, e["loc"]))}: {e["msg"]}'
                    for e in exc.errors()
                )
                raise RegistryError(f"cannot update run {run_id}: {problems}") from None
            new = self._run_row(run)
            cols = [c for c in _RUN_COLUMNS if c not in _IMMUTABLE_RUN_FIELDS]
            conn.execute(
                f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols)} WHERE run_id = ?",
                (*(new[c] for c in cols), run_id),
            )
        return run

    # -- models ------------------------------------------------------------------------------------

    @staticmethod
    def _model_from(row: sqlite3.Row) -> ModelVersion:
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
    ) -> ModelVersion:
        """Register the next version of ``name``; idempotent per run (see :meth:`Registry.register_model`)."""
        if not name:
            raise RegistryError('Got "" for model name; must be a non-empty string')
        blobs = [
            _dumps(v, f"model {name} {k}")
            for k, v in (("params", params), ("metrics", metrics), ("lineage", lineage))
        ]
        with self._tx() as conn:
            row = conn.execute(_MODEL_BY_RUN, (name, run_id)).fetchone()
            if row is not None:
                return self._model_from(row)
            top = conn.execute("SELECT MAX(version) AS v FROM models WHERE name = ?", (name,)).fetchone()
            version = (top["v"] or 0) + 1
            conn.execute(
                f"INSERT INTO models ({', '.join(_MODEL_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, version, run_id, artifact_uri, *blobs, time.time()),
            )
            return self._model_from(conn.execute(_MODEL_BY_VERSION, (name, version)).fetchone())

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

    def _record_alias(
        self, conn: sqlite3.Connection, name: str, alias: str, version: int | None, reason: str
    ) -> AliasEvent:
        row = conn.execute(_ALIAS_VERSION, (name, alias)).fetchone()
        event = AliasEvent(
            name=name, alias=alias, version=version, previous=row["version"] if row else None, reason=reason
        )
        if version is None:
            conn.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
        else:
            conn.execute(
                "INSERT INTO aliases (name, alias, version, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
                "updated_at = excluded.updated_at",
                (name, alias, version, event.at),
            )
        conn.execute(
            "INSERT INTO alias_events (name, alias, version, previous, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, alias, version, event.previous, reason, event.at),
        )
        return event

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> AliasEvent:
        """Point ``alias`` at ``version`` and record the change (see :meth:`Registry.set_alias`)."""
        if not alias:
            raise RegistryError(f'Got "" for the alias of model {name}; must be a non-empty string')
        with self._tx() as conn:
            if conn.execute(_MODEL_BY_VERSION, (name, version)).fetchone() is None:
                have = sorted(r[0] for r in conn.execute("SELECT version FROM models WHERE name=?", (name,)))
                raise RegistryError(
                    f'cannot point {name}@{alias} at version {version}: model "{name}" has no such version '
                    f"(registered: {have or 'none'})"
                )
            return self._record_alias(conn, name, alias, version, reason)

    def remove_alias(self, name: str, alias: str, reason: str = "") -> AliasEvent | None:
        """Unset ``alias``; returns the event, or None if it was not set."""
        with self._tx() as conn:
            row = conn.execute(_ALIAS_VERSION, (name, alias)).fetchone()
            return None if row is None else self._record_alias(conn, name, alias, None, reason)

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
