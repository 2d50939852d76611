"""A job that records every execution of a trial, for the resume test (tests/integration/test_sweep_resume.py).

Each trial reports ``rmse = (x - 0.3)**2 + 0.01 / step`` for ``steps`` steps (``sleep_s`` apart) and saves the
training rows' mean label; its model answers that mean for every row, so the holdout scores are real numbers.
Inside Tune it first writes one marker file per execution into ``marker_dir`` (a folder every node of the test
cluster sees), named by the Tune trial id and unique per execution, holding the trial id, the config, the Ray
job (the sweep driver's attempt) it ran under, and at the end the last metrics it reported. A trial that ran
twice therefore has two markers. The refit (outside Tune) writes none.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> ResumeJob._save(d, 4.5)
    >>> ResumeJob().load(d).predict(pa.table({"x": [1.0, 2.0]}))
    [4.5, 4.5]
    >>> ResumeJob._marker({"x": 0.5, "marker_dir": d}) is None  # outside a Tune trial: no marker
    True
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from streamtune.job import Job, Predictor, TrainContext


class MeanPredictor(Predictor):
    """Answers the training rows' mean label for every row."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, batch: pa.Table) -> list[float]:
        return [self.value] * batch.num_rows


class ResumeJob(Job):
    """Reports rmse from ``x`` per step, saves the mean label; records each execution in ``marker_dir``."""

    params = frozenset({"x", "steps", "sleep_s", "marker_dir"})
    metrics = {"rmse": "min"}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        marker = self._marker(config)
        x = float(config["x"])
        last: dict[str, float] = {}
        for step in range(1, int(config.get("steps", 3)) + 1):
            time.sleep(float(config.get("sleep_s", 0.0)))
            last = {"rmse": (x - 0.3) ** 2 + 0.01 / step}
            ctx.report(last)
        mean = float(pc.mean(ctx.train.column(ctx.label)).as_py() or 0.0)
        ctx.save_model(lambda folder: self._save(folder, mean))
        if marker is not None:
            record = json.loads(marker.read_text())
            marker.write_text(json.dumps({**record, "last": last, "ended": True}))

    @staticmethod
    def _marker(config: dict[str, Any]) -> Path | None:
        """Write this execution's marker (inside a Tune trial with ``marker_dir`` set); None otherwise."""
        if not config.get("marker_dir"):
            return None
        import ray
        from ray import tune

        with warnings.catch_warnings():  # outside a Tune trial (the refit) it warns and answers None
            warnings.simplefilter("ignore")
            trial_id = tune.get_context().get_trial_id()
        if not trial_id:
            return None
        path = Path(str(config["marker_dir"])) / f"{trial_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        params = {k: v for k, v in config.items() if k not in ("marker_dir", "steps", "sleep_s")}
        path.write_text(json.dumps({"trial_id": trial_id, "params": params,
                                    "ray_job": ray.get_runtime_context().get_job_id(), "ended": False}))
        return path

    @staticmethod
    def _save(folder: str, mean: float) -> None:
        (Path(folder) / "model.json").write_text(json.dumps({"mean": mean}))

    def load(self, artifact_dir: str | Path) -> Predictor:
        return MeanPredictor(float(json.loads((Path(artifact_dir) / "model.json").read_text())["mean"]))
