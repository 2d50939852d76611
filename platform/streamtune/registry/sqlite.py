"""The registry in a SQLite file, on the stdlib ``sqlite3``: :class:`SqliteRegistry`.

The SDK, the CLI and the controller (a thread or another process) share one database file. The file runs
in WAL mode so readers never block the writer, and every write opens ``BEGIN IMMEDIATE``, so two
processes serialize on the file lock (waiting up to 10 s) instead of failing on a stale read. In a
process, one connection is shared between threads behind a lock. The queries are
:class:`~streamtune.registry.sql.SqlStore`'s, shared with Postgres.

Example:
    >>> import tempfile
    >>> from streamtune.registry.commands import RunNow
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/sub/registry.db"
    >>> with SqliteRegistry(url) as reg:
    ...     _ = reg.append_command(RunNow(spec="ctr"), actor="ana")
    >>> [c.command.describe() for c in SqliteRegistry(url).list_commands()]
    ['run ctr now']
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from streamtune.errors import RegistryError
from streamtune.registry.dialect import SQLITE, dict_row
from streamtune.registry.schema import SCHEMA_VERSION
from streamtune.registry.sql import SqlStore
from streamtune.registry.urls import URL_RULE, mask_url

__all__ = ["SCHEMA_VERSION", "SqliteRegistry", "parse_sqlite_url"]

_URL_RULE = "must be sqlite:///<absolute path> (e.g. sqlite:////home/me/registry.db) or sqlite:///:memory:"


def parse_sqlite_url(url: str) -> str:
    """Return the database path in a ``sqlite:///`` URL (``":memory:"`` for an in-memory database).

    Raises:
        RegistryError: the URL is not a SQLite URL with an absolute path, naming the value and the rule.

    Example:
        >>> parse_sqlite_url("sqlite:////var/lib/st/registry.db")
        '/var/lib/st/registry.db'
    """
    if not isinstance(url, str):
        raise RegistryError(f'Got "{url!r}" for registry_url; {_URL_RULE}')
    if url in ("sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith("sqlite:///"):
        fix = f"use sqlite:///{Path(url).resolve()}" if "://" not in url else None
        raise RegistryError(f'Got "{mask_url(url)}" for registry_url; {URL_RULE}', fix=fix)
    path = url[len("sqlite:///") :]
    if not path.startswith("/") or path.strip("/") == "":
        fix = f"use sqlite:///{Path(path).resolve()}" if path.strip("/") else None
        raise RegistryError(
            f'Got "{url}" for registry_url; {_URL_RULE} (a relative path would depend on the working '
            "directory, so the CLI and the controller could open different files)",
            fix=fix,
        )
    return "/" + path.lstrip("/")


class SqliteRegistry(SqlStore):
    """A :class:`~streamtune.registry.Registry` in a SQLite file, shared safely by threads and processes.

    Args:
        url: ``sqlite:///`` followed by an absolute path (parent folders are created), or
            ``sqlite:///:memory:`` for a private in-memory database (tests, doctests).
        create: With False, a file that does not exist yet is an error instead of a new empty registry.

    Raises:
        RegistryError: the URL is invalid, the file cannot be opened, or it was created by a newer streamtune.

    Example:
        >>> reg = SqliteRegistry("sqlite:///:memory:")
        >>> reg.register_model("ctr", "r-1", "file:///a", {}, {"auc": 0.91}, {}).version
        1
        >>> reg.close()
    """

    dialect = SQLITE

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.path = parse_sqlite_url(url)
        memory = self.path == ":memory:"
        if not create and not memory and not Path(self.path).is_file():
            raise RegistryError(f"no registry at {self.path}: the platform has not run in this home yet",
                                fix="start it with `streamtune up`, or point STREAMTUNE_HOME at its home")
        try:
            self._open(url, create=create or memory)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open registry {url}: {exc}", fix="check the path is writable") from exc

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per registry object, shared by threads behind self._lock.
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = dict_row
        conn.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        return conn
