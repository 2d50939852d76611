"""A job whose model answers one constant; artifact files also make it load slowly or fail on purpose.

Artifact files:
    value.json: the constant every row is answered with.
    load_sleep_s.txt (optional): seconds ``load`` sleeps, to show serving goes on meanwhile.
    fail_load.txt (optional): ``load`` raises with this text.
    fail_predict.txt (optional): ``predict`` raises with this text.
    predict_sleep_s.txt (optional): seconds each ``predict`` sleeps (a slow model).
    slow_after_s.txt (optional): ``predict`` sleeps only once this many seconds passed since ``load``.
    features.json (optional): columns ``predict`` reads (``batch.select``), so a missing one raises KeyError.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_artifact(d, 7)
    >>> ConstJob().load(d).predict(pa.table({"x": [1, 2]}))
    [7, 7]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamtune.job import Job, Predictor, TrainContext


def write_artifact(
    folder: str | Path,
    value: Any,
    *,
    load_sleep_s: float = 0.0,
    fail_load: str | None = None,
    fail_predict: str | None = None,
    predict_sleep_s: float = 0.0,
    slow_after_s: float = 0.0,
    features: list[str] | None = None,
) -> None:
    """Write a ConstJob model into ``folder`` (no manifest; add one with ``write_manifest``)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / "value.json").write_text(json.dumps(value))
    if load_sleep_s:
        (root / "load_sleep_s.txt").write_text(str(load_sleep_s))
    if fail_load:
        (root / "fail_load.txt").write_text(fail_load)
    if fail_predict:
        (root / "fail_predict.txt").write_text(fail_predict)
    if predict_sleep_s:
        (root / "predict_sleep_s.txt").write_text(str(predict_sleep_s))
    if slow_after_s:
        (root / "slow_after_s.txt").write_text(str(slow_after_s))
    if features is not None:
        (root / "features.json").write_text(json.dumps(features))


class ConstPredictor(Predictor):
    """Answers ``value`` for every row, or raises ``fail`` when set."""

    def __init__(
        self,
        value: Any,
        fail: str | None = None,
        *,
        sleep_s: float = 0.0,
        slow_from: float = 0.0,
        columns: list[str] | None = None,
    ) -> None:
        self.value = value
        self.fail = fail
        self.sleep_s = sleep_s
        self.slow_from = slow_from  # time.monotonic() after which predict sleeps
        self.columns = columns

    def predict(self, batch: pa.Table) -> list[Any]:
        if self.columns is not None:
            batch.select(self.columns)  # KeyError naming a missing column, as a real model's would
        if self.fail:
            raise RuntimeError(self.fail)
        if self.sleep_s and time.monotonic() >= self.slow_from:
            time.sleep(self.sleep_s)
        return [self.value] * batch.num_rows


class ConstJob(Job):
    """Trains nothing: saves ``config["value"]``; loads a predictor answering it."""

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        ctx.report({"loss": 0.0})
        ctx.save_model(lambda folder: write_artifact(folder, config["value"]))

    def load(self, artifact_dir: str | Path) -> Predictor:
        root = Path(artifact_dir)
        sleep = root / "load_sleep_s.txt"
        if sleep.is_file():
            time.sleep(float(sleep.read_text()))
        fail = root / "fail_load.txt"
        if fail.is_file():
            raise RuntimeError(fail.read_text())
        fail_predict = root / "fail_predict.txt"
        value = json.loads((root / "value.json").read_text())

        def option(name: str) -> float:
            path = root / name
            return float(path.read_text()) if path.is_file() else 0.0

        features = root / "features.json"
        return ConstPredictor(
            value,
            fail_predict.read_text() if fail_predict.is_file() else None,
            sleep_s=option("predict_sleep_s.txt"),
            slow_from=time.monotonic() + option("slow_after_s.txt"),
            columns=json.loads(features.read_text()) if features.is_file() else None,
        )
