"""The model gate through a real sweep Ray Job: a champion whose artifact was tampered with cannot be scored, and
the challenger is rejected with that reason (issue 9); the per-row holdout scores, latency and size are recorded."""

import json
import pathlib
import time

import pytest

from fixtures_ray import stored_code
from streamtune.config import JobSpec, load_jobspec
from streamtune.controller.gating import gate_result
from streamtune.dev.synthetic import make_sales, write_batch
from streamtune.registry.manifest import write_manifest
from streamtune.sweeps import ChampionRef, RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.scoring import read_scores

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tampered_champion(folder: pathlib.Path) -> str:
    """A real LightGBM champion whose model file was changed after its manifest was written."""
    from jobs.tabular_gbdt import Job

    from conformance.job_suite import RecordingContext

    table = make_sales(400, seed=11)
    Job().train({"num_boost_round": 10, "report_every": 10}, RecordingContext(table, table, "sales", folder))
    write_manifest(folder)
    (folder / "model.txt").write_text((folder / "model.txt").read_text().replace("tree", "TREE", 1))
    return str(folder)


def test_unscorable_champion_rejects_the_challenger_through_a_real_sweep(ray_services, tmp_path):
    data = load_jobspec(ROOT / "configs" / "demo.yaml").model_dump(mode="json")
    data["validation"]["slices"] = [{"name": "north", "column": "region", "values": [0], "max_regression": 0.2}]
    spec = JobSpec.model_validate(data)
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    uris = write_batch(tmp_path / "b1", 2, 600, drift=0.0, seed=5)
    run_id = "r-gatetamper000001"
    out = tmp_path / run_id
    out.mkdir()
    req = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json"), uris=uris, out_uri=str(out),
                       trusted_roots=[str(tmp_path)],
                       champion=ChampionRef(version=1, artifact_uri=_tampered_champion(tmp_path / "champion")))
    (out / "request.json").write_text(req.model_dump_json())
    assert runner.submit(run_id, str(out / "request.json"), stored_code(spec.code_dir(), tmp_path / "store"))
    deadline = time.monotonic() + 240
    while (status := runner.status(run_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, runner.logs_tail(run_id)
        time.sleep(0.5)
    assert status == "SUCCEEDED", runner.logs_tail(run_id)

    result = SweepResult.model_validate_json((out / "result.json").read_text())
    hold = result.holdout
    assert hold.challenger is not None and hold.challenger < 8.0
    assert hold.champion is None and hold.champion_version == 1
    assert hold.champion_error and "model.txt" in hold.champion_error, hold.champion_error
    # the same holdout rows, per row, beside result.json; the latency and size budgets' numbers
    table = read_scores(str(hold.scores_uri))
    assert hold.scores_uri == str(out / "holdout_scores.parquet") and table.num_rows == hold.rows == 240
    assert {"label", "challenger_pred", "challenger_loss", "slice:region"} <= set(table.column_names)
    assert hold.predict_ms_p99 is not None and hold.predict_ms_p99 > 0 and hold.artifact_bytes > 1000

    report = gate_result(spec, result)
    assert not report.passed, report.reasons
    assert report.reasons[0].startswith("champion v1 could not be scored on this holdout")
    assert "on_champion_error=reject" in report.reasons[0]
    stored = json.loads(report.model_dump_json())
    assert [c["name"] for c in stored["checks"] if not c["passed"]] == ["champion"]
    # the spec may choose to promote on the challenger's own checks
    data["validation"]["on_champion_error"] = "promote"
    assert gate_result(JobSpec.model_validate(data), result).passed
