"""The CLI over the HTTP API with a token, as a remote user runs it: a real API server and a real controller
(its thread, on the session's Kafka broker) on one registry."""

from __future__ import annotations

import json
import pathlib
import uuid

import pytest
from typer.testing import CliRunner

from fixtures_ray import free_port
from streamtune import Settings
from streamtune.api.auth import hash_token, new_token
from streamtune.api.server import start_api
from streamtune.cli.main import app
from streamtune.controller import Controller
from streamtune.registry import open_registry
from streamtune.registry.records import RunRecord

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def platform(kafka_bootstrap, ray_services, tmp_path, monkeypatch):  # Ray: submit checks the spec in a Ray task
    settings = Settings(home=tmp_path / "platform", kafka_bootstrap=kafka_bootstrap, api_port=free_port(),
                        dashboard_port=ray_services.dashboard_port, serve_port=ray_services.serve_port,
                        consumer_group=f"cli-{uuid.uuid4().hex[:6]}", lease_ttl=3, command_timeout=30)
    registry = open_registry(settings.registry_url)
    token = new_token()
    registry.add_token("ana", hash_token(token))
    ctrl = Controller(settings)
    ctrl.start()
    assert ctrl.wait_until_active(15)
    server = start_api(settings, is_active=lambda: ctrl.active)
    monkeypatch.setenv("STREAMTUNE_HOME", str(tmp_path / "elsewhere"))  # the CLI's own machine: no registry
    monkeypatch.setenv("STREAMTUNE_URL", server.url)
    monkeypatch.setenv("STREAMTUNE_TOKEN", token)
    monkeypatch.setenv("COLUMNS", "200")
    yield settings, registry
    server.stop()
    ctrl.stop()
    registry.close()


def _spec_file(tmp_path: pathlib.Path) -> str:
    """The demo spec on a topic of its own (the session broker's default topic has other tests' events)."""
    text = (ROOT / "configs" / "demo.yaml").read_text().replace("topic: streamtune.data",
                                                               f"topic: cli-{uuid.uuid4().hex[:8]}")
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("code: ../jobs", f"code: {ROOT / 'jobs'}"))
    return str(path)


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    return result.output


def test_every_verb_works_remotely_with_a_token_and_json(platform, tmp_path):
    settings, registry = platform
    submitted = json.loads(_cli("submit", _spec_file(tmp_path), "--reason", "first", "--json"))
    assert submitted["status"] == "succeeded" and submitted["actor"] == "ana"
    shipped = submitted["command"]["spec"]["job"]["code_uri"]
    assert shipped.startswith(str(pathlib.Path(settings.artifact_root) / "code")), "the job code was shipped"
    assert "paused" in _cli("pause", "sales-gbdt", "--reason", "quiet")
    status = json.loads(_cli("status", "--json"))
    assert status["controller"]["active"] and [(s["name"], s["paused"]) for s in status["specs"]] == [
        ("sales-gbdt", True)]
    assert "resumed" in _cli("resume", "sales-gbdt")
    # what the controller would have produced, so the read verbs have something to show
    registry.commit_window("g", {}, {}, [RunRecord(run_id="r-0123456789abcdef", spec_name="sales-gbdt",
                                                   dataset="sales", num_rows=42, reason="min_rows")])
    registry.register_model("sales-gbdt", "r-0123456789abcdef", "/a/1", {"lr": 0.1}, {"rmse": 1.5}, {})
    registry.set_alias("sales-gbdt", "champion", 1, reason="gate passed")
    assert "r-0123456789abcdef" in _cli("runs") and "rmse=1.5" in _cli("models")
    assert [r["run_id"] for r in json.loads(_cli("runs", "--json"))] == ["r-0123456789abcdef"]
    assert [(e["version"], e["reason"]) for e in json.loads(_cli("history", "sales-gbdt", "--json"))] == [
        (1, "gate passed")]
    commands = json.loads(_cli("commands", "--json"))
    assert [(c["command"]["kind"], c["actor"], c["status"]) for c in commands] == [
        ("resume", "ana", "succeeded"), ("pause", "ana", "succeeded"), ("submit", "ana", "succeeded")]
    manual = json.loads(_cli("run-now", "sales-gbdt", "--json"))
    run_id = manual["outcome"]["run_id"]
    assert "cancelled" in _cli("cancel", run_id, "--reason", "not now")


def test_remote_errors_name_what_is_unknown(platform, tmp_path):
    _cli("submit", _spec_file(tmp_path))
    assert 'Got "r-nope" for run; no such run' in _fails("cancel", "r-nope")
    assert 'Got "nope" for model; no model of that name' in _fails("promote", "nope", "1")
    settings, registry = platform
    registry.register_model("sales-gbdt", "r-1", "/a/1", {}, {}, {})
    assert 'Got "7" for version of model sales-gbdt; registered versions: 1' in _fails("promote", "sales-gbdt", "7")
    assert "no previous champion" in _fails("rollback", "sales-gbdt")
    assert 'Got "nope" for spec; no spec of that name is stored' in _fails("pause", "nope")


def test_a_spec_that_does_not_fit_its_job_is_refused_at_submit_with_exit_code_1(platform, tmp_path):
    path = pathlib.Path(_spec_file(tmp_path))
    path.write_text(path.read_text().replace("num_leaves: {type: int", "num_leafs: {type: int"))
    out = " ".join(_fails("submit", str(path)).split())  # rich may wrap a long line
    assert 'Got "num_leafs" for a dimension of sweep.space; job jobs.tabular_gbdt:Job takes only' in out, out
    path.write_text(path.read_text().replace("num_leafs", "num_leaves").replace("entrypoint: jobs.tabular_gbdt:Job",
                                                                                "entrypoint: jobs.nope:Job"))
    assert "module jobs.nope cannot be imported" in " ".join(_fails("submit", str(path)).split())
    _, registry = platform
    assert registry.list_specs() == []  # nothing was stored


def test_a_wrong_token_is_refused_with_a_fix(platform, monkeypatch):
    monkeypatch.setenv("STREAMTUNE_TOKEN", "st_wrong")
    out = _fails("runs")
    assert "refused the request: missing or unknown token" in out and "streamtune token create" in out
