"""The model gate (issue 9): unscorable champion, paired bootstrap, per-slice limits, budgets, the stored report."""

import numpy as np
import pyarrow as pa
import pytest

from streamtune.config import JobSpec, SliceSpec, ValidationSpec
from streamtune.errors import ConfigError
from streamtune.validation import GateReport, MetricGate, PairedRows, paired_bootstrap, scores_table
from streamtune.validation.gate import GateEvidence
from streamtune.validation.metrics import METRICS, aggregate, pointwise

N = 400


def _evidence(label, chal_pred, champ_pred, *, region=None, metric="rmse", mode="min", **kw):
    """Evidence as the controller builds it: both models' per-row terms from the driver's table."""
    region = np.arange(len(label)) % 4 if region is None else region
    table = scores_table(metric, label, chal_pred, champ_pred, {"region": region})
    paired = PairedRows.from_table(table)
    champion = None if champ_pred is None else METRICS[metric](label, champ_pred)
    base = dict(metric=metric, mode=mode, challenger=METRICS[metric](label, chal_pred), champion=champion,
                champion_version=None if champ_pred is None else 1, holdout_rows=len(label), snapshot_rows=5 * N,
                paired=paired)
    return GateEvidence(**{**base, **kw})


def _data(seed=0):
    rng = np.random.default_rng(seed)
    label = rng.normal(50, 10, N)
    return label, rng


# 1. the unscorable champion ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cause", ["KeyError: 'temp'  (a column the champion needs is gone)",
                                   "DataError: no folder at /store/sales/r-1/trials/t1 (artifact deleted)",
                                   "RegistryError: model.txt changed against the manifest (tampered)"])
def test_unscorable_champion_rejects_the_challenger(cause):
    label, rng = _data()
    gate = MetricGate(ValidationSpec(min_rows=10))
    ev = _evidence(label, label + rng.normal(0, 1, N), None, champion_version=4, champion_error=cause)
    report = gate.validate(ev)
    assert not report.passed
    assert report.reasons[0].startswith("champion v4 could not be scored on this holdout")
    assert cause in report.reasons[0]
    assert "on_champion_error=reject" in report.reasons[0]
    assert [c.name for c in report.failed()] == ["champion"]


def test_unscorable_champion_promotes_only_when_the_spec_says_so():
    label, rng = _data()
    gate = MetricGate(ValidationSpec(min_rows=10, threshold=5.0, on_champion_error="promote"))
    ev = _evidence(label, label + rng.normal(0, 1, N), None, champion_version=4, champion_error="KeyError: 'temp'")
    report = gate.validate(ev)
    assert report.passed and "on_champion_error=promote" in report.reasons[-1]
    # its own checks still apply
    bad = _evidence(label, label + rng.normal(0, 9, N), None, champion_version=4, champion_error="KeyError: 'temp'")
    assert not gate.validate(bad).passed


def test_no_champion_yet_is_not_an_unscorable_one():
    label, rng = _data()
    report = MetricGate(ValidationSpec(min_rows=10)).validate(_evidence(label, label + rng.normal(0, 1, N), None,
                                                                        champion_version=None))
    assert report.passed and report.bootstrap is None and "no champion yet" in report.reasons[-1]


def test_a_nan_champion_score_counts_as_unscorable():
    label, rng = _data()
    ev = _evidence(label, label + rng.normal(0, 1, N), None, champion_version=2, champion=float("nan"))
    assert not MetricGate(ValidationSpec(min_rows=10)).validate(ev).passed


# 2. the paired bootstrap ---------------------------------------------------------------------------------------------

def test_bootstrap_rejects_a_tie_between_identical_models():
    label, rng = _data()
    pred = label + rng.normal(0, 2, N)
    report = MetricGate(ValidationSpec(min_rows=10)).validate(_evidence(label, pred, pred))
    assert not report.passed
    boot = next(c for c in report.checks if c.name == "bootstrap")
    assert not boot.passed and "not significant" in boot.reason
    assert report.bootstrap is not None and report.bootstrap.low == report.bootstrap.high == 0.0


def test_bootstrap_rejects_a_tiny_gain_inside_the_noise_that_the_point_estimate_would_pass():
    label, rng = _data(1)
    champ = label + rng.normal(0, 3, N)
    chal = champ.copy()
    chal[:3] = label[:3]  # better on 3 of 400 rows: a real but insignificant gain
    spec = ValidationSpec(min_rows=10)
    assert MetricGate(spec.model_copy(update={"bootstrap": False})).validate(_evidence(label, chal, champ)).passed
    report = MetricGate(spec).validate(_evidence(label, chal, champ))
    assert not report.passed and report.bootstrap is not None
    assert report.bootstrap.gain > 0 and report.bootstrap.low <= 0 < report.bootstrap.high


def test_bootstrap_passes_a_real_gain_and_is_seeded():
    label, rng = _data(2)
    champ, chal = label + rng.normal(0, 4, N), label + rng.normal(0, 2, N)
    gate = MetricGate(ValidationSpec(min_rows=10, confidence=0.99))
    report = gate.validate(_evidence(label, chal, champ))
    assert report.passed, report.reasons
    ci = report.bootstrap
    assert ci is not None and ci.resamples == 1000 and ci.confidence == 0.99 and 0 < ci.low < ci.gain < ci.high
    assert gate.validate(_evidence(label, chal, champ)).bootstrap == ci  # same rows, same interval


def test_bootstrap_interval_covers_the_true_difference_for_max_mode_and_the_margin_applies():
    rng = np.random.default_rng(3)
    label = (rng.random(2000) > 0.5).astype(float)
    champ = np.where(rng.random(2000) < 0.70, label, 1 - label)  # 70 % right
    chal = np.where(rng.random(2000) < 0.80, label, 1 - label)   # 80 % right
    ci = paired_bootstrap("accuracy", "max", pointwise("accuracy", label, chal), pointwise("accuracy", label, champ))
    assert ci.low < 0.10 < ci.high and ci.significant
    gate = MetricGate(ValidationSpec(min_rows=10, must_beat_champion_by=0.5))  # needs +50 % relative: not met
    report = gate.validate(_evidence(label, chal, champ, metric="accuracy", mode="max"))
    assert not report.passed and {c.name for c in report.failed()} == {"beats_champion", "bootstrap"}


def test_bootstrap_without_per_row_scores_rejects_and_says_how_to_turn_it_off():
    ev = GateEvidence(metric="rmse", mode="min", challenger=1.0, champion=2.0, champion_version=1,
                      holdout_rows=100, snapshot_rows=500)
    report = MetricGate(ValidationSpec(min_rows=10)).validate(ev)
    assert not report.passed and "validation.bootstrap: false" in report.failed()[0].reason


def test_pointwise_terms_fold_back_into_every_metric():
    rng = np.random.default_rng(4)
    t, p = (rng.random(300) > 0.5).astype(float), rng.random(300)
    for name, fn in METRICS.items():
        assert aggregate(name, pointwise(name, t, p)) == pytest.approx(fn(t, p)), name


# 3. per-slice regression limits --------------------------------------------------------------------------------------

def test_challenger_worse_on_one_slice_is_rejected_naming_the_slice():
    label, rng = _data(5)
    region = np.arange(N) % 4
    champ = label + rng.normal(0, 3, N)
    chal = label + rng.normal(0, 1, N)  # much better overall...
    west = region == 3
    chal[west] = label[west] + rng.normal(0, 5, west.sum())  # ...but worse in region 3
    spec = ValidationSpec(min_rows=10, slices=[
        SliceSpec(name="north", column="region", values=[0], max_regression=0.0),
        SliceSpec(name="west", column="region", values=[3], max_regression=0.10),
    ])
    report = MetricGate(spec).validate(_evidence(label, chal, champ, region=region))
    assert not report.passed
    assert [c.name for c in report.failed()] == ["slice:west"]
    assert report.reasons[0].startswith("slice west (100 rows)") and "max_regression 10.00%" in report.reasons[0]
    by_name = {s.name: s for s in report.slices}
    assert by_name["north"].passed and by_name["north"].regression < 0
    assert not by_name["west"].passed and by_name["west"].regression > 0.10 and by_name["west"].rows == 100
    # without the slice it would pass: the slice is what caught it
    assert MetricGate(spec.model_copy(update={"slices": spec.slices[:1]})).validate(
        _evidence(label, chal, champ, region=region)).passed


def test_range_slices_and_a_slice_on_a_column_the_holdout_lacks():
    label, rng = _data(6)
    champ, chal = label + rng.normal(0, 3, N), label + rng.normal(0, 1, N)
    temp = np.linspace(0, 40, N)
    table = scores_table("rmse", label, chal, champ, {"temp": temp})
    ev = GateEvidence(metric="rmse", mode="min", challenger=METRICS["rmse"](label, chal),
                      champion=METRICS["rmse"](label, champ), champion_version=1, holdout_rows=N, snapshot_rows=N * 5,
                      paired=PairedRows.from_table(table))
    spec = ValidationSpec(min_rows=10, slices=[SliceSpec(name="hot", column="temp", range=(30, 99)),
                                               SliceSpec(name="promo", column="promo", values=[1])])
    report = MetricGate(spec).validate(ev)
    assert report.slices[0].rows == int((temp >= 30).sum())
    assert [c.name for c in report.failed()] == ["slice:promo"]
    assert 'got column "promo"; it is not a column of the holdout' in report.reasons[0]


def test_slices_in_the_jobspec_name_field_value_and_rule():
    base = {"name": "s", "dataset": {"name": "d", "label": "y"}, "job": {"entrypoint": "jobs.x:Job"},
            "sweep": {"metric": "rmse", "mode": "min", "space": {"lr": {"type": "uniform", "low": 0, "high": 1}}},
            "serve": {"app": "a"}}
    spec = JobSpec.parse({**base, "validation": {"slices": [
        {"name": "north", "column": "region", "values": [0], "max_regression": 0.05}]}})
    assert spec.validation.slices[0].values == [0] and spec.validation.on_champion_error == "reject"
    with pytest.raises(ConfigError, match="validation.slices.0"):
        JobSpec.parse({**base, "validation": {"slices": [{"name": "x", "column": "region"}]}})
    with pytest.raises(ConfigError, match="on_champion_error"):
        JobSpec.parse({**base, "validation": {"on_champion_error": "ignore"}})


# 4. latency and artifact-size budgets --------------------------------------------------------------------------------

def test_latency_and_artifact_budgets_reject_with_the_numbers():
    label, rng = _data(7)
    pred = label + rng.normal(0, 1, N)
    spec = ValidationSpec(min_rows=10, max_predict_ms=5.0, max_artifact_mb=1.0)
    fast_small = _evidence(label, pred, None, predict_ms_p99=1.2, artifact_bytes=200_000)
    assert MetricGate(spec).validate(fast_small).passed
    report = MetricGate(spec).validate(_evidence(label, pred, None, predict_ms_p99=12.5, artifact_bytes=3_500_000))
    assert not report.passed
    assert report.reasons[:2] == ["p99 one-row predict 12.5 ms (validation.max_predict_ms 5 ms)",
                                  "artifact size 3.500 MB (validation.max_artifact_mb 1 MB)"]
    latency = next(c for c in report.checks if c.name == "predict_latency")
    assert (latency.value, latency.limit) == (12.5, 5.0)
    unmeasured = MetricGate(spec).validate(_evidence(label, pred, None))
    assert "was not measured" in unmeasured.reasons[0]


# 5. the report -------------------------------------------------------------------------------------------------------

def test_the_report_round_trips_through_json_as_the_run_stores_it():
    label, rng = _data(8)
    spec = ValidationSpec(min_rows=10, slices=[SliceSpec(name="north", column="region", values=[0],
                                                         max_regression=0.5)])
    report = MetricGate(spec).validate(_evidence(label, label + rng.normal(0, 1, N), label + rng.normal(0, 3, N)))
    stored = report.model_dump(mode="json")
    again = GateReport.model_validate(stored)
    assert again == report and again.bootstrap is not None and again.slices[0].name == "north"
    assert [c.name for c in again.checks] == ["rows", "beats_champion", "bootstrap", "slice:north"]
    assert stored["numbers"]["champion"] > stored["numbers"]["challenger"]  # what the demo summary reads


def test_paired_rows_read_what_the_driver_writes():
    table = scores_table("mae", [1.0, 2.0, 3.0], [1.0, 2.5, 3.0], None, {"region": pa.array(["n", "s", "n"])})
    rows = PairedRows.from_table(table)
    assert rows.champion is None and rows.challenger.tolist() == [0.0, 0.5, 0.0]
    assert rows.columns["region"].tolist() == ["n", "s", "n"]


def test_runs_show_prints_every_check_the_interval_and_the_slices():
    from rich.console import Console

    from streamtune.cli.gate_view import show_run
    from streamtune.registry.records import RunRecord, RunStatus

    label, rng = _data(9)
    region = np.arange(N) % 4
    champ, chal = label + rng.normal(0, 3, N), label + rng.normal(0, 1, N)
    chal[region == 3] = label[region == 3] + rng.normal(0, 6, (region == 3).sum())
    spec = ValidationSpec(min_rows=10, max_predict_ms=50.0, slices=[
        SliceSpec(name="west", column="region", values=[3], max_regression=0.1)])
    report = MetricGate(spec).validate(_evidence(label, chal, champ, region=region, predict_ms_p99=2.5))
    run = RunRecord(run_id="r-9", spec_name="sales", dataset="sales", status=RunStatus.REJECTED,
                    gate=report.model_dump(mode="json"))
    console = Console(width=250, record=True)
    show_run(console, run)
    text = console.export_text()
    assert "gate rejected" in text and "slice:west" in text and "FAIL" in text
    assert "predict_latency" in text and "2.5" in text
    assert "paired bootstrap: gain" in text and "95% CI [" in text
    assert "west" in text.split("slices")[-1] and "+10.00%" in text
