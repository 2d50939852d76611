"""The sweep job's holdout scoring (no Ray): both models on the same rows, per-row scores, latency, size; and the
controller's gate reading them back."""

import pyarrow.compute as pc
import pytest
from jobs.tabular_gbdt import Job

from conformance.job_suite import RecordingContext
from streamtune.config import JobSpec, load_jobspec
from streamtune.controller.gating import gate_result
from streamtune.dev.synthetic import make_sales
from streamtune.sweeps.schema import ChampionRef, SweepRequest, SweepResult, TrialSummary
from streamtune.sweeps.scoring import read_scores, score_holdout
from streamtune.validation.holdout import HOLDOUT_SCORES

CONFIG = {"num_boost_round": 30, "report_every": 10, "learning_rate": 0.1, "num_leaves": 15}


def _train(folder, table):
    Job().train(CONFIG, RecordingContext(table, table, "sales", folder))
    return str(folder)


def _spec(tmp_path, **validation) -> JobSpec:
    import pathlib

    base = load_jobspec(pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    data = base.model_dump(mode="json")
    data["dataset"]["features"] = None
    data["validation"] = {**data["validation"], **validation}
    return JobSpec.model_validate(data)


def _result(req, spec, best, holdout):
    scores = score_holdout(req, spec, best, holdout)
    return SweepResult(run_id=req.run_id, best=best, trials=[best], holdout=scores,
                       snapshot={"num_rows": holdout.num_rows * 5})


def test_a_champion_needing_a_dropped_column_is_unscorable_and_rejects_the_challenger(tmp_path):
    champion_uri = _train(tmp_path / "champ", make_sales(600, seed=1))           # trained with "temp"
    without_temp = make_sales(600, seed=2).drop_columns(["temp"])                # the new batch dropped it
    challenger_uri = _train(tmp_path / "chal", without_temp)
    holdout = make_sales(200, seed=3).drop_columns(["temp"])
    spec = _spec(tmp_path, slices=[{"name": "north", "column": "region", "values": [0], "max_regression": 0.1}])
    req = SweepRequest(run_id="r-1", spec=spec.model_dump(mode="json"), out_uri=str(tmp_path / "run"),
                       champion=ChampionRef(version=1, artifact_uri=champion_uri))
    best = TrialSummary(trial_id="t1", params={}, artifact_uri=challenger_uri)
    result = _result(req, spec, best, holdout)
    h = result.holdout
    assert h.challenger is not None and h.champion is None and h.champion_version == 1
    assert h.champion_error is not None and "temp" in h.champion_error
    # the per-row scores sit beside result.json, with the slice column
    assert h.scores_uri == str(tmp_path / "run" / HOLDOUT_SCORES)
    table = read_scores(h.scores_uri)
    assert table.num_rows == 200 and "champion_loss" not in table.column_names and "slice:region" in table.column_names
    # budgets were measured on the holdout
    assert h.latency_rows == 100 and 0 < h.predict_ms_p50 <= h.predict_ms_p99 and h.artifact_bytes > 1000
    report = gate_result(spec, result)
    assert not report.passed and report.failed()[0].name == "champion"
    assert "champion v1 could not be scored" in report.reasons[0] and "temp" in report.reasons[0]
    promote = _spec(tmp_path, on_champion_error="promote")
    assert gate_result(promote, result).passed


@pytest.mark.parametrize("damage", ["tampered", "deleted"])
def test_a_tampered_or_deleted_champion_artifact_is_unscorable(tmp_path, damage):
    table = make_sales(600, seed=1)
    champion_uri = _train(tmp_path / "champ", table)
    if damage == "tampered":
        (tmp_path / "champ" / "model.txt").write_text("tree\n")
    else:
        import shutil

        shutil.rmtree(tmp_path / "champ")
    spec = _spec(tmp_path)
    req = SweepRequest(run_id="r-2", spec=spec.model_dump(mode="json"), out_uri=str(tmp_path / "run"),
                       champion=ChampionRef(version=3, artifact_uri=champion_uri))
    best = TrialSummary(trial_id="t1", params={}, artifact_uri=_train(tmp_path / "chal", make_sales(600, seed=5)))
    result = _result(req, spec, best, make_sales(200, seed=3))
    assert result.holdout.champion_error
    report = gate_result(spec, result)
    assert not report.passed and report.reasons[0].startswith("champion v3 could not be scored")


def test_same_rows_for_both_models_a_tie_is_rejected_and_budgets_bite(tmp_path):
    uri = _train(tmp_path / "m", make_sales(600, seed=1))
    spec = _spec(tmp_path, max_artifact_mb=0.001)
    req = SweepRequest(run_id="r-3", spec=spec.model_dump(mode="json"), out_uri=str(tmp_path / "run"),
                       champion=ChampionRef(version=1, artifact_uri=uri))
    result = _result(req, spec, TrialSummary(trial_id="t1", params={}, artifact_uri=uri), make_sales(200, seed=3))
    table = read_scores(result.holdout.scores_uri)
    assert pc.all(pc.equal(table["challenger_loss"], table["champion_loss"])).as_py()  # same model, same rows
    report = gate_result(spec, result)
    assert not report.passed
    assert {c.name for c in report.failed()} == {"beats_champion", "bootstrap", "artifact_size"}
    assert report.bootstrap is not None and report.bootstrap.rows == 200
