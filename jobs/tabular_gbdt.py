"""Gradient-boosted trees on tabular data with LightGBM (CPU by default, GPU with ``device_type: gpu``).

Each trial trains one booster. Every ``report_every`` boosting rounds it scores the validation split and
reports, so ASHA can stop weak trials early. The model is saved as LightGBM's native text format.

Config keys (from the sweep's search space or ``job.params``): ``objective`` (``regression`` or
``binary``), ``learning_rate``, ``num_leaves``, ``min_data_in_leaf``, ``feature_fraction``,
``lambda_l2``, ``num_boost_round``, ``report_every``, ``num_threads``, ``device_type``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import pyarrow as pa

from streamtune.job import Job as BaseJob
from streamtune.job import Predictor, TrainContext
from streamtune.validation.metrics import METRICS

_BOOSTER_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "lambda_l2",
                 "bagging_fraction", "max_depth", "device_type")


def _frame(table: pa.Table, features: list[str]) -> Any:
    frame = table.select(features).to_pandas()
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("category")
    return frame


class GbdtPredictor(Predictor):
    """A loaded LightGBM booster."""

    def __init__(self, booster: lgb.Booster, features: list[str]) -> None:
        self.booster = booster
        self.features = features

    def predict(self, batch: pa.Table) -> list[float]:
        """Predict one value (regression) or probability (binary) per row."""
        return self.booster.predict(_frame(batch, self.features)).tolist()


class Job(BaseJob):
    """LightGBM template job.

    Example:
        >>> from streamtune.job import load_job_class
        >>> load_job_class("jobs.tabular_gbdt:Job")().__class__.__name__  # doctest: +SKIP
        'Job'
    """

    params = frozenset({"objective", *_BOOSTER_KEYS, "num_boost_round", "report_every", "num_threads"})
    metrics = {"rmse": "min", "mae": "min", "logloss": "min", "accuracy": "max"}

    @classmethod
    def metrics_for(cls, params: Mapping[str, Any]) -> Mapping[str, Literal["min", "max"]]:
        """What a trial reports: rmse and mae for regression, logloss and accuracy for binary."""
        if "objective" not in params:  # the objective may be a search dimension: any of them may come
            return cls.metrics
        names = ("rmse", "mae") if params["objective"] == "regression" else ("logloss", "accuracy")
        return {n: cls.metrics[n] for n in names}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        objective = config.get("objective", "regression")
        params = {k: config[k] for k in _BOOSTER_KEYS if k in config}
        for k in ("num_leaves", "min_data_in_leaf", "max_depth"):
            if k in params:
                params[k] = int(params[k])
        params.update(objective=objective, verbosity=-1, num_threads=int(config.get("num_threads", 1)))
        every = int(config.get("report_every", 10))
        rounds = int(config.get("num_boost_round", 100))
        train_set = lgb.Dataset(_frame(ctx.train, ctx.features), label=ctx.train[ctx.label].to_numpy())
        valid_x = _frame(ctx.valid, ctx.features)
        valid_y = ctx.valid[ctx.label].to_numpy()
        names = ["rmse", "mae"] if objective == "regression" else ["logloss", "accuracy"]

        def _report(env: Any) -> None:
            if (env.iteration + 1) % every == 0 or env.iteration + 1 == rounds:
                pred = env.model.predict(valid_x, num_iteration=env.iteration + 1)
                ctx.report({n: METRICS[n](valid_y, pred) for n in names} | {"rounds": env.iteration + 1})

        booster = lgb.train(params, train_set, num_boost_round=rounds, callbacks=[_report])
        ctx.save_model(lambda folder: self._save(booster, ctx.features, folder))

    @staticmethod
    def _save(booster: lgb.Booster, features: list[str], folder: str) -> None:
        booster.save_model(str(Path(folder) / "model.txt"))
        (Path(folder) / "features.json").write_text(json.dumps(features))

    def load(self, artifact_dir: str | Path) -> GbdtPredictor:
        folder = Path(artifact_dir)
        features = json.loads((folder / "features.json").read_text())
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        return GbdtPredictor(booster, features)


