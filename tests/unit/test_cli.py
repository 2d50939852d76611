"""The CLI without a running platform: user errors print a headline and a fix and exit 1; with the platform
down, every verb says so within 5 s and creates nothing."""

import pathlib
import socket
import time

import pytest
from typer.testing import CliRunner

from streamtune.cli.main import app

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "configs" / "demo.yaml")
runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("STREAMTUNE_HOME", str(home))
    monkeypatch.setenv("STREAMTUNE_API_PORT", str(_closed_port()))
    monkeypatch.delenv("STREAMTUNE_URL", raising=False)
    monkeypatch.delenv("STREAMTUNE_TOKEN", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return home


def test_submit_bad_spec_prints_field_value_rule_and_exits_1(home, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "demo.yaml").read_text().replace("max_wait: 20s", "max_wait: soon"))
    result = runner.invoke(app, ["submit", str(bad)])
    assert result.exit_code == 1
    assert 'Got "soon" for trigger.max_wait' in result.output
    assert "Traceback" not in result.output


VERBS = [
    ["status"], ["runs"], ["models"], ["commands"], ["history", "m"], ["submit", SPEC], ["pause", "m"],
    ["resume", "m"], ["promote", "m", "1"], ["rollback", "m"], ["cancel", "r-1"], ["run-now", "m"],
    ["token", "create", "ana"], ["token", "list"], ["token", "revoke", "ana"],
    ["specs"], ["spec", "pause", "m"], ["spec", "resume", "m"], ["spec", "delete", "m", "--force"],
    ["runs", "retry", "r-1"], ["runs", "logs", "r-1"], ["runs", "logs", "r-1", "--attempt", "2"],
    ["runs", "--show", "r-1"],
]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_with_the_platform_down_every_verb_fails_within_5s_with_one_clear_line_and_creates_nothing(
    home, verb, as_json
):
    started = time.monotonic()
    result = runner.invoke(app, [*verb, *(["--json"] if as_json else [])])
    took = time.monotonic() - started
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("error: ") and ("is not running at" in lines[0] or "no registry at" in lines[0])
    assert len(lines) == 2 and lines[1].startswith("fix: ") and "streamtune up" in lines[1], result.output
    assert took < 5.0
    assert not home.exists(), f"{verb} created {list(home.rglob('*'))}"


def test_bad_setting_names_the_environment_variable(home, monkeypatch):
    monkeypatch.setenv("STREAMTUNE_SERVE_PORT", "http")
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 1 and 'Got "http" for STREAMTUNE_SERVE_PORT' in result.output


def test_missing_spec_file(home):
    result = runner.invoke(app, ["submit", str(home / "nope.yaml")])
    assert result.exit_code == 1 and "no such file" in result.output
