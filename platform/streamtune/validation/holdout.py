"""Per-row holdout scores: what the sweep job records for the gate beside ``result.json``.

The sweep job scores the challenger and the champion on the same holdout rows (rows no trial trained or tuned
on) and writes one Parquet table, ``holdout_scores.parquet``, whose schema metadata names the metric
(``streamtune.metric``):

- ``label``: the holdout's label (values for regression, the class labels as read for a classifier);
- ``<model>_pred``: each model's scores (:meth:`~streamtune.job.Predictor.predict_scores`): a float per row, or a
  fixed-size list of K class probabilities for a multiclass model;
- ``<model>_label``: for a classifier, the label encoded by THAT model's classes
  (:func:`~streamtune.validation.labels.encode_labels`; champion and challenger may know different classes);
- ``<model>_loss``: for a metric that is a mean of per-row terms (:data:`~streamtune.validation.metrics.DECOMPOSABLE`),
  each row's term (:func:`~streamtune.validation.metrics.pointwise`);
- ``slice:<column>``: the columns the spec's slices are defined on.

``<model>`` is ``challenger`` or ``champion`` (absent when no champion was scored). :class:`PairedRows` reads it
back for the gate: per-row terms for a decomposable metric; for auc, pr_auc, f1 and balanced_accuracy each row's
record (encoded label and scores), from which the gate computes the metric on every resample and slice. Pure numpy
and pyarrow, so it runs in the job, the controller and unit tests alike.

Example:
    >>> import numpy as np
    >>> t = scores_table("rmse", [1.0, 2.0], [1.0, 4.0], [2.0, 2.0], {"region": [0, 1]})
    >>> t.column_names
    ['label', 'challenger_pred', 'challenger_loss', 'champion_pred', 'champion_loss', 'slice:region']
    >>> rows = PairedRows.from_table(t)
    >>> rows.challenger.tolist(), rows.champion.tolist(), rows.rows
    ([0.0, 4.0], [1.0, 0.0], 2)

    A classifier: string labels, each model's own encoding, a metric the gate computes from the rows:

    >>> t = scores_table("auc", ["no", "yes", "yes"], [0.2, 0.9, 0.4], [0.3, 0.6, 0.7], {},
    ...                  challenger_label=[0, 1, 1], champion_label=[0, 1, 1])
    >>> t.column_names
    ['label', 'challenger_pred', 'challenger_label', 'champion_pred', 'champion_label']
    >>> rows = PairedRows.from_table(t)
    >>> rows.metric, rows.challenger.tolist()
    ('auc', [[0.0, 0.2], [1.0, 0.9], [1.0, 0.4]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from streamtune.config.jobspec import SliceSpec
from streamtune.validation.metrics import DECOMPOSABLE, get_metric, pointwise

HOLDOUT_SCORES = "holdout_scores.parquet"
"""File name of the per-row scores in the run's folder, beside ``result.json``."""
SLICE_PREFIX = "slice:"
METRIC_KEY = b"streamtune.metric"
"""Schema metadata key of the metric the table was written for."""


def scores_table(metric: str, label: Any, challenger: Sequence[Any] | np.ndarray,
                 champion: Sequence[Any] | np.ndarray | None, slice_columns: Mapping[str, Any], *,
                 challenger_label: Sequence[int] | np.ndarray | None = None,
                 champion_label: Sequence[int] | np.ndarray | None = None) -> pa.Table:
    """One row per holdout row: label, both models' scores (and, for a classifier, the label each encodes), per-row
    metric terms for a decomposable metric, slice columns.

    Args:
        metric: the metric the gate judges (:data:`~streamtune.validation.metrics.METRICS`).
        label: the holdout's label column: values (regression) or class labels (classifier).
        challenger: the challenger's scores, (rows,) or (rows, K).
        champion: the champion's scores, or None when it was not scored.
        slice_columns: slice column name -> values.
        challenger_label: for a classifier, ``label`` encoded by the challenger's classes; None for regression.
            For a metric that is no mean of per-row terms, None means ``label`` is already encoded.
        champion_label: the same for the champion.
    """
    get_metric(metric)
    classifier = challenger_label is not None or champion_label is not None or metric not in DECOMPOSABLE
    if classifier:
        cols: dict[str, Any] = {"label": label if isinstance(label, (pa.Array, pa.ChunkedArray)) else pa.array(
            np.asarray(label).tolist())}
    else:
        cols = {"label": pa.array(np.asarray(label, float))}
    models: list[tuple[str, Any, Any]] = [("challenger", challenger, challenger_label)]
    if champion is not None:
        models.append(("champion", champion, champion_label))
    for name, scores, codes in models:
        values = np.asarray(scores, float)
        cols[f"{name}_pred"] = _scores_column(values)
        truth: Any = codes
        if codes is not None:
            truth = np.asarray(codes, np.int64)
            cols[f"{name}_label"] = pa.array(truth)
        elif metric not in DECOMPOSABLE:
            truth = np.asarray(label)
            cols[f"{name}_label"] = pa.array(pointwise(metric, truth, values)[:, 0].astype(np.int64))
        else:
            truth = np.asarray(label, float)
        if metric in DECOMPOSABLE:
            cols[f"{name}_loss"] = pa.array(pointwise(metric, truth, values))
    for name, values in slice_columns.items():
        cols[SLICE_PREFIX + name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pa.table(cols).replace_schema_metadata({METRIC_KEY: metric.encode()})


def _scores_column(values: np.ndarray) -> pa.Array:
    """A float column, or a fixed-size list column of the K class probabilities."""
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.array(values)


def _scores_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The scores :func:`_scores_column` wrote: (rows,) or (rows, K)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), float)
        width = arr.type.list_size if pa.types.is_fixed_size_list(arr.type) else (
            flat.size // len(arr) if len(arr) else 0)
        return flat.reshape(len(arr), width)
    return np.asarray(arr.to_numpy(zero_copy_only=False), float)


@dataclass(frozen=True)
class PairedRows:
    """What the gate resamples, per holdout row, for the challenger and (if scored) the champion on the same rows.

    For a metric in :data:`~streamtune.validation.metrics.DECOMPOSABLE`: each row's metric term, shape (rows,).
    For the others: each row's record, shape (rows, 1 + C): the label encoded by that model, then its score(s)
    (the two models' C may differ); :func:`~streamtune.validation.metrics.aggregate` computes the metric from any
    rows of either (:func:`~streamtune.validation.metrics.pointwise`).
    """

    challenger: np.ndarray
    champion: np.ndarray | None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    metric: str | None = None
    """The metric the rows are for (from the table's metadata, or the one asked for); None for an old table."""

    @property
    def rows(self) -> int:
        """Holdout rows."""
        return int(self.challenger.shape[0])

    @classmethod
    def from_table(cls, table: pa.Table, metric: str | None = None) -> PairedRows:
        """Read the layout :func:`scores_table` writes (older tables too: per-row terms without metadata).

        ``metric``: the metric the gate judges. The stored per-row terms are used when they are that metric's;
        otherwise the rows are computed from the labels and scores (a table written for another metric).

        Raises:
            ValueError: the table has neither the per-row terms nor the labels and scores the metric needs.
        """
        raw = (table.schema.metadata or {}).get(METRIC_KEY)
        stored = raw.decode() if raw is not None else None
        metric = metric or stored
        names = set(table.column_names)

        def model(name: str) -> np.ndarray | None:
            fits = metric is None or (metric in DECOMPOSABLE and stored in (None, metric))
            if f"{name}_loss" in names and fits:
                return np.asarray(table[f"{name}_loss"].to_numpy(), dtype=float)
            if f"{name}_pred" not in names:
                return None
            if metric is None:
                raise ValueError(f"the table has no {name}_loss column and names no metric")
            label = f"{name}_label" if f"{name}_label" in names else "label"
            return pointwise(metric, table[label].to_numpy(), _scores_values(table[f"{name}_pred"]))

        challenger = model("challenger")
        if challenger is None:
            raise ValueError("the table has no challenger_loss or challenger_pred column")
        columns = {n[len(SLICE_PREFIX):]: table[n].to_numpy(zero_copy_only=False)
                   for n in table.column_names if n.startswith(SLICE_PREFIX)}
        return cls(challenger, model("champion"), columns, metric)


def slice_mask(spec: SliceSpec, column: np.ndarray) -> np.ndarray:
    """Rows of ``column`` in the slice: value in ``spec.values``, or ``low <= value < high``.

    Example:
        >>> s = SliceSpec(name="hot", column="temp", range=(25, 30))
        >>> slice_mask(s, np.array([20.0, 25.0, 29.9, 30.0])).tolist()
        [False, True, True, False]
    """
    if spec.values is not None:
        return np.isin(column, np.asarray(spec.values, dtype=column.dtype if column.dtype != object else object))
    assert spec.range is not None
    low, high = spec.range
    numeric = np.asarray(column, dtype=float)
    with np.errstate(invalid="ignore"):
        return (numeric >= low) & (numeric < high)
