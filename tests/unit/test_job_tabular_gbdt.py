"""jobs/tabular_gbdt.py runs the Job conformance suite (LightGBM on CPU, no Ray)."""

import pytest
from jobs.tabular_gbdt import Job

from conformance.job_suite import JobConformance
from streamtune.dev.synthetic import make_sales
from streamtune.validation.metrics import METRICS


class TestTabularGbdt(JobConformance):
    metric = "rmse"

    @pytest.fixture
    def job(self):
        return Job()

    @pytest.fixture
    def data(self):
        return make_sales(800, seed=1), make_sales(200, seed=2), "sales"

    @pytest.fixture
    def config(self):
        return {"num_boost_round": 40, "report_every": 10, "learning_rate": 0.1, "num_leaves": 15}

    def test_binary_objective_reports_logloss(self, tmp_path):
        import pyarrow.compute as pc

        from conformance.job_suite import RecordingContext

        t = make_sales(600, seed=3)
        t = t.set_column(t.schema.get_field_index("sales"), "sales", pc.cast(pc.greater(t["sales"], 45), "int64"))
        ctx = RecordingContext(t, t, "sales", tmp_path / "m")
        Job().train({"objective": "binary", "num_boost_round": 20, "report_every": 10}, ctx)
        assert 0 < ctx.reports[-1]["logloss"] < 0.7 and ctx.reports[-1]["accuracy"] > 0.6


# --- real tables: string features, string and integer labels, multiclass, imbalance ---------------------------

def _table(rows: int, *, seed: int, labels=None, positives: float | None = None):
    """Two numeric features and three string features (string, large_string, dictionary); ``labels``: the class
    names of a label that depends on them, ``positives``: a 0/1 label with that share of ones."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    city = rng.choice(["oslo", "rome", "lima", "kyiv"], rows)
    plan = rng.choice(["free", "pro"], rows)
    channel = rng.choice(["web", "app", "shop"], rows)
    columns = {
        "x": pa.array(x), "n": pa.array(rng.integers(0, 5, rows)),
        "city": pa.array(city, pa.string()), "plan": pa.array(plan, pa.large_string()),
        "channel": pa.array(channel, pa.string()).dictionary_encode(),
    }
    signal = x + np.where(city == "rome", 2.0, 0.0) + np.where(plan == "pro", -1.5, 0.0)
    if positives is not None:
        columns["y"] = pa.array((signal + rng.normal(0, 0.3, rows) > np.quantile(signal, 1 - positives)).astype(int))
    elif labels is not None:
        cuts = np.quantile(signal, np.linspace(0, 1, len(labels) + 1)[1:-1])
        columns["y"] = pa.array([labels[i] for i in np.searchsorted(cuts, signal)])
    else:
        columns["y"] = pa.array(signal * 3 + rng.normal(0, 0.1, rows))
    return pa.table(columns)


FAST = {"num_boost_round": 20, "report_every": 10, "learning_rate": 0.2, "num_leaves": 7, "min_data_in_leaf": 5}


def _fit(tmp_path, train, valid, **config):
    from conformance.job_suite import RecordingContext

    ctx = RecordingContext(train, valid, "y", tmp_path / "m")
    Job().train({**FAST, **config}, ctx)
    return ctx, Job().load(ctx.folder)


def test_string_feature_columns_train_and_predict_under_pandas_3(tmp_path):
    import json
    import math

    train, valid = _table(400, seed=1), _table(100, seed=2)
    assert {str(train.schema.field(c).type) for c in ("city", "plan", "channel")} == {
        "string", "large_string", "dictionary<values=string, indices=int32, ordered=0>"}
    ctx, predictor = _fit(tmp_path, train, valid)
    assert ctx.reports[-1]["rmse"] < ctx.reports[0]["rmse"]
    assert json.loads((ctx.folder / "categorical.json").read_text()) == ["city", "plan", "channel"]
    assert predictor.classes is None and not (ctx.folder / "classes.json").exists()
    preds = predictor.predict(valid.drop_columns(["y"]))
    assert len(preds) == 100 and all(math.isfinite(p) for p in preds)
    # the loaded model scores the validation rows as the trained one did: the categories map the same way
    assert predictor.predict_scores(valid).shape == (100,)
    assert METRICS["rmse"](valid["y"].to_numpy(), preds) == pytest.approx(ctx.reports[-1]["rmse"])


def test_a_predict_batch_with_a_subset_or_an_unseen_category_predicts(tmp_path):
    import math

    import pyarrow as pa

    train = _table(400, seed=1)
    _, predictor = _fit(tmp_path, train, train)
    rome = {"x": [0.0], "n": [1], "city": ["rome"], "plan": ["free"], "channel": ["web"]}
    oslo = {**rome, "city": ["oslo"]}
    # one row: the batch's only category is "rome" (pandas codes it 0; the model's code for rome is not 0)
    one = predictor.predict(pa.table(rome))[0]
    assert one != predictor.predict(pa.table(oslo))[0]
    both = predictor.predict(pa.table({k: rome[k] + oslo[k] for k in rome}))
    assert both == [one, predictor.predict(pa.table(oslo))[0]]
    # an unseen city, a null, a plain string where training had a dictionary, ints where it had strings
    odd = pa.table({"x": [0.0, 0.0], "n": [1, 1], "city": ["atlantis", None], "plan": pa.array([1, 2]),
                    "channel": pa.array(["web", "zzz"], pa.large_string())})
    assert all(math.isfinite(p) for p in predictor.predict(odd))
    assert predictor.predict(odd.slice(0, 0)) == []


def test_string_labels_train_a_multiclass_model_that_predicts_the_class_names(tmp_path):
    import numpy as np

    labels = ["gold", "bronze", "silver"]
    ctx, predictor = _fit(tmp_path, _table(450, seed=1, labels=labels), _table(150, seed=2, labels=labels),
                          objective="multiclass")
    assert set(Job.metrics_for({"objective": "multiclass"})) <= set(ctx.reports[-1])
    assert ctx.reports[-1]["accuracy"] > 0.6 and ctx.reports[-1]["logloss"] < np.log(3)
    valid = _table(150, seed=3, labels=labels)
    assert predictor.classes == ["bronze", "gold", "silver"]       # sorted, read back from classes.json
    preds = predictor.predict(valid.drop_columns(["y"]))
    assert set(preds) <= set(labels) and all(isinstance(p, str) for p in preds)
    assert np.mean(np.array(preds) == np.array(valid["y"].to_pylist())) > 0.6
    scores = predictor.predict_scores(valid)
    assert scores.shape == (150, 3) and np.allclose(scores.sum(axis=1), 1.0)
    assert [predictor.classes[i] for i in scores.argmax(axis=1)] == preds


def test_integer_binary_labels_predict_the_original_integers(tmp_path):
    import pyarrow as pa
    import pyarrow.compute as pc

    for a, b in ((0, 1), (3, 7)):
        train, valid = _table(300, seed=1, positives=0.4), _table(100, seed=2, positives=0.4)
        train, valid = (t.set_column(t.schema.get_field_index("y"), "y",
                                     pc.if_else(pc.equal(t["y"], 1), pa.scalar(b), pa.scalar(a)))
                        for t in (train, valid))
        ctx, predictor = _fit(tmp_path / str(b), train, valid, objective="binary")
        assert predictor.classes == [a, b]
        preds = predictor.predict(valid)
        assert set(preds) <= {a, b} and all(type(p) is int for p in preds)
        assert predictor.predict_scores(valid).shape == (100,)
        assert ctx.reports[-1]["accuracy"] > 0.7


def test_an_imbalanced_binary_table_with_is_unbalance_reports_pr_auc_and_balanced_accuracy(tmp_path):
    train, valid = _table(600, seed=1, positives=0.05), _table(300, seed=2, positives=0.05)
    ctx, predictor = _fit(tmp_path, train, valid, objective="binary", is_unbalance=True)
    last = ctx.reports[-1]
    assert set(last) >= {"logloss", "accuracy", "auc", "pr_auc", "f1", "balanced_accuracy", "rounds"}
    assert 0.05 < last["pr_auc"] <= 1 and 0.5 < last["balanced_accuracy"] <= 1
    assert predictor.classes == [0, 1]


def test_metrics_for_each_objective_and_their_directions():
    from streamtune.errors import ConfigError

    assert dict(Job.metrics_for({"objective": "regression"})) == {"rmse": "min", "mae": "min"}
    for objective in ("binary", "multiclass"):
        assert dict(Job.metrics_for({"objective": objective})) == {
            "logloss": "min", "accuracy": "max", "auc": "max", "pr_auc": "max", "f1": "max",
            "balanced_accuracy": "max"}
    assert Job.metrics_for({}) == Job.metrics
    from streamtune.validation.metrics import DIRECTIONS

    assert dict(Job.metrics) == {n: DIRECTIONS[n] for n in Job.metrics}   # the platform's table agrees
    with pytest.raises(ConfigError, match='"poisson" for objective'):
        Job.metrics_for({"objective": "poisson"})
    assert {"is_unbalance", "scale_pos_weight"} <= Job.params


def test_bad_labels_fail_with_a_message_naming_the_column(tmp_path):
    import pyarrow as pa

    from streamtune.errors import DataError

    one_class = _table(100, seed=1, labels=["a"])
    with pytest.raises(DataError, match="only the class 'a' in label column \"y\""):
        _fit(tmp_path, one_class, one_class, objective="binary")
    strings = _table(100, seed=1, labels=["a", "b"])
    with pytest.raises(DataError, match=r'string values in label column "y"; objective regression needs numbers'):
        _fit(tmp_path, strings, strings)
    three = _table(100, seed=1, labels=["a", "b", "c"])
    with pytest.raises(DataError, match='3 classes in label column "y"'):
        _fit(tmp_path, three, three, objective="binary")
    mixed = strings.set_column(strings.schema.get_field_index("y"), "y", pa.array([None] + [1] * 99, pa.int64()))
    with pytest.raises(DataError, match="null labels"):
        _fit(tmp_path, mixed, mixed, objective="binary")


def test_a_binary_model_saved_before_classes_json_loads_as_a_0_1_classifier(tmp_path):
    train = _table(300, seed=1, positives=0.4)
    ctx, _ = _fit(tmp_path, train, train, objective="binary")
    (ctx.folder / "classes.json").unlink()
    (ctx.folder / "categorical.json").unlink()          # the string columns are still found in the batch
    predictor = Job().load(ctx.folder)
    assert predictor.classes == [0, 1] and set(predictor.predict(train)) <= {0, 1}
    assert predictor.predict_scores(train).shape == (300,)
