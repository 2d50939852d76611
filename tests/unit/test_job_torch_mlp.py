"""jobs/torch_mlp.py on CPU, without Ray: the Job conformance suite, binary and multiclass with string features,
what serving sees (a missing column), and that importing the template needs no torch."""

from __future__ import annotations

import math
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


class CheckpointingContext(RecordingContext):
    """A context that keeps a checkpoint at every report, each in its own folder, and resumes from ``restore``."""

    def __init__(self, train: pa.Table, valid: pa.Table, label: str, folder: Path,
                 restore: Path | None = None) -> None:
        super().__init__(train, valid, label, folder / "model")
        self.root, self.restore = folder, restore
        self.checkpoints: list[Path] = []

    def report_checkpoint(self, metrics, writer) -> None:
        self.report(metrics)
        folder = self.root / f"checkpoint-{len(self.reports)}"
        folder.mkdir(parents=True)
        writer(str(folder))
        self.checkpoints.append(folder)

    def restored_checkpoint(self) -> Path | None:
        return self.restore


CONFIG = {"epochs": 4, "hidden": 16, "lr": 0.01, "batch_size": 64, "seed": 3}


def _weights(folder: Path) -> dict:
    import torch

    return torch.load(folder / MODEL_FILE, weights_only=True)


def test_a_trial_resumed_from_its_checkpoint_with_the_same_config_trains_as_one_that_never_stopped(tmp_path):
    train, valid = make_sales(600, seed=1), make_sales(150, seed=2)
    straight = CheckpointingContext(train, valid, "sales", tmp_path / "straight")
    Job().train(CONFIG, straight)
    first = CheckpointingContext(train, valid, "sales", tmp_path / "first")
    Job().train({**CONFIG, "epochs": 2}, first)
    resumed = CheckpointingContext(train, valid, "sales", tmp_path / "resumed", restore=first.checkpoints[-1])
    Job().train(CONFIG, resumed)
    assert [r["epoch"] for r in resumed.reports] == [3, 4]  # from the epoch after the checkpoint's
    assert resumed.reports == straight.reports[2:]  # AdamW's state and the per-epoch shuffles came back
    import torch

    for name, tensor in _weights(straight.folder).items():
        assert torch.equal(tensor, _weights(resumed.folder)[name]), name


def test_a_resumed_trial_trains_on_with_its_new_learning_rate_and_weight_decay(tmp_path):
    import torch

    train, valid = make_sales(600, seed=1), make_sales(150, seed=2)
    first = CheckpointingContext(train, valid, "sales", tmp_path / "first")
    Job().train({**CONFIG, "epochs": 2}, first)
    mutated = {**CONFIG, "lr": 0.002, "weight_decay": 0.05, "batch_size": 32, "dropout": 0.1}
    resumed = CheckpointingContext(train, valid, "sales", tmp_path / "resumed", restore=first.checkpoints[-1])
    Job().train(mutated, resumed)
    state = torch.load(resumed.checkpoints[-1] / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 4 and state["hyper"]["lr"] == 0.002
    assert {(g["lr"], g["weight_decay"]) for g in state["optimiser"]["param_groups"]} == {(0.002, 0.05)}
    before = torch.load(first.checkpoints[-1] / "checkpoint.pt", weights_only=True)
    steps = {int(s["step"]) for s in state["optimiser"]["state"].values()}
    steps_before = {int(s["step"]) for s in before["optimiser"]["state"].values()}
    assert steps == {steps_before.pop() + 2 * math.ceil(600 / 32)}  # AdamW went on counting at batch size 32
    assert MlpMeta.model_validate_json((resumed.folder / "mlp.json").read_text()).dropout == 0.1
    assert resumed.reports[-1]["rmse"] < first.reports[0]["rmse"]


def test_resuming_with_another_architecture_is_refused_naming_the_key(tmp_path):
    train, valid = make_sales(200, seed=1), make_sales(50, seed=2)
    first = CheckpointingContext(train, valid, "sales", tmp_path / "first")
    Job().train({**CONFIG, "epochs": 1}, first)
    resumed = CheckpointingContext(train, valid, "sales", tmp_path / "resumed", restore=first.checkpoints[-1])
    with pytest.raises(ConfigError) as caught:
        Job().train({**CONFIG, "hidden": 32}, resumed)
    assert caught.value.headline.startswith('Got "32" for hidden; the checkpoint this trial resumes from was trained '
                                            "with hidden 16")
    assert resumed.reports == []


def test_a_context_that_cannot_checkpoint_gets_plain_reports_and_no_checkpoint_files(tmp_path):
    ctx = RecordingContext(make_sales(200, seed=1), make_sales(50, seed=2), "sales", tmp_path)
    Job().train({**CONFIG, "epochs": 2}, ctx)
    assert [r["epoch"] for r in ctx.reports] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.json", "mlp.json", "model.pt"]
