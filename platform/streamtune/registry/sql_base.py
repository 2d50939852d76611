"""The SQL registries' plumbing: one shared connection, write transactions, migrations and fencing.

A subclass says how to connect (:meth:`SqlBase._connect`) and in which :class:`~streamtune.registry.dialect.Dialect`;
everything else is shared. Every write runs in one transaction, opened with the dialect's ``begin``
(SQLite: ``BEGIN IMMEDIATE``, so two processes serialize on the file lock). A registry object fenced with a
:class:`Lease` checks, inside each write transaction, that the lease row still names its holder and token,
locking that row (Postgres: ``SELECT ... FOR UPDATE``) so a takeover cannot commit between the check and the
write; a stale leader's write is refused with :class:`~streamtune.errors.FencedError` and rolls back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamtune.errors import FencedError, RegistryError
from streamtune.registry.dialect import SQLITE, Dialect, Row, Tx
from streamtune.registry.records import Lease
from streamtune.registry.schema import _MIGRATIONS, _SCHEMA, SCHEMA_VERSION


class SqlBase:
    """Connection, transactions, schema migration and write fencing shared by the SQL registries' parts.

    Subclasses set :attr:`dialect`, implement :meth:`_connect`, and call :meth:`_open` from ``__init__``.
    """

    dialect: Dialect = SQLITE
    url: str
    """The registry's URL as shown in messages (a password in it is masked)."""

    def _open(self, url: str, *, create: bool) -> None:
        """Connect and migrate; any failure closes the connection and raises RegistryError."""
        self.url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        self._fence: Lease | None = None
        try:
            self._conn = self._connect()
            self._migrate(create=create)
        except BaseException:
            self.close()  # e.g. a newer schema: do not leak the connection
            raise

    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode whose rows are dicts; raises RegistryError."""
        raise NotImplementedError

    def _missing(self) -> RegistryError:
        """The error for ``create=False`` when no registry exists there yet."""
        return RegistryError(f"no registry at {self.url}: the platform has not run against it yet",
                             fix="start it with `streamtune up`, or check STREAMTUNE_REGISTRY_URL")

    def _migrate(self, *, create: bool) -> None:
        with self._tx(fenced=False) as tx:
            tx.lock("schema")  # two processes opening a new database at once create the tables once
            exists = tx.one(self.dialect.table_exists, ("schema_version",))
            found = None
            if exists and exists["found"]:
                found = self._must(tx.one("SELECT MAX(version) AS v FROM schema_version"))["v"]
            if found is None and not create:
                raise self._missing()
            if found is not None and found > SCHEMA_VERSION:
                raise RegistryError(
                    f"registry {self.url} has schema version {found}; this streamtune reads up to {SCHEMA_VERSION}",
                    fix="upgrade streamtune, or point registry_url at another database",
                )
            for step in range(found + 1 if found else SCHEMA_VERSION + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS.get(step, ()):
                    tx.run(self.dialect.ddl(statement))
            if found != SCHEMA_VERSION:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    tx.run(self.dialect.ddl(statement))
                tx.run("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    # -- fencing -----------------------------------------------------------------------------------

    def fence(self, lease: Lease | None) -> None:
        """Refuse every later write through this object unless ``lease`` is still the current one."""
        self._fence = lease

    def _check_fence(self, tx: Tx) -> None:
        fence = self._fence
        if fence is None:
            return
        row = tx.one(f"SELECT holder, token FROM leases WHERE name = ?{tx.for_update}", (fence.name,))
        if row is None or (row["holder"], row["token"]) != (fence.holder, fence.token):
            now = f"{row['holder']} holds token {row['token']}" if row else "nobody holds it"
            raise FencedError(
                f"write refused: {fence.holder} wrote with lease token {fence.token}, but {now}",
                fix="this controller lost its lease; it steps down and the active one carries on",
            )

    # -- transactions ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, fenced: bool = True) -> Iterator[Tx]:
        """Run a write transaction under the lock; any error rolls all of it back."""
        with self._lock:
            tx = Tx(self._open_conn(), self.dialect)
            try:
                with self._driver_errors():
                    tx.run(self.dialect.begin)
                    if fenced:
                        self._check_fence(tx)
                    yield tx
                    tx.run("COMMIT")
            except BaseException:
                self._rollback(tx)
                raise

    def _rollback(self, tx: Tx) -> None:
        try:
            if self.dialect.in_transaction(tx.conn):
                tx.run("ROLLBACK")
        except self.dialect.errors():
            pass  # the connection is gone: the server rolls back on its own, and the next call reconnects

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._lock, self._driver_errors():
            return Tx(self._open_conn(), self.dialect).all(sql, params)

    @contextmanager
    def _driver_errors(self) -> Iterator[None]:
        """Turn the driver's errors into RegistryError naming the registry (never the raw driver error)."""
        try:
            yield
        except self.dialect.errors() as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise RegistryError(f"registry {self.url}: {lines[0]}") from exc

    @staticmethod
    def _must(row: Row | None) -> Row:
        """``row``, read back inside the transaction that just wrote it, so never None."""
        if row is None:
            raise RegistryError("a row written in this transaction cannot be read back; the database is inconsistent")
        return row

    def _open_conn(self) -> Any:
        if self._conn is None:
            raise RegistryError(f"registry {self.url} is closed", fix="open a new one with open_registry()")
        return self._conn

    def close(self) -> None:
        """Close the connection; later calls raise RegistryError. Closing twice is fine."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except self.dialect.errors():
                    pass
