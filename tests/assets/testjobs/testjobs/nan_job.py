"""A job that trains "fine" but whose model answers NaN for every row: the gate's smoke test must stop it.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> NanJob._save(d)
    >>> NanJob().load(d).predict(pa.table({"x": [1.0, 2.0]}))
    [nan, nan]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from streamtune.job import Job, Predictor, TrainContext


class NanPredictor(Predictor):
    """Answers NaN for every row."""

    def predict(self, batch: pa.Table) -> list[float]:
        return [float("nan")] * batch.num_rows


class NanJob(Job):
    """Reports a good rmse, saves a marker file; its model predicts NaN."""

    params = frozenset({"rounds"})
    metrics = {"rmse": "min"}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        for _ in range(int(config.get("rounds", 1))):
            ctx.report({"rmse": 1.0})
        ctx.save_model(self._save)

    @staticmethod
    def _save(folder: str) -> None:
        (Path(folder) / "nan.txt").write_text("this model answers NaN")

    def load(self, artifact_dir: str | Path) -> Predictor:
        return NanPredictor()
