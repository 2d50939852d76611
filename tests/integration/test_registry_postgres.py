"""PostgresRegistry on a real PostgreSQL: the registry conformance suite, the shared-database suite, and what
only Postgres shows (its URLs and connection errors, its schema, a dropped connection).

The server is the session's (``tests/fixtures_postgres.py``); each test gets a database of its own.
"""

from __future__ import annotations

import socket
import time

import psycopg
import pytest

from conformance.registry_suite import RegistryConformance, SharedRegistryConformance, make_run, register
from fixtures_postgres import database_url
from streamtune.errors import RegistryError
from streamtune.registry import PostgresRegistry, open_registry
from streamtune.registry.dialect import Tx
from streamtune.registry.schema import SCHEMA_VERSION

pytestmark = pytest.mark.integration


class TestPostgresRegistryConformance(RegistryConformance):
    @pytest.fixture
    def registry(self, postgres_url: str):
        with open_registry(postgres_url) as reg:
            yield reg


class TestPostgresSharedByConnections(SharedRegistryConformance):
    @pytest.fixture
    def registry_url(self, postgres_url: str) -> str:
        return postgres_url


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- URLs and connection errors ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_every_postgres_scheme_opens_a_postgres_registry(postgres_url: str, scheme: str) -> None:
    url = scheme + postgres_url[postgres_url.index("://"):]
    with open_registry(url) as reg:
        assert isinstance(reg, PostgresRegistry)
        assert register(reg).version == 1


def test_an_unreachable_server_is_a_registry_error_naming_the_url_without_its_password() -> None:
    url = f"postgresql://st:hunter2@127.0.0.1:{_closed_port()}/streamtune"
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        open_registry(url)
    assert time.monotonic() - started < 5
    assert info.value.headline.startswith("cannot connect to registry postgresql://st:***@127.0.0.1:")
    assert "hunter2" not in str(info.value) and info.value.__cause__ is None
    assert "STREAMTUNE_REGISTRY_URL" in info.value.fix


def test_a_missing_database_is_named(postgres_server_url: str) -> None:
    with pytest.raises(RegistryError, match='database "st_nothing_here" does not exist') as info:
        open_registry(database_url(postgres_server_url, "st_nothing_here"))
    assert "createdb" in info.value.fix


def test_a_password_in_the_query_is_masked_too() -> None:
    with pytest.raises(RegistryError) as info:
        open_registry(f"postgres://st@127.0.0.1:{_closed_port()}/x?password=hunter2")
    assert "hunter2" not in str(info.value) and "password=***" in info.value.headline


def test_an_invalid_url_names_the_value_and_the_rule() -> None:
    with pytest.raises(RegistryError, match="not a valid Postgres URL") as info:
        open_registry("postgresql://st:hunter2@db/x?no_such_option=1")
    assert "hunter2" not in str(info.value)


# -- the schema ----------------------------------------------------------------------------------------


def test_create_false_refuses_a_database_without_a_registry(postgres_url: str) -> None:
    with pytest.raises(RegistryError, match="no registry at") as info:
        open_registry(postgres_url, create=False)
    assert "streamtune up" in info.value.fix
    open_registry(postgres_url).close()
    open_registry(postgres_url, create=False).close()


def test_schema_version_and_postgres_types(postgres_url: str) -> None:
    open_registry(postgres_url).close()
    with psycopg.connect(postgres_url) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        types = dict(raw.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'consumer_offsets'").fetchall())
        assert types["next_offset"] == "bigint" and types["updated_at"] == "double precision"
        identity = raw.execute("SELECT is_identity FROM information_schema.columns "
                               "WHERE table_name = 'runs' AND column_name = 'seq'").fetchone()
        assert identity == ("YES",)
    open_registry(postgres_url).close()  # opening again changes nothing
    with psycopg.connect(postgres_url) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused(postgres_url: str) -> None:
    open_registry(postgres_url).close()
    with psycopg.connect(postgres_url) as raw:
        raw.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RegistryError, match="schema version") as info:
        open_registry(postgres_url)
    assert "upgrade streamtune" in info.value.fix


def test_kafka_offsets_beyond_32_bits_and_names_in_byte_order(postgres_url: str) -> None:
    with open_registry(postgres_url) as reg:
        reg.commit_window("g", {("data", 0): 2**40}, {}, [])
        assert reg.load_offsets("g") == {("data", 0): 2**40}
        for name in ("beta", "Alpha", "alpha"):
            register(reg, name, "r-1")
        assert [m.name for m in reg.list_models()] == ["Alpha", "alpha", "beta"]  # as SQLite orders them


# -- psycopg errors and a dropped connection -----------------------------------------------------------


def test_a_driver_error_mid_transaction_rolls_back_and_is_a_registry_error(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_registry(postgres_url) as reg:
        reg.commit_window("g", {("data", 0): 5}, {"w": {"rows": 1}}, [])

        def fail(tx: Tx, rows: list) -> list:
            assert tx.one("SELECT next_offset FROM consumer_offsets")["next_offset"] == 10
            tx.one("SELECT no_such_column FROM runs")
            return []

        monkeypatch.setattr(reg, "_insert_runs", fail)
        with pytest.raises(RegistryError, match="no_such_column") as info:
            reg.commit_window("g", {("data", 0): 10}, {"w": {"rows": 2}}, [make_run()])
        assert isinstance(info.value.__cause__, psycopg.Error) and "\n" not in info.value.headline
        monkeypatch.undo()
        assert reg.load_offsets("g") == {("data", 0): 5} and reg.load_windows() == {"w": {"rows": 1}}
        assert reg.commit_window("g", {("data", 0): 10}, {}, [make_run()]) == [make_run().run_id]


def test_a_connection_the_server_dropped_is_replaced_on_the_next_call(postgres_url: str) -> None:
    with open_registry(postgres_url) as reg, psycopg.connect(postgres_url, autocommit=True) as admin:
        register(reg, "ctr", "r-1")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(RegistryError):  # the call that finds the connection gone fails, cleanly
            register(reg, "ctr", "r-2")
        assert register(reg, "ctr", "r-2").version == 2
        assert [m.version for m in reg.list_models("ctr")] == [1, 2]

