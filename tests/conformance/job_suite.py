"""Conformance suite for ``streamtune.Job`` implementations (the job-framework extension point).

Subclass :class:`JobConformance` and provide the ``job``, ``data`` and ``config`` fixtures; every job
template in ``jobs/`` runs it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest

from streamtune.job import Job, Predictor, TrainContext
from streamtune.registry.manifest import verify_manifest, write_manifest


class RecordingContext(TrainContext):
    """A TrainContext that records reports and saves into a folder, without Ray."""

    def __init__(self, train: pa.Table, valid: pa.Table, label: str, folder: Path) -> None:
        self.train, self.valid, self.label = train, valid, label
        self.features = [c for c in train.column_names if c != label]
        self.folder = folder
        self.reports: list[dict] = []
        self.saved = 0

    def report(self, metrics: dict[str, float]) -> None:
        self.reports.append(dict(metrics))

    def save_model(self, writer) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        writer(str(self.folder))
        write_manifest(self.folder)
        self.saved += 1


class JobConformance:
    """Every Job must report per step, save once, and load into a Predictor that answers per row."""

    metric: str = "rmse"

    @pytest.fixture
    def trained(self, job: Job, data: tuple[pa.Table, pa.Table, str], config: dict, tmp_path: Path):
        train, valid, label = data
        ctx = RecordingContext(train, valid, label, tmp_path / "model")
        job.train(config, ctx)
        return ctx

    def test_reports_the_metric_at_every_step(self, trained):
        assert len(trained.reports) >= 2, "report per step so ASHA can prune"
        for report in trained.reports:
            assert math.isfinite(report[self.metric])

    def test_saves_once_with_a_manifest(self, trained):
        assert trained.saved == 1
        assert verify_manifest(trained.folder)["files"]

    def test_loads_into_a_predictor_with_one_answer_per_row(self, job, trained, data):
        predictor = job.load(trained.folder)
        assert isinstance(predictor, Predictor)
        _, valid, label = data
        preds = list(predictor.predict(valid.drop_columns([label])))
        assert len(preds) == valid.num_rows
        assert all(math.isfinite(float(p)) for p in preds)

    def test_later_steps_do_not_get_worse_on_easy_data(self, trained):
        first, last = trained.reports[0][self.metric], trained.reports[-1][self.metric]
        assert last <= first
