"""Per-row holdout scores: what the sweep job records for the gate beside ``result.json``.

The sweep job scores the challenger and the champion on the same holdout rows (rows no trial trained or tuned
on) and writes one Parquet table, ``holdout_scores.parquet``: the label, each model's prediction and per-row
metric term (:func:`~streamtune.validation.metrics.pointwise`), and the columns the spec's slices are defined
on (``slice:<column>``). The gate resamples those rows for the paired bootstrap and folds them per slice.
Pure numpy and pyarrow, so it runs in the job, the controller and unit tests alike.

Example:
    >>> import numpy as np
    >>> t = scores_table("rmse", [1.0, 2.0], [1.0, 4.0], [2.0, 2.0], {"region": [0, 1]})
    >>> t.column_names
    ['label', 'challenger_pred', 'challenger_loss', 'champion_pred', 'champion_loss', 'slice:region']
    >>> rows = PairedRows.from_table(t)
    >>> rows.challenger.tolist(), rows.champion.tolist(), rows.rows
    ([0.0, 4.0], [1.0, 0.0], 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from streamtune.config.jobspec import SliceSpec
from streamtune.validation.metrics import pointwise

HOLDOUT_SCORES = "holdout_scores.parquet"
"""File name of the per-row scores in the run's folder, beside ``result.json``."""
SLICE_PREFIX = "slice:"


def scores_table(metric: str, label: Sequence[float] | np.ndarray, challenger: Sequence[float] | np.ndarray,
                 champion: Sequence[float] | np.ndarray | None, slice_columns: Mapping[str, Any]) -> pa.Table:
    """One row per holdout row: label, predictions and per-row metric terms of both models, slice columns."""
    cols: dict[str, Any] = {
        "label": pa.array(np.asarray(label, float)),
        "challenger_pred": pa.array(np.asarray(challenger, float)),
        "challenger_loss": pa.array(pointwise(metric, label, challenger)),
    }
    if champion is not None:
        cols["champion_pred"] = pa.array(np.asarray(champion, float))
        cols["champion_loss"] = pa.array(pointwise(metric, label, champion))
    for name, values in slice_columns.items():
        cols[SLICE_PREFIX + name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pa.table(cols)


@dataclass(frozen=True)
class PairedRows:
    """Per-row metric terms of the challenger and (if scored) the champion on the same holdout rows."""

    challenger: np.ndarray
    champion: np.ndarray | None
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Holdout rows."""
        return int(self.challenger.shape[0])

    @classmethod
    def from_table(cls, table: pa.Table) -> PairedRows:
        """Read the layout :func:`scores_table` writes."""
        names = set(table.column_names)
        champion = table["champion_loss"].to_numpy().astype(float) if "champion_loss" in names else None
        columns = {n[len(SLICE_PREFIX):]: table[n].to_numpy(zero_copy_only=False)
                   for n in table.column_names if n.startswith(SLICE_PREFIX)}
        return cls(table["challenger_loss"].to_numpy().astype(float), champion, columns)


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
