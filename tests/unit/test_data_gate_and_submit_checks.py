"""Issue 9: the data gate, the checks at submit (pure parts), the smoke check of predictions, manual approval."""

import math
import time

import pyarrow as pa
import pytest

from streamtune.config.jobspec import DatasetSpec, JobSpec, ValidationSpec
from streamtune.controller.runs import approve_run, with_run_checks
from streamtune.errors import CommandFailed, ConfigError
from streamtune.job import Job
from streamtune.registry import open_registry
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.sweeps.checks import contract_problems, metric_direction
from streamtune.sweeps.failures import JobFailure
from streamtune.sweeps.schema import SweepResult
from streamtune.validation.data_gate import DataGateFailed, check_data
from streamtune.validation.smoke import SmokeReport, prediction_problem

SCHEMA = {"x": {"type": "double", "min": 0, "max": 10, "max_null_fraction": 0.25}, "y": {"type": "double"}}


def _ds(**kw):
    return DatasetSpec.model_validate({"name": "d", "label": "y", "schema": SCHEMA, **kw})


def _failed(report):
    return [c for c in report.checks if not c.passed]


def test_a_good_batch_passes_every_check():
    table = pa.table({"x": [1.0, 2.0, 3.0, None], "y": [1.0, 2.0, 3.0, 4.0]})
    report = check_data(table, _ds(), ValidationSpec(min_rows=4), claimed_rows=4)
    assert report.passed, report.reasons
    assert {c.rule for c in report.checks} >= {"min_rows", "num_rows", "max_null_fraction", "range", "label"}


def test_wrong_column_type_names_column_value_and_rule():
    table = pa.table({"x": ["1", "2", "3"], "y": [1.0, 2.0, 3.0]})
    report = check_data(table, _ds(), ValidationSpec(min_rows=1))
    assert not report.passed
    assert [(c.rule, c.column) for c in _failed(report)] == [("type", "x")]
    assert report.reasons[0] == "column x: type string, but dataset.schema says double"


def test_false_num_rows_claim_fails():
    table = pa.table({"x": [1.0, 2.0], "y": [1.0, 2.0]})
    report = check_data(table, _ds(), ValidationSpec(min_rows=1), claimed_rows=500)
    assert [c.rule for c in _failed(report)] == ["num_rows"]
    assert "claimed num_rows 500" in report.headline and "2 rows were read" in report.headline


@pytest.mark.parametrize(("x", "y", "rule", "words"), [
    ([1.0, 20.0], [1.0, 2.0], "range", "largest value 20.0; max is 10"),
    ([-1.0, 2.0], [1.0, 2.0], "range", "smallest value -1.0; min is 0"),
    ([None, None, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0], "max_null_fraction", "null fraction 0.5"),
    ([1.0, 2.0], [5.0, 5.0], "label", "constant (5.0 in all 2 rows)"),
    ([1.0, 2.0], [None, None], "label", "all 2 values are null"),
])
def test_ranges_nulls_and_label_distribution(x, y, rule, words):
    table = pa.table({"x": pa.array(x, pa.float64()), "y": pa.array(y, pa.float64())})
    report = check_data(table, _ds(), ValidationSpec(min_rows=1))
    failed = _failed(report)
    assert [c.rule for c in failed] == [rule] and words in failed[0].detail, report.reasons


def test_min_rows_and_missing_columns():
    table = pa.table({"y": [1.0, 2.0]})
    report = check_data(table, _ds(features=["x", "z"]), ValidationSpec(min_rows=5))
    assert {(c.rule, c.column) for c in _failed(report)} == {("min_rows", None), ("present", "x"), ("present", "z")}


def test_a_data_gate_failure_is_not_retried_and_carries_its_report():
    report = check_data(pa.table({"x": ["a"], "y": [1.0]}), _ds(), ValidationSpec(min_rows=1))
    failure = JobFailure.from_exception(DataGateFailed(report), "r-1")
    assert failure.retryable is False and failure.data_gate == report
    assert failure.headline.startswith("DataGateFailed: data gate failed: column x: type string")


def test_column_ranges_are_validated_in_the_spec():
    with pytest.raises(ValueError, match="min .* must not exceed max"):
        DatasetSpec.model_validate({"name": "d", "label": "y", "schema": {"x": {"type": "double", "min": 2,
                                                                              "max": 1}}})


# -- checks at submit (pure) --------------------------------------------------------------------------------


class _Job(Job):
    params = frozenset({"lr", "rounds"})
    metrics = {"rmse": "min", "r2": "max"}

    def train(self, config, ctx): ...

    def load(self, artifact_dir): ...


class _Undeclared(Job):
    def train(self, config, ctx): ...

    def load(self, artifact_dir): ...


def _spec(metric="rmse", mode="min", params=None, space=None):
    return JobSpec.model_validate({
        "name": "s", "dataset": {"name": "d", "label": "y"}, "serve": {"app": "s"},
        "job": {"entrypoint": "m:J", "params": params or {}},
        "sweep": {"metric": metric, "mode": mode,
                  "space": space or {"lr": {"type": "uniform", "low": 0.1, "high": 0.2}}},
    })


@pytest.mark.parametrize(("metric", "direction"), [("rmse", "min"), ("mae", "min"), ("logloss", "min"),
                                                   ("accuracy", "max"), ("auc", "max"), ("r2", "max")])
def test_metric_direction_table(metric, direction):
    assert metric_direction(metric) == direction


def test_a_fitting_spec_has_no_problems():
    assert contract_problems(_spec(params={"rounds": 3}), _Job) == []


@pytest.mark.parametrize(("spec", "words"), [
    (_spec(metric="rmse", mode="max"), 'Got "max" for sweep.mode; metric rmse is better when lower'),
    (_spec(metric="r2", mode="min"), 'Got "min" for sweep.mode; metric r2 is better when higher'),
    (_spec(metric="auc", mode="max"), 'Got "auc" for sweep.metric; job m:J reports only [\'r2\', \'rmse\']'),
    (_spec(params={"rouns": 3}), 'Got "rouns" for a key of job.params; job m:J takes only [\'lr\', \'rounds\']'),
    (_spec(space={"learning_rat": {"type": "uniform", "low": 0.1, "high": 0.2}}),
     'Got "learning_rat" for a dimension of sweep.space'),
])
def test_bad_specs_are_named(spec, words):
    problems = contract_problems(spec, _Job)
    assert len(problems) == 1 and words in problems[0], problems


def test_an_undeclared_job_is_checked_against_the_metric_table_only():
    assert contract_problems(_spec(params={"anything": 1}), _Undeclared) == []
    assert "its direction is unknown" in contract_problems(_spec(metric="wobble"), _Undeclared)[0]
    assert "better when lower" in contract_problems(_spec(mode="max"), _Undeclared)[0]


def test_the_template_job_declares_its_params_and_metrics():
    from jobs.tabular_gbdt import Job as Gbdt

    spec = JobSpec.model_validate({**_spec().model_dump(mode="json"), "job": {
        "entrypoint": "jobs.tabular_gbdt:Job", "params": {"objective": "binary"}}})
    assert contract_problems(spec, Gbdt) == ['Got "rmse" for sweep.metric; job jobs.tabular_gbdt:Job reports '
                                             "only ['accuracy', 'auc', 'balanced_accuracy', 'f1', 'logloss', "
                                             "'pr_auc']", 'Got "lr" for a dimension of '
                                             "sweep.space; job jobs.tabular_gbdt:Job takes only " +
                                             str(sorted(Gbdt.params))]


def test_check_job_contract_raises_config_error_for_a_missing_module():
    from streamtune.sweeps.checks import check_job_contract

    spec = _spec().model_copy(update={"job": _spec().job.model_copy(update={"entrypoint": "no_such_mod:Job"})})
    with pytest.raises(ConfigError, match="module no_such_mod cannot be imported"):
        check_job_contract(spec)


# -- smoke predictions, gate merge --------------------------------------------------------------------------


def test_prediction_problems():
    assert prediction_problem([1.0, 2], rows=2) is None
    assert prediction_problem([1.0], rows=2) == "predictor returned 1 predictions for 2 rows"
    assert "is inf" in prediction_problem([math.inf, 1.0], rows=2)
    assert "is null" in prediction_problem([None], rows=1)


def test_a_failed_smoke_test_fails_the_gate_first():
    smoke = SmokeReport(passed=False, reason="smoke test failed: prediction 0 of 4 is nan", rows=4, seconds=0.1)
    result = SweepResult.model_construct(data_gate=None, smoke=smoke)
    gate = with_run_checks({"passed": True, "reasons": ["threshold ok"]}, result)
    assert gate["passed"] is False and gate["reasons"] == [smoke.reason, "threshold ok"]
    assert gate["smoke"]["passed"] is False


# -- manual approval ----------------------------------------------------------------------------------------


def test_approve_moves_an_awaiting_run_on_and_records_the_approver():
    reg = open_registry("sqlite:///:memory:")
    runs = [RunRecord(run_id="r-1", spec_name="s", dataset="d", status=RunStatus.AWAITING_APPROVAL,
                      gate={"passed": True}),
            RunRecord(run_id="r-2", spec_name="s", dataset="d", status=RunStatus.FAILED)]
    reg.commit_window("g", {}, {}, runs)
    with pytest.raises(CommandFailed, match="r-2 is failed; only a run awaiting approval"):
        approve_run(reg, "r-2", "ana")
    run = approve_run(reg, "r-1", "ana", "checked")
    assert run.status == RunStatus.SUCCEEDED
    assert run.gate["approval"]["by"] == "ana" and run.gate["approval"]["reason"] == "checked"
    assert run.timings["approved_at"] > 0
    assert approve_run(reg, "r-1", "bo").gate["approval"]["by"] == "ana"  # a rerun changes nothing


def test_manual_promotion_is_in_the_spec():
    assert _spec().promotion == "auto"
    spec = JobSpec.model_validate({**_spec().model_dump(mode="json"), "promotion": "manual"})
    assert spec.promotion == "manual"


def test_a_manual_spec_waits_for_approval_then_is_promoted_with_the_approver_in_lineage(tmp_path):
    from test_run_lifecycle import BlockingServing, ScriptedJobs
    from test_run_lifecycle import _spec as demo_spec

    from streamtune.artifacts import ArtifactStore
    from streamtune.controller.commands import CommandExecutor
    from streamtune.controller.runs import RunAdvancer
    from streamtune.registry import SqliteRegistry
    from streamtune.registry.commands import ApproveRun, CommandStatus
    from streamtune.registry.manifest import write_manifest
    from streamtune.sweeps.driver import result_uri
    from streamtune.sweeps.schema import HoldoutScores, TrialSummary

    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    jobs, serving = ScriptedJobs(), BlockingServing()
    serving.release.set()
    store = ArtifactStore(str(tmp_path / "artifacts"))
    adv = RunAdvancer(reg, jobs, serving, store)
    spec = demo_spec()
    spec = spec.model_copy(update={"promotion": "manual", "validation": spec.validation.model_copy(
        update={"min_rows": 1, "threshold": None})})
    reg.put_spec(spec)
    run = RunRecord(run_id="r-0000000000000001", spec_name=spec.name, dataset="sales", num_rows=10,
                    offsets={"t:0": [1, 1]}, uris=["/data/1.parquet"], status=RunStatus.RUNNING)
    reg.commit_window("g", {}, {}, [run])
    artifact = tmp_path / "artifacts" / "model"
    artifact.mkdir(parents=True)
    (artifact / "model.txt").write_text("m")
    write_manifest(artifact)
    best = TrialSummary(trial_id="t1", params={"a": 1}, metrics={"rmse": 1.0}, artifact_uri=str(artifact))
    result = SweepResult(run_id=run.run_id, best=best, trials=[best], snapshot={"fingerprint": "f", "num_rows": 10},
                         holdout=HoldoutScores(metric="rmse", challenger=1.0, rows=10),
                         smoke=SmokeReport(passed=True, reason="smoke test: fine", rows=2, seconds=0.1))
    store.put_text(result_uri(adv.out_uri(run)), result.model_dump_json())
    jobs.states[run.submission_id] = "SUCCEEDED"

    def step():
        adv.step_spec(reg.get_spec(spec.name))

    step()
    waiting = reg.get_run(run.run_id)
    assert waiting.status == RunStatus.AWAITING_APPROVAL, (waiting.error, waiting.gate)
    assert "smoke test: fine" in waiting.gate["reasons"]
    step()
    assert serving.swaps == [] and reg.list_models(spec.name) == []  # nothing registered or swapped meanwhile

    executor = CommandExecutor(reg, jobs, serving, holder="me", store=store)
    cmd = reg.append_command(ApproveRun(run_id=run.run_id), actor="ana", reason="slices checked")
    assert [c.status for c in executor.step()] == [CommandStatus.SUCCEEDED]
    assert "approved by ana" in reg.get_command(cmd.id).outcome.message
    step()  # registers and starts the swap in the worker
    deadline = time.monotonic() + 10
    while reg.get_run(run.run_id).status != RunStatus.PROMOTED and time.monotonic() < deadline:
        step()
    done = reg.get_run(run.run_id)
    assert done.status == RunStatus.PROMOTED, done.error
    model = reg.get_model(spec.name, done.model_version)
    assert model.lineage["approved_by"] == "ana" and done.gate["approval"]["by"] == "ana"
    assert reg.get_alias(spec.name, "champion").version == done.model_version
