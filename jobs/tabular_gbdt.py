"""Gradient-boosted trees on tabular data with LightGBM (CPU by default, GPU with ``device_type: gpu``).

Each trial trains one booster. Every ``report_every`` boosting rounds it scores the validation split and
reports, so ASHA can stop weak trials early. The model is saved as LightGBM's native text format.

Several workers (``sweep.resources.workers`` > 1): the trial is a Ray Train ``LightGBMTrainer`` run
(``Job.distributed = "lightgbm"``). Each worker builds the features of the whole training split (so a category has
the same code on every worker), keeps its shard of the rows (``ctx.shard()``) and trains with LightGBM's
data-parallel tree learner over the network Ray Train sets up (``ray.train.lightgbm.get_network_params()``,
``tree_learner: data_parallel``, ``pre_partition: true``); every worker ends with the same booster, rank 0's
reports reach Tune and rank 0 saves it. The refit, and one worker, train as before.

Features: numeric and bool columns are used as numbers (nulls are missing values); every other column (strings,
large strings, dictionary-encoded columns, dates...) is a categorical feature. Its values are read as strings,
so a category is the same at training and at predict time whatever the batch's dtype (pandas ``object``,
``str``/``StringDtype`` or Arrow-backed), and a value the model never saw predicts as a missing value.

Labels: numbers for ``regression``; for ``binary`` and ``multiclass`` any labels, strings or numbers (not a mix).
The classes are the sorted distinct labels of the train and validation splits
(:func:`streamtune.validation.labels.class_list`), saved beside the model in ``classes.json``; ``predict``
returns class labels as the table had them (``"churned"``, or ``3`` and ``7``) and ``predict_scores`` the
probabilities (see :class:`streamtune.job.Predictor`).

Config keys (from the sweep's search space or ``job.params``):

- ``objective``: ``regression`` (the default when absent), ``binary`` (exactly two classes) or ``multiclass``
  (two or more classes; ``num_class`` is set from the data). The objective is never guessed from the label.
- booster keys passed to LightGBM: ``learning_rate``, ``num_leaves``, ``min_data_in_leaf``,
  ``feature_fraction``, ``lambda_l2``, ``bagging_fraction``, ``max_depth``, ``device_type``, and for
  imbalanced binary tables ``is_unbalance`` (true/false) or ``scale_pos_weight`` (a number; not both).
- ``num_boost_round`` (default 100), ``report_every`` (default 10), ``num_threads`` (default 1).

Reported metrics (:meth:`Job.metrics_for`): ``rmse`` and ``mae`` for regression; ``logloss``, ``accuracy``,
``auc``, ``pr_auc``, ``f1`` and ``balanced_accuracy`` for binary and multiclass (macro averages), each computed
by :data:`streamtune.validation.metrics.METRICS` on the encoded validation labels and the scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa

from streamtune.errors import ConfigError, DataError
from streamtune.job import Job as BaseJob
from streamtune.job import Predictor, TrainContext
from streamtune.validation.labels import class_list, encode_labels
from streamtune.validation.metrics import METRICS

_BOOSTER_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "lambda_l2",
                 "bagging_fraction", "max_depth", "device_type", "is_unbalance", "scale_pos_weight")

OBJECTIVES = ("regression", "binary", "multiclass")
"""The objectives this template trains."""

_REGRESSION_METRICS = ("rmse", "mae")
_CLASSIFIER_METRICS = ("logloss", "accuracy", "auc", "pr_auc", "f1", "balanced_accuracy")


def _objective(config: Mapping[str, Any]) -> str:
    objective = config.get("objective", "regression")
    if objective not in OBJECTIVES:
        raise ConfigError(f'Got "{objective}" for objective; must be one of {list(OBJECTIVES)}')
    return str(objective)


def _is_number(dtype: pa.DataType) -> bool:
    """Arrow types used as numbers: integers, floats, decimals, bool, and all-null columns."""
    t = pa.types
    return bool(t.is_integer(dtype) or t.is_floating(dtype) or t.is_decimal(dtype) or t.is_boolean(dtype)
                or t.is_null(dtype))


def categorical_columns(table: pa.Table, features: Sequence[str]) -> list[str]:
    """The features LightGBM gets as categories: every column that is not numeric or bool.

    Example:
        >>> t = pa.table({"x": [1.5], "ok": [True], "city": ["Oslo"], "tag": pa.array(["a"]).dictionary_encode()})
        >>> categorical_columns(t, ["x", "ok", "city", "tag"])
        ['city', 'tag']
    """
    schema = table.schema
    return [name for name in features if name in schema.names and not _is_number(schema.field(name).type)]


def _frame(table: pa.Table, features: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """The features as LightGBM reads them: ``categorical`` as pandas categories of strings, the rest as floats.

    Raises:
        KeyError: a feature column is missing (naming it, for serving's 422).
        DataError: a numeric feature holds values that are not numbers.
    """
    cats = set(categorical)
    columns: dict[str, pd.Series] = {}
    for name in features:
        col = table.column(name)
        if name in cats:
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            if not pa.types.is_string(col.type):
                col = col.cast(pa.string())
            columns[name] = col.to_pandas().astype("category")
        else:
            try:
                col = col.cast(pa.float64(), safe=False)  # ids past 2**53 round, as LightGBM's floats would
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f'Got {col.type} values for feature column "{name}"; the model was trained with '
                                f"numbers there ({exc})") from None
            columns[name] = col.to_pandas()
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def _scores(raw: Any, classes: Sequence[Any] | None) -> np.ndarray:
    """The booster's output as :meth:`Predictor.predict_scores` gives it (two classes: the probability of the
    second, one column)."""
    scores = np.asarray(raw, dtype=float)
    if classes is not None and len(classes) == 2 and scores.ndim == 2:
        return scores[:, 1]
    return scores


class GbdtPredictor(Predictor):
    """A loaded LightGBM booster.

    Args:
        booster: The trained booster.
        features: The feature columns, in training order.
        classes: The class labels, in score-column order; None for regression.
        categorical: The features trained as categories; None (a model saved before they were recorded): those
            of each batch that are not numeric.
    """

    def __init__(self, booster: lgb.Booster, features: list[str], classes: Sequence[Any] | None = None,
                 categorical: Sequence[str] | None = None) -> None:
        self.booster = booster
        self.features = features
        self.classes = list(classes) if classes is not None else None
        self.categorical = list(categorical) if categorical is not None else None

    def predict_scores(self, batch: pa.Table) -> np.ndarray:
        """Values (regression), the probability of ``classes[1]`` (binary) or per-class probabilities."""
        categorical = self.categorical if self.categorical is not None else categorical_columns(batch, self.features)
        frame = _frame(batch, self.features, categorical)
        if batch.num_rows == 0:
            width = len(self.classes) if self.classes is not None and len(self.classes) > 2 else 0
            return np.zeros((0, width) if width else (0,))
        return _scores(self.booster.predict(frame), self.classes)

    def predict(self, batch: pa.Table) -> list[Any]:
        """One value per row (regression) or one class label per row (the most probable class)."""
        scores = self.predict_scores(batch)
        if self.classes is None:
            return list(scores.tolist())
        codes = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(int)
        return [self.classes[int(i)] for i in codes]


class Job(BaseJob):
    """LightGBM template job.

    Example:
        >>> from streamtune.job import load_job_class
        >>> load_job_class("jobs.tabular_gbdt:Job")().__class__.__name__  # doctest: +SKIP
        'Job'
        >>> sorted(Job.metrics_for({"objective": "regression"}))
        ['mae', 'rmse']
    """

    params = frozenset({"objective", *_BOOSTER_KEYS, "num_boost_round", "report_every", "num_threads"})
    distributed = "lightgbm"
    metrics = {"rmse": "min", "mae": "min", "logloss": "min", "accuracy": "max", "auc": "max", "pr_auc": "max",
               "f1": "max", "balanced_accuracy": "max"}

    @classmethod
    def metrics_for(cls, params: Mapping[str, Any]) -> Mapping[str, Literal["min", "max"]]:
        """What a trial reports: rmse and mae for regression; logloss, accuracy, auc, pr_auc, f1 and
        balanced_accuracy for binary and multiclass. Without a fixed objective, any of them.

        Raises:
            ConfigError: the objective is none of :data:`OBJECTIVES`.
        """
        if "objective" not in params:  # the objective may be a search dimension: any of them may come
            return cls.metrics
        names = _REGRESSION_METRICS if _objective(params) == "regression" else _CLASSIFIER_METRICS
        return {n: cls.metrics[n] for n in names}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        objective = _objective(config)
        params = {k: config[k] for k in _BOOSTER_KEYS if k in config}
        for k in ("num_leaves", "min_data_in_leaf", "max_depth"):
            if k in params:
                params[k] = int(params[k])
        if "is_unbalance" in params:
            params["is_unbalance"] = _flag(params["is_unbalance"], "is_unbalance")
        if "scale_pos_weight" in params:
            params["scale_pos_weight"] = float(params["scale_pos_weight"])
        params.update(objective=objective, verbosity=-1, num_threads=int(config.get("num_threads", 1)))
        every = int(config.get("report_every", 10))
        rounds = int(config.get("num_boost_round", 100))

        train_y, valid_y, classes = _labels(ctx, objective)
        if classes is not None and objective == "multiclass":
            params["num_class"] = len(classes)
        categorical = categorical_columns(ctx.train, ctx.features)
        train_x = _frame(ctx.train, ctx.features, categorical)
        if ctx.world_size > 1:  # this worker's rows, with the whole split's categories; one booster over all workers
            train_x, train_y = train_x.iloc[ctx.shard()], train_y[ctx.shard()]
            params.update(_network_params(), tree_learner="data_parallel", pre_partition=True)
        train_set = lgb.Dataset(train_x, label=train_y)
        valid_x = _frame(ctx.valid, ctx.features, categorical)
        names = list(self.metrics_for({"objective": objective}))

        def _report(env: Any) -> None:
            if (env.iteration + 1) % every == 0 or env.iteration + 1 == rounds:
                pred = _scores(env.model.predict(valid_x, num_iteration=env.iteration + 1), classes)
                ctx.report(_evaluate(names, valid_y, pred) | {"rounds": env.iteration + 1})

        booster = lgb.train(params, train_set, num_boost_round=rounds, callbacks=[_report])
        ctx.save_model(lambda folder: self._save(booster, ctx.features, classes, categorical, folder))

    @staticmethod
    def _save(booster: lgb.Booster, features: list[str], classes: list[Any] | None, categorical: list[str],
              folder: str) -> None:
        out = Path(folder)
        booster.save_model(str(out / "model.txt"))
        (out / "features.json").write_text(json.dumps(features))
        (out / "categorical.json").write_text(json.dumps(categorical))
        if classes is not None:
            (out / "classes.json").write_text(json.dumps(classes))

    def load(self, artifact_dir: str | Path) -> GbdtPredictor:
        folder = Path(artifact_dir)
        features = json.loads((folder / "features.json").read_text())
        classes = json.loads((folder / "classes.json").read_text()) if (folder / "classes.json").exists() else None
        categorical = (json.loads((folder / "categorical.json").read_text())
                       if (folder / "categorical.json").exists() else None)
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        if classes is None and str(booster.params.get("objective", "")).startswith("binary"):
            classes = [0, 1]  # saved before classes.json: binary models were trained on 0/1 labels
        return GbdtPredictor(booster, features, classes, categorical)


def _network_params() -> dict[str, Any]:
    """LightGBM's network params (``num_machines``, ``machines``, ``local_listen_port``) from Ray Train."""
    from ray.train.lightgbm import get_network_params

    return dict(get_network_params())


def _evaluate(names: Sequence[str], y: Any, scores: Any) -> dict[str, float]:
    """Each metric of ``names`` on the encoded labels (regression: the values) and the scores."""
    return {n: float(METRICS[n](y, scores)) for n in names}


def _flag(value: Any, key: str) -> bool:
    """A yes/no config value (a bool, 0/1, or "true"/"false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f'Got "{value}" for {key}; must be true or false')


def _labels(ctx: TrainContext, objective: str) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
    """The train and validation labels as LightGBM and the metrics read them, and the classes (None for
    regression).

    Raises:
        DataError: a regression label is not numeric or has nulls; a classifier's train split has one class; a
            binary label has more than two classes.
    """
    label = ctx.label
    train, valid = ctx.train.column(label), ctx.valid.column(label)
    if objective == "regression":
        for split, col in (("train", train), ("validation", valid)):
            if not _is_number(col.type) or pa.types.is_null(col.type):
                raise DataError(f'Got {col.type} values in label column "{label}"; objective regression needs '
                                "numbers", fix="set job.params.objective to binary or multiclass to classify it")
            if col.null_count:
                raise DataError(f'Got {col.null_count} null labels in column "{label}" of the {split} split; every '
                                "row needs a label")
        return (np.asarray(train.cast(pa.float64()).to_numpy(), dtype=float),
                np.asarray(valid.cast(pa.float64()).to_numpy(), dtype=float), None)
    seen = class_list(train)
    if len(seen) < 2:
        raise DataError(f'Got only the class {seen[0]!r} in label column "{label}" of the train split; '
                        f"objective {objective} needs at least two classes" if seen else
                        f'Got no rows in label column "{label}" of the train split')
    classes = class_list(train.to_pylist() + valid.to_pylist())
    if objective == "binary" and len(classes) != 2:
        raise DataError(f'Got {len(classes)} classes in label column "{label}" ({classes[:10]}); objective binary '
                        "needs exactly two", fix="set job.params.objective to multiclass")
    return (encode_labels(train, classes).astype(float), encode_labels(valid, classes), classes)
