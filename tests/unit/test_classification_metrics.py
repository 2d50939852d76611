"""Classification metrics (auc, pr_auc, f1, balanced_accuracy beside logloss and accuracy), their directions, and the
gate scoring them: per-row labels and scores in the holdout table, the paired bootstrap and slices recomputing the
metric from rows, string labels encoded by each model's own classes."""

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from streamtune.config import JobSpec, SliceSpec, ValidationSpec
from streamtune.errors import ConfigError
from streamtune.validation import MetricGate, PairedRows, paired_bootstrap, scores_table
from streamtune.validation.gate import GateEvidence
from streamtune.validation.labels import class_list, encode_labels
from streamtune.validation.metrics import (
    DECOMPOSABLE,
    DIRECTIONS,
    METRICS,
    accuracy,
    aggregate,
    auc,
    balanced_accuracy,
    direction,
    f1,
    get_metric,
    logloss,
    pointwise,
    pr_auc,
    weighted,
)

NEW = ("auc", "pr_auc", "f1", "balanced_accuracy")

# 1. hand-computed values ---------------------------------------------------------------------------------------------


def test_binary_auc_counts_pairs_and_half_ties():
    # positives 0.35, 0.8; negatives 0.1, 0.4: of 4 pairs the positive is higher in 3
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # a tied pair counts one half: (0.5 vs 0.5) 0.5 + (0.9 vs 0.5) 1 -> 1.5 / 2
    assert auc([0, 1, 1], [0.5, 0.5, 0.9]) == 0.75
    assert auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0 and auc([1, 0], [0.1, 0.9]) == 0.0
    assert auc([0, 1, 0, 1], [0.3] * 4) == 0.5                    # no ranking at all
    assert auc([0.0, 1.0], [0.2, 0.7]) == 1.0                     # float labels that are whole numbers


def test_average_precision_as_sklearn_defines_it():
    # highest first: 0.8 (pos) P=1 R=1/2; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> 1/2 * 1 + 1/2 * 2/3
    assert pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
    # 3 positives ranked 1st, 3rd, 6th of 6: (1 + 2/3 + 3/6) / 3
    assert pr_auc([1, 0, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # a tie is one threshold: both rows at 0.5 enter together (precision 1/2 there)
    assert pr_auc([1, 1, 0], [0.9, 0.5, 0.5]) == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)
    assert pr_auc([1, 1], [0.1, 0.2]) == 1.0                      # only positives: precision is always 1


def test_f1_binary_and_macro():
    # threshold 0.5: predicted [1, 1, 0, 1] vs [0, 1, 1, 1] -> tp 2, fp 1, fn 1 -> 4 / 6
    assert f1([0, 1, 1, 1], [0.7, 0.9, 0.2, 0.6]) == pytest.approx(2 / 3)
    assert f1([0, 0], [0.1, 0.2]) == 0.0                          # no positive row or prediction: 0 (zero_division)
    probs = [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]  # argmax 0, 0, 2, 1
    # class 0: tp 1 fp 1 -> 2/3; class 1: tp 0 -> 0; class 2: tp 1 fn 1 -> 2/3
    assert f1([0, 1, 2, 2], probs) == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    # a class neither in the labels nor predicted does not count
    assert f1([0, 0, 1], [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]) == 1.0


def test_an_always_normal_model_on_imbalanced_data():
    y = np.array([0] * 93 + [1] * 7)                    # 7 % anomalies
    always_normal = np.full(100, 0.05)
    assert accuracy(y, always_normal) == pytest.approx(0.93)
    assert balanced_accuracy(y, always_normal) == 0.5   # recall 1 on normal, 0 on anomalies
    assert pr_auc(y, always_normal) == pytest.approx(0.07)  # the base rate: no ranking
    assert auc(y, always_normal) == 0.5 and f1(y, always_normal) == 0.0
    useful = np.where(y == 1, 0.6, 0.05)
    useful[:3] = 0.7                                    # 3 false alarms
    assert balanced_accuracy(y, useful) == pytest.approx((90 / 93 + 1) / 2)
    assert f1(y, useful) == pytest.approx(2 * 7 / (2 * 7 + 3))
    assert pr_auc(y, useful) == pytest.approx(7 / 10) and auc(y, useful) == pytest.approx(90 / 93)


def test_multiclass_auc_pr_auc_and_balanced_accuracy_are_macro_one_vs_rest():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.7, 0.1],
                  [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6]])
    per_class_auc = [auc((y == c).astype(int), p[:, c]) for c in range(3)]
    assert auc(y, p) == pytest.approx(np.mean(per_class_auc))
    assert per_class_auc == pytest.approx([7 / 8, 7 / 8, 1.0])
    assert pr_auc(y, p) == pytest.approx(np.mean([pr_auc((y == c).astype(int), p[:, c]) for c in range(3)]))
    # argmax [0, 1, 1, 0, 2, 2]: recalls 1/2, 1/2, 1
    assert balanced_accuracy(y, p) == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert accuracy(y, p) == pytest.approx(4 / 6)
    assert logloss(y, p) == pytest.approx(-np.mean(np.log(p[np.arange(6), y])))
    # no row of class 2 in the first four: macro over the classes where the AUC is defined (0 and 1)
    assert np.isnan(auc((y[:4] == 2).astype(int), p[:4, 2]))
    assert auc(y[:4], p[:4]) == pytest.approx(np.mean([auc((y[:4] == c).astype(int), p[:4, c]) for c in (0, 1)]))


def test_string_labels_encoded_by_the_models_classes_and_unknown_labels_are_wrong():
    labels = ["ok", "fraud", "ok", "chargeback"]
    classes = class_list(["ok", "fraud", "ok"])        # the model never saw "chargeback"
    y = encode_labels(labels, classes)
    assert classes == ["fraud", "ok"] and y.tolist() == [1, 0, 1, -1]
    p_ok = np.array([0.9, 0.2, 0.8, 0.6])               # P(classes[1]) = P("ok")
    assert accuracy(y, p_ok) == 0.75                    # the unknown row is wrong whatever it predicts
    assert logloss(y, p_ok) == pytest.approx(np.mean([-np.log(0.9), -np.log(0.8), -np.log(0.8), 27.631021]),
                                             rel=1e-6)
    assert balanced_accuracy(y, p_ok) == pytest.approx((1 + 1 + 0) / 3)  # "fraud", "ok", the unknown class
    # multiclass: an unknown row is a negative of every class for auc, one more never-predicted class for f1
    p3 = np.array([[0.1, 0.9], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7]])
    assert f1(y, p3) == pytest.approx((1 + 0.8 + 0) / 3)  # "ok": tp 2 fp 1 -> 0.8


def test_undefined_cases_return_nan_and_bad_inputs_name_the_rule():
    assert np.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9])) and np.isnan(auc([0, 0], [0.2, 0.5]))
    assert np.isnan(pr_auc([0, 0, 0], [0.2, 0.5, 0.9]))
    assert np.isnan(auc([0, 1], [0.2, float("nan")]))  # a non-finite score cannot be ranked
    assert np.isnan(balanced_accuracy([], []))
    with pytest.raises(ValueError, match="encoded by the model's classes"):
        auc(["a", "b"], [0.1, 0.9])
    with pytest.raises(ValueError, match="label codes from 0 to 2"):
        auc([0, 1, 2], [0.1, 0.5, 0.9])                  # three classes need (rows, 3) scores


# 2. directions, the metric table, the JobSpec check -----------------------------------------------------------------


def test_every_metric_has_a_direction_and_the_decomposable_ones_fold_back():
    assert set(DIRECTIONS) == set(METRICS) and DECOMPOSABLE < set(METRICS)
    assert {n: direction(n) for n in NEW} == dict.fromkeys(NEW, "max")
    assert direction("logloss") == "min" and direction("accuracy") == "max"
    with pytest.raises(ConfigError, match="balanced_accuracy"):
        get_metric("roc")


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_pointwise_rows_fold_back_into_every_metric_also_under_weights(kind):
    rng = np.random.default_rng(11)
    n = 300
    if kind == "binary":
        y, p = (rng.random(n) < 0.3).astype(int), np.round(rng.random(n), 2)
    else:
        y, p = rng.integers(0, 4, n), rng.dirichlet(np.ones(4), n)
    counts = np.bincount(rng.integers(0, n, n), minlength=n)  # one bootstrap resample
    drawn = np.repeat(np.arange(n), counts)
    for name in ("logloss", "accuracy", *NEW):
        rows = pointwise(name, y, p)
        assert aggregate(name, rows) == pytest.approx(METRICS[name](y, p)), name
        assert weighted(name, rows, counts) == pytest.approx(METRICS[name](y[drawn], p[drawn])), name
        assert aggregate(name, rows[None, drawn], axis=1)[0] == pytest.approx(METRICS[name](y[drawn], p[drawn]))


def _spec(metric, mode, **validation):
    return {"name": "fraud", "dataset": {"name": "tx", "label": "label"}, "job": {"entrypoint": "m:J"},
            "serve": {"app": "fraud"}, "validation": validation,
            "sweep": {"metric": metric, "mode": mode, "space": {"a": {"type": "int", "low": 1, "high": 3}}}}


def test_jobspec_rejects_a_mode_against_the_metrics_direction():
    with pytest.raises(ConfigError) as err:
        JobSpec.parse(_spec("auc", "min"))
    assert err.value.headline == 'Got "min" for sweep.mode; metric auc is better when higher, so mode must be "max"'
    with pytest.raises(ConfigError, match='metric logloss is better when lower, so mode must be "min"'):
        JobSpec.parse(_spec("logloss", "max"))
    assert JobSpec.parse(_spec("pr_auc", "max")).sweep.metric == "pr_auc"
    assert JobSpec.parse(_spec("my_score", "min")).sweep.mode == "min"  # unknown to the platform: the job says
    # a stored spec from before the check still loads (plain model_validate); submit checks it against the job
    assert JobSpec.model_validate(_spec("auc", "min")).sweep.direction_problem() is not None


# 3. the holdout table, bootstrap and gate on a metric that is no mean of per-row terms ------------------------------

N = 2000


def _fraud(seed=0, n=N):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    noise = rng.random(n)
    return rng, y, noise


def _paired(metric, labels, chal, champ, region, chal_codes=None, champ_codes=None):
    table = scores_table(metric, labels, chal, champ, {"region": region}, challenger_label=chal_codes,
                         champion_label=champ_codes)
    return table, PairedRows.from_table(table, metric=metric)


def _ev(metric, paired, chal_value, champ_value, rows=N):
    return GateEvidence(metric=metric, mode=direction(metric), challenger=chal_value, champion=champ_value,
                        champion_version=1, holdout_rows=rows, snapshot_rows=5 * rows, paired=paired)


def test_pr_auc_bootstrap_a_clearly_better_challenger_is_significant_and_a_tie_is_not():
    rng, y, noise = _fraud(1)
    sharp = np.clip(0.45 * y + 0.55 * noise, 0, 1)
    blurry = np.clip(0.15 * y + 0.85 * rng.random(N), 0, 1)
    chal, champ = pointwise("pr_auc", y, sharp), pointwise("pr_auc", y, blurry)
    t0 = time.perf_counter()
    ci = paired_bootstrap("pr_auc", "max", chal, champ, resamples=1000)
    assert time.perf_counter() - t0 < 5
    assert ci.significant and 0 < ci.low < ci.gain < ci.high and ci.dropped == 0
    assert ci.gain == pytest.approx(pr_auc(y, sharp) - pr_auc(y, blurry))
    assert paired_bootstrap("pr_auc", "max", chal, champ, resamples=1000) == ci   # seeded
    tie = paired_bootstrap("pr_auc", "max", chal, chal, resamples=1000)
    assert not tie.significant and tie.low == tie.high == tie.gain == 0.0
    with pytest.raises(ValueError, match="per-row terms|per-row\\s+records"):
        paired_bootstrap("pr_auc", "max", sharp, blurry)                      # raw scores are no rows


def test_bootstrap_drops_resamples_where_the_metric_is_undefined():
    rng = np.random.default_rng(2)
    y = np.zeros(400, dtype=int)
    y[0] = 1                                             # one positive: a resample misses it ~37 % of the time
    a, b = rng.random(400), rng.random(400)
    ci = paired_bootstrap("auc", "max", pointwise("auc", y, a), pointwise("auc", y, b), resamples=500)
    assert 100 < ci.dropped < 250 and np.isfinite([ci.low, ci.high]).all()
    with pytest.raises(ValueError, match="undefined on the 400 holdout rows"):
        paired_bootstrap("auc", "max", pointwise("auc", y * 0, a), pointwise("auc", y * 0, b))


def test_gate_on_pr_auc_with_string_labels_passes_a_better_challenger_and_rejects_a_tie(tmp_path):
    from streamtune.sweeps.scoring import read_scores, write_scores

    rng, y, noise = _fraud(3)
    labels = np.where(y == 1, "fraud", "ok")
    classes = ["ok", "fraud"]                            # the score is P(classes[1]) = P("fraud")
    codes = encode_labels(labels, classes)
    sharp, blurry = np.clip(0.45 * y + 0.55 * noise, 0, 1), np.clip(0.15 * y + 0.85 * rng.random(N), 0, 1)
    region = np.arange(N) % 4
    table = scores_table("pr_auc", labels, sharp, blurry, {"region": region}, challenger_label=codes,
                         champion_label=codes)
    assert table.column_names == ["label", "challenger_pred", "challenger_label", "champion_pred", "champion_label",
                                  "slice:region"]
    stored = read_scores(write_scores(str(tmp_path), table))   # the Parquet round trip the controller reads
    assert stored["label"].to_pylist()[:3] == labels[:3].tolist()
    paired = PairedRows.from_table(stored, metric="pr_auc")
    assert paired.metric == "pr_auc" and paired.challenger.shape == (N, 2)
    spec = ValidationSpec(min_rows=10, slices=[SliceSpec(name="north", column="region", values=[0],
                                                         max_regression=0.05)])
    report = MetricGate(spec).validate(_ev("pr_auc", paired, pr_auc(codes, sharp), pr_auc(codes, blurry)))
    assert report.passed, report.reasons
    assert report.bootstrap is not None and report.bootstrap.significant and report.slices[0].regression < 0
    _, tie = _paired("pr_auc", codes, sharp, sharp, region)
    report = MetricGate(spec).validate(_ev("pr_auc", tie, pr_auc(codes, sharp), pr_auc(codes, sharp)))
    assert not report.passed and {c.name for c in report.failed()} == {"beats_champion", "bootstrap"}
    assert "not significant" in next(c for c in report.checks if c.name == "bootstrap").reason


def test_a_slice_recomputes_pr_auc_on_its_rows_and_names_the_regression():
    rng, y, noise = _fraud(4)
    region = np.arange(N) % 4
    champ = np.clip(0.15 * y + 0.85 * noise, 0, 1)
    chal = np.clip(0.6 * y + 0.4 * rng.random(N), 0, 1)        # much better overall...
    west = region == 3
    chal[west] = rng.random(west.sum())                          # ...but no signal at all in the west
    _, paired = _paired("pr_auc", y, chal, champ, region)
    spec = ValidationSpec(min_rows=10, slices=[SliceSpec(name="west", column="region", values=[3],
                                                         max_regression=0.1)])
    report = MetricGate(spec).validate(_ev("pr_auc", paired, pr_auc(y, chal), pr_auc(y, champ)))
    assert [c.name for c in report.failed()] == ["slice:west"]
    west_report = report.slices[0]
    assert west_report.rows == int(west.sum())
    assert west_report.challenger == pytest.approx(pr_auc(y[west], chal[west]))
    assert west_report.champion == pytest.approx(pr_auc(y[west], champ[west]))
    assert west_report.regression > 0.1 and report.reasons[0].startswith(f"slice west ({west.sum()} rows)")


def test_a_slice_where_the_metric_is_undefined_for_both_models_is_not_checked():
    rng, y, noise = _fraud(5)
    region = np.arange(N) % 4
    y[region == 2] = 0                                           # no fraud in region 2
    chal, champ = np.clip(0.5 * y + 0.5 * noise, 0, 1), np.clip(0.2 * y + 0.8 * rng.random(N), 0, 1)
    _, paired = _paired("auc", y, chal, champ, region)
    spec = ValidationSpec(min_rows=10, slices=[SliceSpec(name="quiet", column="region", values=[2])])
    report = MetricGate(spec).validate(_ev("auc", paired, auc(y, chal), auc(y, champ)))
    assert report.passed, report.reasons
    quiet = next(c for c in report.checks if c.name == "slice:quiet")
    assert "undefined on its rows for both models" in quiet.reason and "not checked" in quiet.reason
    assert report.slices[0].challenger is None and report.slices[0].passed
    assert type(report).model_validate(report.model_dump(mode="json")) == report  # stored as the run stores it


def test_multiclass_champion_and_challenger_with_different_classes_are_each_encoded_their_way():
    rng = np.random.default_rng(6)
    n = 1500
    labels = rng.choice(["cat", "dog", "fox"], n, p=[0.45, 0.45, 0.1])
    chal_classes, champ_classes = ["cat", "dog", "fox"], ["cat", "dog"]   # the champion never saw a fox
    chal_codes, champ_codes = encode_labels(labels, chal_classes), encode_labels(labels, champ_classes)
    assert (champ_codes == -1).sum() == (labels == "fox").sum()
    chal = rng.dirichlet(np.ones(3), n)
    chal[np.arange(n), chal_codes] += 1.0
    chal /= chal.sum(axis=1, keepdims=True)
    champ = rng.dirichlet(np.ones(2), n)
    known = champ_codes >= 0
    champ[np.flatnonzero(known), champ_codes[known]] += 1.0
    champ /= champ.sum(axis=1, keepdims=True)
    for metric in ("f1", "balanced_accuracy", "logloss", "auc"):
        table, paired = _paired(metric, labels, chal, champ, np.zeros(n), chal_codes, champ_codes)
        assert table["champion_label"].to_pylist() == champ_codes.tolist()
        assert paired.challenger.shape[0] == paired.champion.shape[0] == n
        chal_v, champ_v = METRICS[metric](chal_codes, chal), METRICS[metric](champ_codes, champ)
        assert aggregate(metric, paired.challenger) == pytest.approx(chal_v)
        assert aggregate(metric, paired.champion) == pytest.approx(champ_v)
        report = MetricGate(ValidationSpec(min_rows=10)).validate(_ev(metric, paired, chal_v, champ_v, rows=n))
        if metric != "auc":  # the foxes the champion cannot name cost it: the challenger is clearly better
            assert report.passed, (metric, report.reasons)
        assert report.bootstrap is not None and report.bootstrap.rows == n


def test_old_regression_tables_and_tables_for_another_metric_are_read():
    old = pa.table({"label": [1.0, 2.0], "challenger_pred": [1.0, 4.0], "challenger_loss": [0.0, 4.0]})
    rows = PairedRows.from_table(old)
    assert rows.challenger.tolist() == [0.0, 4.0] and rows.champion is None and rows.metric is None
    assert PairedRows.from_table(old, metric="rmse").challenger.tolist() == [0.0, 4.0]
    logloss_table = scores_table("logloss", [0, 1, 1], [0.2, 0.7, 0.4], None, {})
    again = PairedRows.from_table(logloss_table, metric="auc")  # rows recomputed from labels and scores
    assert again.metric == "auc" and aggregate("auc", again.challenger) == 1.0


# 4. the sweep's holdout scoring, without Ray -------------------------------------------------------------------------


class _FileScores:
    """A classifier whose scores are stored per row id in its artifact (classes.json, scores.json)."""

    def __init__(self, folder):
        from streamtune.job import Predictor

        folder = Path(folder)
        self.classes = json.loads((folder / "classes.json").read_text())
        scores = json.loads((folder / "scores.json").read_text())

        class _P(Predictor):
            classes = self.classes

            def predict_scores(self, batch):
                return np.asarray([scores[i] for i in batch["id"].to_pylist()], dtype=float)

            def predict(self, batch):
                s = self.predict_scores(batch)
                picked = s.argmax(axis=1) if s.ndim == 2 else (s >= 0.5).astype(int)
                return [self.classes[i] for i in picked]

        self.predictor = _P()


def _artifact(folder: Path, classes, scores) -> str:
    from streamtune.registry.manifest import write_manifest

    folder.mkdir(parents=True)
    (folder / "classes.json").write_text(json.dumps(classes))
    (folder / "scores.json").write_text(json.dumps(np.asarray(scores).tolist()))
    write_manifest(folder)
    return str(folder)


def test_score_holdout_scores_each_model_with_its_own_classes_and_the_gate_reads_it(tmp_path, monkeypatch):
    from streamtune.controller.gating import gate_result
    from streamtune.job import Job
    from streamtune.sweeps import scoring
    from streamtune.sweeps.schema import ChampionRef, SweepRequest, SweepResult, TrialSummary

    class _Job(Job):
        def train(self, config, ctx): ...

        def load(self, artifact_dir):
            return _FileScores(artifact_dir).predictor

    monkeypatch.setattr(scoring, "load_job_class", lambda entrypoint: _Job)
    rng, y, noise = _fraud(7, n=800)
    labels = np.where(y == 1, "fraud", "ok")
    sharp, blurry = np.clip(0.5 * y + 0.5 * noise, 0, 1), np.clip(0.1 * y + 0.9 * rng.random(800), 0, 1)
    # the challenger scores P("fraud"); the champion is multiclass over ["fraud", "ok"]: other order, 2-d scores
    chal_uri = _artifact(tmp_path / "chal", ["ok", "fraud"], sharp)
    champ_uri = _artifact(tmp_path / "champ", ["fraud", "ok"], np.column_stack([blurry, 1 - blurry]))
    holdout = pa.table({"id": np.arange(800), "label": labels, "region": np.arange(800) % 2})
    spec = JobSpec.parse(_spec("pr_auc", "max", min_rows=10, slices=[
        {"name": "even", "column": "region", "values": [0], "max_regression": 0.2}]))
    req = SweepRequest(run_id="r-1", spec=spec.model_dump(mode="json"), out_uri=str(tmp_path / "run"),
                       champion=ChampionRef(version=1, artifact_uri=champ_uri))
    best = TrialSummary(trial_id="t1", params={}, artifact_uri=chal_uri)
    h = scoring.score_holdout(req, spec, best, holdout)
    assert h.error is None and h.champion_error is None, (h.error, h.champion_error)
    assert h.challenger == pytest.approx(pr_auc(y, sharp))
    fraud_first = np.where(y == 1, 0, 1)                  # the champion's own codes
    assert h.champion == pytest.approx(pr_auc(fraud_first, np.column_stack([blurry, 1 - blurry])))
    table = scoring.read_scores(h.scores_uri)
    assert table["challenger_label"].to_pylist() == y.tolist()
    assert table["champion_label"].to_pylist() == fraud_first.tolist()
    assert table.schema.field("champion_pred").type == pa.list_(pa.float64(), 2)
    result = SweepResult(run_id="r-1", best=best, trials=[best], holdout=h, snapshot={"num_rows": 4000})
    report = gate_result(spec, result)
    assert report.passed, report.reasons
    assert [c.name for c in report.checks] == ["rows", "beats_champion", "bootstrap", "slice:even"]


def test_holdout_scores_of_the_wrong_shape_are_refused():
    from streamtune.sweeps.scoring import _check_scores

    _check_scores(np.zeros((4, 3)), ["a", "b", "c"], 4)
    with pytest.raises(ValueError, match="predictor returned 3 predictions for 4 holdout rows"):
        _check_scores(np.zeros(3), None, 4)
    with pytest.raises(ValueError, match=r"shape \(4, 2\) for a model without classes"):
        _check_scores(np.zeros((4, 2)), None, 4)
    with pytest.raises(ValueError, match=r"shape \(4,\) for 3 classes; multiclass scores must be \(rows, 3\)"):
        _check_scores(np.zeros(4), ["a", "b", "c"], 4)
    _check_scores(np.zeros(4), ["a", "b"], 4)
