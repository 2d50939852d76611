"""The SQLite registry's plumbing: one shared connection, write transactions, migrations and fencing.

Every write runs in ``BEGIN IMMEDIATE``, so two processes serialize on the file lock (waiting up to 10 s)
instead of failing on a stale read. A registry object fenced with a :class:`Lease` checks, inside each
write transaction, that the lease row still names its holder and token; a stale leader's write is refused
with :class:`~streamtune.errors.FencedError` and rolls back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamtune.errors import FencedError, RegistryError
from streamtune.registry.records import Lease
from streamtune.registry.sqlite_schema import _MIGRATIONS, _SCHEMA, SCHEMA_VERSION, parse_sqlite_url


class SqlBase:
    """Connection, transactions, schema migration and write fencing shared by the SQLite registry's parts."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.path = parse_sqlite_url(url)
        if not create and self.path != ":memory:" and not Path(self.path).is_file():
            raise RegistryError(f"no registry at {self.path}: the platform has not run in this home yet",
                                fix="start it with `streamtune up`, or point STREAMTUNE_HOME at its home")
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._fence: Lease | None = None
        try:
            self._conn = self._connect()
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise RegistryError(f"cannot open registry {url}: {exc}", fix="check the path is writable") from exc
        except BaseException:
            self.close()  # e.g. a newer schema: do not leak the connection
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per registry object, shared by threads behind self._lock.
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _migrate(self) -> None:
        with self._tx(fenced=False) as conn:
            row = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            found = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()["v"] if row else None
            if found is not None and found > SCHEMA_VERSION:
                raise RegistryError(
                    f"registry {self.url} has schema version {found}; this streamtune reads up to {SCHEMA_VERSION}",
                    fix="upgrade streamtune, or point registry_url at another file",
                )
            for step in range(found + 1 if found else SCHEMA_VERSION + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS.get(step, ()):
                    conn.execute(statement)
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            if found != SCHEMA_VERSION:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    # -- fencing -----------------------------------------------------------------------------------

    def fence(self, lease: Lease | None) -> None:
        """Refuse every later write through this object unless ``lease`` is still the current one."""
        self._fence = lease

    def _check_fence(self, conn: sqlite3.Connection) -> None:
        fence = self._fence
        if fence is None:
            return
        row = conn.execute("SELECT holder, token FROM leases WHERE name = ?", (fence.name,)).fetchone()
        if row is None or (row["holder"], row["token"]) != (fence.holder, fence.token):
            now = f"{row['holder']} holds token {row['token']}" if row else "nobody holds it"
            raise FencedError(
                f"write refused: {fence.holder} wrote with lease token {fence.token}, but {now}",
                fix="this controller lost its lease; it steps down and the active one carries on",
            )

    # -- transactions ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        """Run a write transaction under the lock; any error rolls all of it back."""
        with self._lock:
            conn = self._open_conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                if fenced:
                    self._check_fence(conn)
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise RegistryError(f"registry {self.url}: {exc}") from exc
                raise

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self._open_conn()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise RegistryError(f"registry {self.url}: {exc}") from exc

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RegistryError(f"registry {self.url} is closed", fix="open a new one with open_registry()")
        return self._conn

    def close(self) -> None:
        """Close the connection; later calls raise RegistryError. Closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
