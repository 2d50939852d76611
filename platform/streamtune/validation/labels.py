"""Class labels of a classifier: the sorted class list a model is trained on, and labels encoded by it.

Jobs, the sweep's holdout scoring and the gate encode labels the same way: a label's code is its index in the
model's ``classes`` (:attr:`streamtune.job.Predictor.classes`); a label the model never saw is ``-1`` (scored
as wrong by every metric).

Example:
    >>> classes = class_list(["b", "a", "c", "a"])
    >>> classes
    ['a', 'b', 'c']
    >>> encode_labels(["c", "a", "z"], classes).tolist()
    [2, 0, -1]
    >>> class_list([1, 0, 1]), encode_labels(pa.array([0, 1]), [0, 1]).tolist()
    ([0, 1], [0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from streamtune.errors import DataError

__all__ = ["UNKNOWN", "class_list", "encode_labels"]

UNKNOWN = -1
"""Code of a label outside the model's classes."""


def _values(labels: Any) -> list[Any]:
    if isinstance(labels, (pa.Array, pa.ChunkedArray)):
        return list(labels.to_pylist())
    if isinstance(labels, np.ndarray):
        return list(labels.tolist())
    return list(labels)


def class_list(labels: Any) -> list[Any]:
    """The distinct labels, sorted (numbers as Python ints when whole, so ``[0, 1]`` not ``[0.0, 1.0]``).

    Raises:
        DataError: a label is null, or labels mix strings and numbers.
    """
    values = _values(labels)
    if any(v is None for v in values):
        raise DataError(f"Got {sum(v is None for v in values)} null labels; every row needs a label")
    distinct = set(values)
    kinds = {isinstance(v, str) for v in distinct}
    if len(kinds) > 1:
        raise DataError(f"Got labels mixing strings and numbers ({sorted(map(repr, distinct))[:5]}); "
                        "a classifier's labels must be all strings or all numbers")
    out = sorted(distinct)
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in out]


def encode_labels(labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """Each label's index in ``classes`` (int64), ``UNKNOWN`` for a label not among them."""
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index.get(v, UNKNOWN) for v in _values(labels)], dtype=np.int64)
