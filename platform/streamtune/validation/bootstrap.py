"""Paired bootstrap of the metric difference between challenger and champion on the same holdout rows.

Each resample draws row indices with replacement and applies them to BOTH models' per-row terms, so the
interval reflects how much the difference itself varies, not each model's noise. Seeded: the same rows give
the same interval.

A metric that is no mean of per-row terms (auc, pr_auc, f1, balanced_accuracy: not in
:data:`~streamtune.validation.metrics.DECOMPOSABLE`) is computed again on every resample from each model's
per-row records (encoded label and scores, :func:`~streamtune.validation.metrics.pointwise`), the resample given as
how often each row was drawn (:func:`~streamtune.validation.metrics.weighted`). A resample where the metric is
undefined for either model (``nan``: e.g. no positive row in it) is dropped and counted in ``dropped``; the
interval is over the rest. With more than half the resamples dropped, or the metric undefined on all the rows,
there is no interval: :func:`paired_bootstrap` raises ``ValueError`` and the gate fails its bootstrap check with
that reason.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> champ = rng.normal(0, 1, 500) ** 2          # squared errors of the champion
    >>> ci = paired_bootstrap("rmse", "min", champ * 0.5, champ, confidence=0.95, resamples=1000)
    >>> ci.significant, ci.low > 0
    (True, True)
    >>> paired_bootstrap("rmse", "min", champ, champ, confidence=0.95, resamples=1000).significant  # a tie
    False

    A metric computed from the rows again on each resample, from :func:`pointwise` records:

    >>> from streamtune.validation.metrics import pointwise
    >>> y = (rng.random(2000) < 0.2).astype(int)
    >>> sharp, blurry = y * 0.5 + rng.random(2000) * 0.6, y * 0.1 + rng.random(2000) * 0.6
    >>> ci = paired_bootstrap("pr_auc", "max", pointwise("pr_auc", y, sharp), pointwise("pr_auc", y, blurry))
    >>> ci.significant, ci.dropped
    (True, 0)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from streamtune.validation.metrics import DECOMPOSABLE, aggregate, weighted

_CELLS_PER_CHUNK = 4_000_000
"""Resample indices held at once (resamples x rows), so large holdouts do not take gigabytes."""
_WEIGHTED_CELLS_PER_CHUNK = 250_000
"""The same for a metric computed again per resample: its (resamples x rows) weights stay in cache (3x faster)."""


class BootstrapCI(BaseModel):
    """The paired bootstrap's interval of the gain (positive: the challenger is better) in metric units."""

    metric: str = Field(description="Metric name.")
    confidence: float = Field(description="Two-sided confidence level of [low, high].")
    resamples: int = Field(description="Bootstrap resamples.")
    seed: int = Field(description="Seed of the resampling.")
    rows: int = Field(description="Holdout rows resampled (the same rows for both models).")
    gain: float = Field(description="Champion's metric minus the challenger's (reversed for mode=max).")
    low: float = Field(description="Lower end of the interval of the gain.")
    high: float = Field(description="Upper end of the interval of the gain.")
    required: float = Field(description="The lower end must exceed this (must_beat_champion_by x |champion|).")
    significant: bool = Field(description="Whether low > required.")
    dropped: int = Field(0, description="Resamples dropped because the metric was undefined on them for either "
                         "model (e.g. no positive row); the interval is over the rest.")


def paired_bootstrap(metric: str, mode: Literal["min", "max"], challenger: np.ndarray, champion: np.ndarray, *,
                     confidence: float = 0.95, resamples: int = 1000, seed: int = 0,
                     required: float = 0.0) -> BootstrapCI:
    """Interval of the gain over ``resamples`` paired resamples of the rows.

    ``challenger`` and ``champion`` are each model's :func:`~streamtune.validation.metrics.pointwise` values on
    the same rows: per-row terms (rows,) for a decomposable metric; per-row records (rows, 1 + C) otherwise (the
    two models' C may differ).

    Raises:
        ValueError: the rows do not pair up, the metric is undefined on all the rows, or more than half the
            resamples were dropped as undefined.
    """
    chal, champ = np.asarray(challenger, float), np.asarray(champion, float)
    decomposable = metric in DECOMPOSABLE
    if decomposable and (chal.shape != champ.shape or chal.ndim != 1 or chal.size == 0):
        raise ValueError(f"paired rows must be two non-empty 1-d arrays of one length; got {chal.shape} and "
                         f"{champ.shape}")
    if not decomposable and (chal.ndim != 2 or champ.ndim != 2 or chal.shape[0] != champ.shape[0]
                             or chal.shape[0] == 0):
        raise ValueError(f"paired rows of {metric} must be two non-empty (rows, 1 + scores) arrays of per-row "
                         f"records with the same rows; got {chal.shape} and {champ.shape}")
    n = chal.shape[0]
    sign = 1.0 if mode == "min" else -1.0
    gain = sign * (float(aggregate(metric, champ)) - float(aggregate(metric, chal)))
    if not np.isfinite(gain):
        raise ValueError(f"{metric} is undefined on the {n} holdout rows for the challenger or the champion "
                         "(e.g. one class only), so there is no gain to bootstrap")
    rng = np.random.default_rng(seed)
    gains = np.empty(resamples)
    step = max(1, (_CELLS_PER_CHUNK if decomposable else _WEIGHTED_CELLS_PER_CHUNK) // n)
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        if decomposable:
            diff = np.asarray(aggregate(metric, champ[idx], axis=1)) - np.asarray(aggregate(metric, chal[idx], axis=1))
        else:
            counts = np.bincount((idx + (np.arange(k) * n)[:, None]).ravel(), minlength=k * n).reshape(k, n)
            diff = np.asarray(weighted(metric, champ, counts)) - np.asarray(weighted(metric, chal, counts))
        gains[start:start + k] = sign * diff
    kept = gains[np.isfinite(gains)]
    dropped = resamples - kept.size
    if kept.size == 0 or 2 * dropped > resamples:
        raise ValueError(f"{metric} was undefined for the challenger or the champion on {dropped} of {resamples} "
                         "resamples (e.g. no positive row drawn); too few are left for an interval")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(kept, [alpha, 1.0 - alpha])
    return BootstrapCI(metric=metric, confidence=confidence, resamples=resamples, seed=seed, rows=n, gain=gain,
                       low=float(low), high=float(high), required=required, significant=bool(low > required),
                       dropped=dropped)
