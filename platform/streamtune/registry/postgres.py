"""The registry in PostgreSQL, through psycopg 3: :class:`PostgresRegistry`.

For several machines: controllers on different hosts, one active and the others standing by, share one
database. The queries are :class:`~streamtune.registry.sql.SqlStore`'s, shared with SQLite; the
:data:`~streamtune.registry.dialect.POSTGRES` dialect makes them take the locks that SQLite's file lock gave
for free. Each registry object holds one connection in autocommit mode, shared by its threads behind a lock;
every write is one explicit transaction (read committed). A connection the server dropped (a restart, a
failover) is replaced on the next call. Lock waits give up after 10 s, as SQLite's do.

Needs the ``postgres`` extra: ``pip install "streamtune[postgres]"``.
"""

from __future__ import annotations

from typing import Any

from streamtune.errors import RegistryError
from streamtune.registry.dialect import POSTGRES
from streamtune.registry.sql import SqlStore
from streamtune.registry.urls import POSTGRES_SCHEMES, URL_RULE, mask_url

__all__ = ["PostgresRegistry"]

_CONNECT_FIX = (
    "check that PostgreSQL is up and reachable at that host and port, and that the user, password and database "
    "in STREAMTUNE_REGISTRY_URL are right (the database must exist: createdb <name>)"
)
_DEFAULTS = {"connect_timeout": "10", "application_name": "streamtune"}
_LOCK_TIMEOUT = "SET lock_timeout = '10s'"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise RegistryError("a Postgres registry needs psycopg 3, which is not installed",
                            fix='pip install "streamtune[postgres]"') from None
    return psycopg


class PostgresRegistry(SqlStore):
    """A :class:`~streamtune.registry.Registry` in a PostgreSQL database, shared by processes on many hosts.

    Args:
        url: ``postgresql://user:password@host:port/database`` (also ``postgres://`` and
            ``postgresql+psycopg://``); any libpq URL parameter works, e.g. ``?sslmode=require`` or
            ``?host=/run/postgresql`` for a Unix socket. The database must exist; the tables are created.
        create: With False, a database without a registry in it is an error instead of a new empty registry.

    Raises:
        RegistryError: the URL is invalid, psycopg is missing, the server cannot be reached or refuses the
            login (naming the URL, its password masked, and a fix), or the registry in it was created by a
            newer streamtune.

    Example:
        >>> try:
        ...     PostgresRegistry("postgresql://st:secret@127.0.0.1:1/streamtune")
        ... except RegistryError as exc:
        ...     print(exc.headline.split(": ")[0])
        cannot connect to registry postgresql://st:***@127.0.0.1:1/streamtune
    """

    dialect = POSTGRES

    def __init__(self, url: str, *, create: bool = True) -> None:
        psycopg = _psycopg()
        shown = mask_url(url)
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in POSTGRES_SCHEMES:
            raise RegistryError(f'Got "{shown}" for registry_url; {URL_RULE}')
        try:
            params = psycopg.conninfo.conninfo_to_dict(f"postgresql://{rest}")
        except psycopg.Error as exc:
            raise RegistryError(f'Got "{shown}" for registry_url; it is not a valid Postgres URL: {exc}',
                                fix="see https://www.postgresql.org/docs/current/libpq-connect.html") from None
        self._params = {**_DEFAULTS, **params}
        self._open(shown, create=create)

    def _connect(self) -> Any:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        conn = None
        try:
            conn = psycopg.connect(autocommit=True, row_factory=dict_row, **self._params)
            conn.execute(_LOCK_TIMEOUT)
            return conn
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            message = " ".join(line.strip() for line in lines[:2])
            password = str(self._params.get("password") or "")
            if password:
                message = message.replace(password, "***")
            raise RegistryError(f"cannot connect to registry {self.url}: {message}", fix=_CONNECT_FIX) from None

    def _open_conn(self) -> Any:
        conn = super()._open_conn()
        if conn.broken:  # the server dropped it (restart, failover, network): connect again
            conn.close()
            self._conn = conn = self._connect()
        return conn
