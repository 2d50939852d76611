"""Paired bootstrap of the metric difference between challenger and champion on the same holdout rows.

Each resample draws row indices with replacement and applies them to BOTH models' per-row terms, so the
interval reflects how much the difference itself varies, not each model's noise. Seeded: the same rows give
the same interval.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> champ = rng.normal(0, 1, 500) ** 2          # squared errors of the champion
    >>> ci = paired_bootstrap("rmse", "min", champ * 0.5, champ, confidence=0.95, resamples=1000)
    >>> ci.significant, ci.low > 0
    (True, True)
    >>> paired_bootstrap("rmse", "min", champ, champ, confidence=0.95, resamples=1000).significant  # a tie
    False
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from streamtune.validation.metrics import aggregate

_CELLS_PER_CHUNK = 4_000_000
"""Resample indices held at once (resamples x rows), so large holdouts do not take gigabytes."""


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


def paired_bootstrap(metric: str, mode: Literal["min", "max"], challenger: np.ndarray, champion: np.ndarray, *,
                     confidence: float = 0.95, resamples: int = 1000, seed: int = 0,
                     required: float = 0.0) -> BootstrapCI:
    """Interval of the gain over ``resamples`` paired resamples of the rows' per-row metric terms."""
    chal, champ = np.asarray(challenger, float), np.asarray(champion, float)
    if chal.shape != champ.shape or chal.ndim != 1 or chal.size == 0:
        raise ValueError(f"paired rows must be two non-empty 1-d arrays of one length; got {chal.shape} and "
                         f"{champ.shape}")
    n = chal.size
    sign = 1.0 if mode == "min" else -1.0
    rng = np.random.default_rng(seed)
    gains = np.empty(resamples)
    step = max(1, _CELLS_PER_CHUNK // n)
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        diff = np.asarray(aggregate(metric, champ[idx], axis=1)) - np.asarray(aggregate(metric, chal[idx], axis=1))
        gains[start:start + k] = sign * diff
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(gains, [alpha, 1.0 - alpha])
    gain = sign * (float(aggregate(metric, champ)) - float(aggregate(metric, chal)))
    return BootstrapCI(metric=metric, confidence=confidence, resamples=resamples, seed=seed, rows=n, gain=gain,
                       low=float(low), high=float(high), required=required, significant=bool(low > required))
