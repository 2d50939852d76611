"""jobs/torch_mlp.py on CPU, without Ray: the Job conformance suite, binary and multiclass with string features,
what serving sees (a missing column), and that importing the template needs no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conformance.job_suite import JobConformance, RecordingContext
from needs_torch import require_torch
from streamtune.dev.synthetic import make_sales
from streamtune.errors import ConfigError

require_torch()
from jobs.torch_mlp import MODEL_FILE, Job, MlpMeta  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class TestTorchMlp(JobConformance):
    metric = "rmse"

    @pytest.fixture
    def job(self):
        return Job()

    @pytest.fixture
    def data(self):
        return make_sales(800, seed=1), make_sales(200, seed=2), "sales"

    @pytest.fixture
    def config(self):
        return {"epochs": 6, "hidden": 16, "lr": 0.01, "batch_size": 64}


def _table(rows: int, *, seed: int, labels: list[str]) -> pa.Table:
    """A numeric, an integer with nulls and a string feature; a label (``labels``) that depends on all three."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    n = rng.integers(0, 5, rows).astype(float)
    city = rng.choice(["oslo", "rome", "lima"], rows)
    signal = x + 0.5 * n + np.where(city == "rome", 2.0, 0.0)
    cuts = np.quantile(signal, np.linspace(0, 1, len(labels) + 1)[1:-1])
    y = [labels[i] for i in np.searchsorted(cuts, signal)]
    n_col = pa.array([None if i % 17 == 0 else v for i, v in enumerate(n)], pa.float64())
    return pa.table({"x": x, "n": n_col, "city": pa.array(city).dictionary_encode(), "y": y})


@pytest.mark.parametrize("objective,labels", [("binary", ["no", "yes"]), ("multiclass", ["lo", "mid", "hi"])])
def test_a_classifier_learns_string_labels_from_numeric_and_string_features(tmp_path, objective, labels):
    ctx = RecordingContext(_table(900, seed=1, labels=labels), _table(300, seed=2, labels=labels), "y", tmp_path)
    Job().train({"objective": objective, "epochs": 8, "hidden": 16, "lr": 0.02, "batch_size": 64}, ctx)
    first, last = ctx.reports[0], ctx.reports[-1]
    assert set(Job.metrics_for({"objective": objective})) <= set(last)
    assert last["logloss"] < first["logloss"] and last["accuracy"] > 1.5 / len(labels), ctx.reports
    predictor = Job().load(tmp_path)
    assert predictor.classes == sorted(labels)
    batch = _table(50, seed=3, labels=labels).drop_columns(["y"])
    assert set(predictor.predict(batch)) <= set(labels)
    scores = predictor.predict_scores(batch)
    assert scores.shape == ((50,) if objective == "binary" else (50, 3))
    meta = MlpMeta.model_validate_json((tmp_path / "mlp.json").read_text())
    assert meta.categories == {"city": ["lima", "oslo", "rome"]} and meta.numeric == ["x", "n"]
    assert (tmp_path / MODEL_FILE).is_file()


def test_serving_a_batch_without_a_feature_column_names_it(tmp_path):
    ctx = RecordingContext(make_sales(200, seed=1), make_sales(50, seed=2), "sales", tmp_path)
    Job().train({"epochs": 1}, ctx)
    with pytest.raises(KeyError, match="price"):
        Job().load(tmp_path).predict(make_sales(5, seed=3).drop_columns(["price", "sales"]))


def test_a_config_value_out_of_range_names_the_key_and_the_value(tmp_path):
    ctx = RecordingContext(make_sales(50, seed=1), make_sales(20, seed=2), "sales", tmp_path)
    with pytest.raises(ConfigError) as caught:
        Job().train({"dropout": 1.5}, ctx)
    assert caught.value.headline.startswith('Got "1.5" for dropout;')
    assert ctx.reports == []


def test_importing_the_templates_needs_no_torch():
    """The core and the GBDT template work where torch is not installed (a finder that refuses torch)."""
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('no torch here')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import jobs.torch_mlp as m, jobs.tabular_gbdt as g, streamtune, streamtune.sweeps.driver\n"
            "from streamtune.job import load_job_class\n"
            "assert load_job_class('jobs.torch_mlp:Job').distributed == 'torch'\n"
            "assert 'torch' not in sys.modules\n"
            "print(sorted(m.Job.metrics_for({'objective': 'binary'}))[0], g.Job.distributed)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["accuracy", "lightgbm"]
