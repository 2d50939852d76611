"""Reference statistics of a model's training data, and the drift of new rows against them (PSI and KS).

The sweep job stores :class:`ReferenceStats` of the winner's training rows beside its result
(``reference.json``); the registry records its URI in the model's lineage. The drift trigger compares an open
window's rows with the champion's reference, per feature:

- numeric features are binned at the reference's deciles (10 bins, open-ended at both ends); PSI sums
  ``(p - q) * ln(p / q)`` over the bins, with empty bins floored at ``EPSILON``. KS is the largest gap between
  the window's empirical CDF and the reference's, read at the reference's 5 %-quantiles;
- categorical features (strings, booleans, dictionaries) compare value shares (values outside the reference's
  top ``MAX_CATEGORIES`` count as one "other" bucket); KS does not apply to them, so they use PSI.

Rule of thumb for PSI: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a real shift.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> ref = reference_stats(pa.table({"x": rng.normal(0, 1, 5000), "c": ["a", "b"] * 2500}), ["x", "c"])
    >>> same = drift_values(ref, pa.table({"x": rng.normal(0, 1, 2000), "c": ["a", "b"] * 1000}), "psi")
    >>> moved = drift_values(ref, pa.table({"x": rng.normal(1.5, 1, 2000), "c": ["a"] * 2000}), "psi")
    >>> same["x"] < 0.05 and same["c"] < 0.01, moved["x"] > 1.0 and moved["c"] > 1.0
    (True, True)
    >>> round(drift_values(ref, pa.table({"x": rng.normal(1.5, 1, 2000), "c": ["a"] * 2000}), "ks")["x"], 1)
    0.5
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

__all__ = ["EPSILON", "MAX_CATEGORIES", "FeatureStats", "ReferenceStats", "drift_values", "reference_stats"]

EPSILON = 1e-4
"""Floor of a bin's share in PSI, so an empty bin counts as a large, finite shift."""
MAX_CATEGORIES = 50
"""Values kept per categorical feature; the rest share one bucket."""
_OTHER = "\x00other"
_QUANTILES = np.linspace(0.05, 0.95, 19)


class FeatureStats(BaseModel):
    """One feature of the reference."""

    kind: Literal["numeric", "categorical"] = Field(description="How the feature is compared.")
    edges: list[float] = Field(default_factory=list, description="Numeric: inner bin edges (the deciles).")
    shares: list[float] = Field(default_factory=list, description="Numeric: share of rows per bin.")
    quantiles: list[float] = Field(default_factory=list, description="Numeric: the 5 % ... 95 % quantiles, for KS.")
    categories: dict[str, float] = Field(default_factory=dict, description="Categorical: value -> share of rows.")
    nulls: float = Field(0.0, description="Share of null rows (left out of the shares above).")


class ReferenceStats(BaseModel):
    """Per-feature statistics of the rows a model trained on."""

    rows: int = Field(description="Rows summarised.")
    features: dict[str, FeatureStats] = Field(description="Feature -> its statistics.")


def _numeric(column: pa.ChunkedArray) -> bool:
    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type)


def _values(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.drop_null(column).to_numpy(zero_copy_only=False), dtype=float)


def _bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return counts / max(1, values.size)


def _feature(column: pa.ChunkedArray) -> FeatureStats:
    nulls = column.null_count / max(1, len(column))
    if _numeric(column):
        values = _values(column)
        if values.size == 0:
            return FeatureStats(kind="numeric", nulls=nulls)
        edges = sorted(set(np.quantile(values, np.linspace(0.1, 0.9, 9)).tolist()))
        return FeatureStats(kind="numeric", edges=edges, shares=_bin_shares(values, edges).tolist(),
                            quantiles=np.quantile(values, _QUANTILES).tolist(), nulls=nulls)
    counts = Counter(str(v) for v in pc.drop_null(column).to_pylist())
    total = max(1, sum(counts.values()))
    top = dict(counts.most_common(MAX_CATEGORIES))
    shares = {k: v / total for k, v in top.items()}
    rest = total - sum(top.values())
    if rest:
        shares[_OTHER] = rest / total
    return FeatureStats(kind="categorical", categories=shares, nulls=nulls)


def reference_stats(table: pa.Table, features: Sequence[str]) -> ReferenceStats:
    """Summarise ``features`` of ``table`` (missing columns are left out)."""
    return ReferenceStats(rows=table.num_rows, features={f: _feature(table[f]) for f in features
                                                         if f in table.column_names})


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    p, q = np.maximum(actual, EPSILON), np.maximum(expected, EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def _categorical_shares(ref: FeatureStats, column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    counts = Counter(str(v) for v in pc.drop_null(column).to_pylist())
    total = max(1, sum(counts.values()))
    known = [k for k in ref.categories if k != _OTHER]
    actual = [counts.get(k, 0) / total for k in known]
    actual.append(1.0 - sum(actual))
    expected = [ref.categories[k] for k in known] + [ref.categories.get(_OTHER, 0.0)]
    return np.asarray(expected), np.asarray(actual)


def _one(ref: FeatureStats, column: pa.ChunkedArray, method: str) -> float | None:
    if ref.kind == "categorical":
        return _psi(*_categorical_shares(ref, column))
    if not _numeric(column) or not ref.shares:
        return None
    values = _values(column)
    if values.size == 0:
        return None
    if method == "ks":
        cdf = np.searchsorted(np.sort(values), np.asarray(ref.quantiles), side="right") / values.size
        return float(np.max(np.abs(cdf - _QUANTILES)))
    return _psi(np.asarray(ref.shares), _bin_shares(values, ref.edges))


def drift_values(reference: ReferenceStats, table: pa.Table, method: Literal["psi", "ks"] = "psi",
                 features: Sequence[str] | None = None) -> dict[str, float]:
    """Drift of each feature of ``table`` against ``reference`` (features it lacks are left out)."""
    names = [f for f in (features or reference.features) if f in reference.features and f in table.column_names]
    out: dict[str, float] = {}
    for name in names:
        value = _one(reference.features[name], table[name], method)
        if value is not None:
            out[name] = round(value, 6)
    return out
