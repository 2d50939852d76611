"""The registry's schema, its migrations and JSON columns, shared by SQLite and Postgres.

The DDL is written once, in SQLite's words; :meth:`~streamtune.registry.dialect.Dialect.ddl` turns its types
into another database's (``INTEGER PRIMARY KEY AUTOINCREMENT`` into an identity column, ``REAL`` into
``DOUBLE PRECISION``, ...). JSON values are stored as text in both, so the queries never differ.
"""

from __future__ import annotations

import json
from typing import Any

from streamtune.errors import RegistryError

SCHEMA_VERSION = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS specs (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_at REAL NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
    error TEXT, failures INTEGER NOT NULL DEFAULT 0, retry_at REAL);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (grp, topic, part));
CREATE TABLE IF NOT EXISTS windows (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, spec_name TEXT NOT NULL,
    dataset TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, event_ids TEXT NOT NULL,
    offsets TEXT NOT NULL, num_rows INTEGER NOT NULL, uris TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, sweep TEXT, gate TEXT, model_version INTEGER, error TEXT,
    timings TEXT NOT NULL, command_id TEXT, attempt INTEGER NOT NULL DEFAULT 1, attempts TEXT NOT NULL DEFAULT '[]',
    retry_at REAL, trigger_detail TEXT);
CREATE INDEX IF NOT EXISTS runs_by_spec ON runs (spec_name, created_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, artifact_uri TEXT NOT NULL,
    params TEXT NOT NULL, metrics TEXT NOT NULL, lineage TEXT NOT NULL, created_at REAL NOT NULL,
    manifest_sha256 TEXT, PRIMARY KEY (name, version), UNIQUE (name, run_id));
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS alias_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER,
    previous INTEGER, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, body TEXT NOT NULL,
    actor TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, error TEXT, controller TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL);
CREATE INDEX IF NOT EXISTS commands_by_status ON commands (status, seq);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL, acquired_at REAL NOT NULL,
    renewed_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS offset_resets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    previous INTEGER, next_offset INTEGER NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL, revoked_at REAL);
CREATE INDEX IF NOT EXISTS api_tokens_by_name ON api_tokens (name, revoked_at);
CREATE TABLE IF NOT EXISTS seen_keys (
    spec_name TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL, first_seen REAL NOT NULL,
    PRIMARY KEY (spec_name, key));
CREATE INDEX IF NOT EXISTS seen_keys_by_age ON seen_keys (first_seen);
CREATE TABLE IF NOT EXISTS window_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS window_events_by_key ON window_events (key, seq);
"""

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # version 1 -> 2: pausable specs, runs that name the command that asked for them (new tables are created
    # by _SCHEMA itself).
    2: (
        "ALTER TABLE specs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN command_id TEXT",
    ),
    # version 3 -> 4: run attempts and their backoff, spec health (error, failures, backoff); seen_keys is new.
    4: (
        "ALTER TABLE specs ADD COLUMN error TEXT",
        "ALTER TABLE specs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE specs ADD COLUMN retry_at REAL",
        "ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE runs ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN retry_at REAL",
    ),
    # version 4 -> 5: a window's events are rows of window_events, appended as they arrive, instead of a list
    # rewritten with the whole window state on every poll. Windows stored before keep their events in their
    # state, and load_windows reads both, so no row needs to move.
    5: (),
    # version 5 -> 6: each model version keeps the sha256 of its manifest, recorded at registration, so a load
    # can tell a manifest regenerated after registration (versions registered before keep NULL).
    # Migrations run before _SCHEMA, and a version 1 registry has no models table yet: create it as version 5
    # had it first.
    6: (
        "CREATE TABLE IF NOT EXISTS models (name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, "
        "artifact_uri TEXT NOT NULL, params TEXT NOT NULL, metrics TEXT NOT NULL, lineage TEXT NOT NULL, "
        "created_at REAL NOT NULL, PRIMARY KEY (name, version), UNIQUE (name, run_id))",
        "ALTER TABLE models ADD COLUMN manifest_sha256 TEXT",
    ),
    # version 6 -> 7: each run records why it was triggered, with the numbers (runs stored before keep NULL).
    7: ("ALTER TABLE runs ADD COLUMN trigger_detail TEXT",),
}


def _dumps(value: Any, what: str) -> str:
    def default(obj: Any) -> Any:
        # numpy scalars and arrays, e.g. Optuna params or metrics, have .item() / .tolist()
        for attr in ("tolist", "item"):
            if hasattr(obj, attr):
                return getattr(obj, attr)()
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    try:
        return json.dumps(value, default=default, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"cannot store {what} as JSON: {exc}") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
