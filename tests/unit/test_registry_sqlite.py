"""SqliteRegistry: the registry conformance suite, plus what only a SQLite file can show."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

import streamtune.registry as registry_pkg
from conformance.registry_suite import RegistryConformance, SharedRegistryConformance, make_run, make_spec, register
from streamtune.errors import RegistryError
from streamtune.registry import (
    RunRecord,
    RunStatus,
    SqliteRegistry,
    open_registry,
    run_id_for,
    verify_manifest,
    write_manifest,
)
from streamtune.registry.dialect import Tx
from streamtune.registry.sqlite import SCHEMA_VERSION, parse_sqlite_url


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"


class TestSqliteRegistryConformance(RegistryConformance):
    @pytest.fixture
    def registry(self, tmp_path: Path):
        with SqliteRegistry(url_for(tmp_path / "registry.db")) as reg:
            yield reg


class TestInMemorySqliteRegistryConformance(RegistryConformance):
    @pytest.fixture
    def registry(self):
        with open_registry("sqlite:///:memory:") as reg:
            yield reg


class TestSqliteFileSharedByConnections(SharedRegistryConformance):
    @pytest.fixture
    def registry_url(self, tmp_path: Path) -> str:
        return url_for(tmp_path / "registry.db")


# -- records -----------------------------------------------------------------------------------------


def test_run_id_is_deterministic_and_order_independent() -> None:
    a = run_id_for("clicks", {"d:0": [0, 9], "d:1": [5, 7]})
    assert a == run_id_for("clicks", {"d:1": [5, 7], "d:0": [0, 9]})
    assert a.startswith("r-") and len(a) == 18 and all(c in "0123456789abcdef" for c in a[2:])
    assert a != run_id_for("clicks", {"d:0": [0, 10], "d:1": [5, 7]})
    assert a != run_id_for("views", {"d:0": [0, 9], "d:1": [5, 7]})
    assert a != run_id_for("clicks", {"d:0": [0, 9], "d:1": [5, 7]}, spec_name="ctr")


@pytest.mark.parametrize("offsets", [{"d0": [0, 1]}, {"d:x": [0, 1]}, {"d:0": [5, 1]}, {"d:0": [1]}])
def test_run_record_rejects_malformed_offsets(offsets: dict) -> None:
    with pytest.raises(ValidationError, match="offsets"):
        RunRecord(run_id="r-1", spec_name="s", dataset="d", offsets=offsets)


def test_records_describe_every_field() -> None:
    from streamtune.registry import AliasEvent, ModelVersion

    for model in (RunRecord, ModelVersion, AliasEvent):
        assert all(f.description for f in model.model_fields.values()), model.__name__


def test_manifest_helpers_are_exported(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("tree")
    write_manifest(tmp_path)
    assert set(verify_manifest(tmp_path)["files"]) == {"model.txt"}


# -- URLs --------------------------------------------------------------------------------------------


def test_parse_sqlite_url_accepts_absolute_paths() -> None:
    assert parse_sqlite_url("sqlite:////var/st/r.db") == "/var/st/r.db"
    assert parse_sqlite_url("sqlite:///:memory:") == ":memory:"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:///relative/r.db", "absolute path"),
        ("mysql://host/db", "must be sqlite:///"),
        ("/tmp/registry.db", "must be sqlite:///"),
        ("sqlite:///", "absolute path"),
        ("", "must be a URL"),
    ],
)
def test_bad_urls_name_the_value_and_the_rule(url: str, needle: str) -> None:
    with pytest.raises(RegistryError) as info:
        open_registry(url)
    assert f'"{url}"' in info.value.headline
    assert needle in info.value.headline


def test_relative_url_suggests_the_absolute_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError) as info:
        open_registry("sqlite:///reg.db")
    assert info.value.fix == f"use sqlite:///{tmp_path.resolve() / 'reg.db'}"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg", "POSTGRESQL"])
def test_postgres_urls_open_a_postgres_registry(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(registry_pkg, "PostgresRegistry", lambda url, create: opened.append(url))
    open_registry(f"{scheme}://st:secret@db.internal:5432/streamtune")
    assert opened == [f"{scheme}://st:secret@db.internal:5432/streamtune"]


def test_a_url_of_another_database_names_the_rule_without_its_password() -> None:
    with pytest.raises(RegistryError) as info:
        open_registry("mysql://st:hunter2@db/streamtune")
    assert "hunter2" not in str(info.value) and "mysql://st:***@db/streamtune" in info.value.headline
    assert "postgresql://" in info.value.headline


# -- the file ----------------------------------------------------------------------------------------


def test_creates_parent_folders_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "registry.db"
    SqliteRegistry(url_for(path)).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    SqliteRegistry(url_for(path)).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(RegistryError, match="schema version") as info:
        SqliteRegistry(url_for(path))
    assert "upgrade streamtune" in info.value.fix


_V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE specs (name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, spec_name TEXT NOT NULL,
    dataset TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, event_ids TEXT NOT NULL,
    offsets TEXT NOT NULL, num_rows INTEGER NOT NULL, uris TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, sweep TEXT, gate TEXT, model_version INTEGER, error TEXT, timings TEXT NOT NULL);
INSERT INTO schema_version VALUES (1);
"""


def test_a_version_1_registry_is_migrated_in_place(tmp_path: Path) -> None:
    import json

    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(_V1_SCHEMA)
        raw.execute("INSERT INTO specs VALUES ('ctr', ?, 1.0)", (json.dumps(make_spec().model_dump(mode="json")),))
        raw.execute("INSERT INTO runs (run_id, spec_name, dataset, status, reason, event_ids, offsets, num_rows, uris, "
                    "created_at, updated_at, timings) VALUES ('r-1', 'ctr', 'clicks', 'promoted', 'min_rows', '[]', "
                    "'{}', 5, '[]', 1.0, 1.0, '{}')")
    with SqliteRegistry(url_for(path)) as reg:
        assert reg.get_spec("ctr").spec == make_spec() and not reg.get_spec("ctr").paused
        assert reg.get_run("r-1").command_id is None and reg.get_run("r-1").status is RunStatus.PROMOTED
        assert reg.acquire_lease("controller", "a", ttl_s=5) is not None
    with sqlite3.connect(path) as raw:
        assert max(raw.execute("SELECT version FROM schema_version").fetchall()) == (SCHEMA_VERSION,)


def test_a_version_5_registry_gets_the_manifest_digest_column_and_keeps_its_models(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(_V1_SCHEMA.replace("VALUES (1)", "VALUES (5)"))
        raw.execute("CREATE TABLE models (name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, "
                    "artifact_uri TEXT NOT NULL, params TEXT NOT NULL, metrics TEXT NOT NULL, lineage TEXT NOT NULL, "
                    "created_at REAL NOT NULL, PRIMARY KEY (name, version), UNIQUE (name, run_id))")
        raw.execute("INSERT INTO models VALUES ('ctr', 1, 'r-old', '/a/1', '{}', '{}', '{}', 1.0)")
    with SqliteRegistry(url_for(path)) as reg:
        assert reg.get_model("ctr", 1).manifest_sha256 is None  # registered before digests were kept
        assert register(reg, "ctr", "r-new", manifest_sha256="cd" * 32).manifest_sha256 == "cd" * 32
    with sqlite3.connect(path) as raw:
        assert max(raw.execute("SELECT version FROM schema_version").fetchall()) == (SCHEMA_VERSION,)


def test_unwritable_location_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RegistryError, match="cannot open registry"):
        SqliteRegistry(url_for(blocker / "registry.db"))


def test_commit_window_is_atomic_when_the_run_insert_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url_for(tmp_path / "registry.db")
    with SqliteRegistry(url) as reg:
        reg.commit_window("g", {("data", 0): 5}, {"w": {"rows": 1}, "old": {"rows": 9}}, [])

        def fail_after_offsets_and_windows(tx: Tx, rows: list) -> list:
            # Offsets and windows have been written inside the transaction by now.
            assert tx.one("SELECT next_offset FROM consumer_offsets")["next_offset"] == 10
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(reg, "_insert_runs", fail_after_offsets_and_windows)
        with pytest.raises(RegistryError, match="disk I/O error"):
            reg.commit_window("g", {("data", 0): 10}, {"w": {"rows": 2}, "old": None}, [make_run()])
        monkeypatch.undo()
        assert reg.load_offsets("g") == {("data", 0): 5}
        assert reg.load_windows() == {"w": {"rows": 1}, "old": {"rows": 9}}
        assert reg.list_runs() == []
        # The connection is usable afterwards, and a fresh one sees the same state.
        assert reg.commit_window("g", {("data", 0): 10}, {}, [make_run()]) == [make_run().run_id]
    with SqliteRegistry(url) as again:
        assert again.load_offsets("g") == {("data", 0): 10}


def test_unserializable_window_state_stores_nothing(tmp_path: Path) -> None:
    with SqliteRegistry(url_for(tmp_path / "registry.db")) as reg:
        with pytest.raises(RegistryError, match="window w"):
            reg.commit_window("g", {("data", 0): 10}, {"w": {"bad": object()}}, [make_run()])
        assert reg.load_offsets("g") == {} and reg.list_runs() == []


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    url = url_for(tmp_path / "registry.db")
    run = make_run()
    with SqliteRegistry(url) as reg:
        reg.put_spec(make_spec())
        reg.commit_window("g", {("data", 0): 10}, {"w": {"rows": 3}}, [run])
        reg.update_run(run.run_id, status="succeeded", timings={"sweep": 1.5})
        register(reg, "ctr", run.run_id)
        reg.set_alias("ctr", "champion", 1, reason="first")
    with SqliteRegistry(url) as reg:
        assert reg.get_spec("ctr").spec == make_spec()
        assert reg.load_offsets("g") == {("data", 0): 10}
        assert reg.load_windows() == {"w": {"rows": 3}}
        stored = reg.get_run(run.run_id)
        assert (stored.status, stored.timings) == (RunStatus.SUCCEEDED, {"sweep": 1.5})
        assert reg.get_alias("ctr", "champion").run_id == run.run_id
        assert [e.reason for e in reg.alias_history("ctr")] == ["first"]
        assert register(reg, "ctr", "r-next").version == 2


def test_numpy_values_are_stored_as_plain_json(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with SqliteRegistry(url_for(tmp_path / "registry.db")) as reg:
        mv = register(reg, params={"lr": np.float64(0.25), "depth": np.int64(6)}, metrics={"p": np.arange(2)})
        stored = reg.get_model("ctr", mv.version)
        assert stored.params == {"lr": 0.25, "depth": 6}
        assert stored.metrics == {"p": [0, 1]}
