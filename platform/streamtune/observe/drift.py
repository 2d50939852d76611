"""Drift of a version's live predictions from its gate-holdout predictions: PSI over shared fixed bins.

Replicas bin every numeric prediction they serve into :data:`~streamtune.serving.records.PREDICTION_EDGES`
(``RequestCounts.predictions``); the gate's ``holdout_scores.parquet`` holds the same version's predictions on
the holdout rows (``challenger_pred``), binned here the same way. The fine bins are then merged into about
:data:`PSI_GROUPS` groups of equal holdout mass (deciles, as PSI is usually taken), and

    PSI = sum over groups of (live% - holdout%) * ln(live% / holdout%)

with each share floored at :data:`PSI_FLOOR`. Read it as the usual rule of thumb: below 0.1 no shift, 0.1 to
0.25 a moderate one, above 0.25 a major one. Regression outputs only: a classifier serves class labels, which
are not binned, and its holdout holds probabilities (``challenger_label`` present): no PSI then.

Example:
    >>> import numpy as np
    >>> from streamtune.serving.records import prediction_histogram
    >>> rng = np.random.default_rng(0)
    >>> holdout = prediction_histogram(list(rng.normal(100, 10, 5000)))
    >>> same = prediction_histogram(list(rng.normal(100, 10, 2000)))
    >>> shifted = prediction_histogram(list(rng.normal(120, 10, 2000)))
    >>> psi(holdout, same) < 0.1, psi(holdout, shifted) > 0.25
    (True, True)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

import pyarrow as pa

from streamtune.serving.records import prediction_histogram

__all__ = ["PSI_FLOOR", "PSI_GROUPS", "group_cuts", "holdout_histogram", "psi"]

PSI_GROUPS = 10
"""Groups of equal holdout mass the fine bins are merged into before PSI is taken."""
PSI_FLOOR = 1e-4
"""Least share a group counts with, so an empty one does not make PSI infinite."""


def group_cuts(reference: Mapping[int, int], groups: int = PSI_GROUPS) -> list[int]:
    """The last fine bin of each group but the last, so that each group holds about ``1/groups`` of the mass.

    A fine bin is never split: one holding much of the mass makes a group of its own.

    Example:
        >>> group_cuts({3: 10, 4: 10, 5: 10, 6: 10}, groups=2)
        [4]
        >>> group_cuts({3: 90, 4: 5, 5: 5}, groups=4)
        [3, 4]
    """
    total = sum(reference.values())
    target = total / groups
    cuts: list[int] = []
    seen = 0
    for index in sorted(reference):
        seen += reference[index]
        if len(cuts) < groups - 1 and seen >= target * (len(cuts) + 1) - 1e-9 and seen < total:
            cuts.append(index)
    return cuts


def psi(reference: Mapping[int, int], live: Mapping[int, int], groups: int = PSI_GROUPS) -> float | None:
    """Population stability index of ``live`` against ``reference`` (both fine-bin histograms); None if either is
    empty.

    Example:
        >>> psi({1: 50, 2: 50}, {1: 50, 2: 50})
        0.0
        >>> round(psi({1: 50, 2: 50}, {1: 90, 2: 10}), 3)
        0.879
        >>> psi({}, {1: 3}) is None
        True
    """
    total_ref, total_live = sum(reference.values()), sum(live.values())
    if not total_ref or not total_live:
        return None
    cuts = group_cuts(reference, groups)
    ref_mass = [0] * (len(cuts) + 1)
    live_mass = [0] * (len(cuts) + 1)
    for index, count in reference.items():
        ref_mass[bisect.bisect_left(cuts, index)] += count
    for index, count in live.items():
        live_mass[bisect.bisect_left(cuts, index)] += count
    value = 0.0
    for r, a in zip(ref_mass, live_mass, strict=True):
        expected = max(r / total_ref, PSI_FLOOR)
        actual = max(a / total_live, PSI_FLOOR)
        value += (actual - expected) * math.log(actual / expected)
    return round(value, 6)


def holdout_histogram(scores: pa.Table) -> dict[int, int] | None:
    """The challenger's holdout predictions (``challenger_pred``) binned like live ones; None for a classifier
    (or a table without them).

    Example:
        >>> from streamtune.serving.records import PREDICTION_EDGES
        >>> from streamtune.validation.holdout import scores_table
        >>> h = holdout_histogram(scores_table("rmse", [1.0, 2.0], [1.1, 2.2], None, {}))
        >>> [(PREDICTION_EDGES[i], n) for i, n in sorted(h.items())]  # bins (1, 1.5] and (2, 3]
        [(1.5, 1), (3.0, 1)]
        >>> holdout_histogram(scores_table("auc", ["n", "y"], [0.2, 0.9], None, {}, challenger_label=[0, 1])) is None
        True
    """
    names = scores.column_names
    if "challenger_pred" not in names or "challenger_label" in names:
        return None
    column = scores.column("challenger_pred")
    if not pa.types.is_floating(column.type) and not pa.types.is_integer(column.type):
        return None
    return prediction_histogram([v for v in column.to_pylist() if v is not None]) or None
