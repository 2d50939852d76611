"""The CLI prints a headline and a fix for user errors, and exits non-zero; tables for runs and models."""

import json
import pathlib

import pytest
from typer.testing import CliRunner

from streamtune.cli.main import app
from streamtune.controller.commands import CommandExecutor
from streamtune.registry import SqlRegistry
from streamtune.registry.records import RunRecord

ROOT = pathlib.Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMTUNE_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_submit_bad_spec_prints_field_value_rule_and_exits_1(home):
    bad = home / "bad.yaml"
    bad.write_text((ROOT / "configs" / "demo.yaml").read_text().replace("max_wait: 20s", "max_wait: soon"))
    result = runner.invoke(app, ["submit", str(bad)])
    assert result.exit_code == 1
    assert 'Got "soon" for trigger.max_wait' in result.output
    assert "Traceback" not in result.output


def test_submit_without_a_controller_says_so_and_leaves_the_command_queued(home):
    result = runner.invoke(app, ["submit", str(ROOT / "configs" / "demo.yaml"), "--reason", "first try"])
    assert result.exit_code == 1, result.output
    assert "no active controller to carry out command" in result.output and "streamtune up" in result.output
    listed = runner.invoke(app, ["commands", "--json"])
    queued = json.loads(listed.output)
    assert [(c["command"]["kind"], c["status"], c["reason"]) for c in queued] == [("submit", "pending", "first try")]


def test_runs_models_history_and_status_show_what_the_controller_did(home):
    runner.invoke(app, ["submit", str(ROOT / "configs" / "demo.yaml")])
    reg = SqlRegistry(f"sqlite:///{home}/registry.db")
    done = CommandExecutor(reg, jobs=None, services=None, holder="test-controller").step()
    assert [c.status.value for c in done] == ["succeeded"]
    assert reg.get_spec("sales-gbdt").spec.trigger.min_rows == 2000
    reg.commit_window("g", {}, {}, [RunRecord(run_id="r-0123456789abcdef", spec_name="sales-gbdt",
                                              dataset="sales", num_rows=42, reason="min_rows")])
    reg.register_model("sales-gbdt", "r-0123456789abcdef", "/a/1", {"lr": 0.1}, {"rmse": 1.5}, {})
    reg.set_alias("sales-gbdt", "champion", 1, reason="gate passed")
    runs = runner.invoke(app, ["runs"])
    assert runs.exit_code == 0 and "r-0123456789abcdef" in runs.output and "pending" in runs.output
    models = runner.invoke(app, ["models"])
    assert models.exit_code == 0 and "sales-gbdt" in models.output and "rmse=1.5" in models.output
    history = runner.invoke(app, ["history", "sales-gbdt", "--json"])
    assert [(e["version"], e["reason"]) for e in json.loads(history.output)] == [(1, "gate passed")]
    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert status["controller"] is None and status["pending_commands"] == 0
    assert [(s["name"], s["champion"], s["pending_runs"]) for s in status["specs"]] == [("sales-gbdt", 1, 1)]
    table = runner.invoke(app, ["status"])
    assert "none has ever run" in table.output and "sales-gbdt" in table.output


def test_bad_setting_names_the_environment_variable(home, monkeypatch):
    monkeypatch.setenv("STREAMTUNE_SERVE_PORT", "http")
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 1 and 'Got "http" for STREAMTUNE_SERVE_PORT' in result.output


def test_missing_spec_file(home):
    result = runner.invoke(app, ["submit", str(home / "nope.yaml")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_promote_unknown_model_or_version_is_a_user_error_and_asks_nothing(home):
    result = runner.invoke(app, ["promote", "sales-gbdt", "7"])
    assert result.exit_code == 1 and 'Got "sales-gbdt" for model; no model of that name' in result.output
    reg = SqlRegistry(f"sqlite:///{home}/registry.db")
    reg.register_model("sales-gbdt", "r-1", "/a/1", {}, {}, {})
    result = runner.invoke(app, ["promote", "sales-gbdt", "7"])
    assert result.exit_code == 1 and 'Got "7" for version of model sales-gbdt; registered versions: 1' in result.output
    assert reg.list_commands() == []


def test_rollback_without_history_is_a_user_error(home):
    result = runner.invoke(app, ["rollback", "sales-gbdt"])
    assert result.exit_code == 1 and "no previous champion" in result.output


def test_run_of_an_unknown_id_is_not_found(home):
    result = runner.invoke(app, ["cancel", "r-nope"])
    assert result.exit_code == 1 and 'Got "r-nope" for run; no such run' in result.output
