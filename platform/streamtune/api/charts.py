"""Inline-SVG geometry for the status page: one bar per trial of a sweep, its final metric, the best one marked.

The sweep records each trial's last metrics only (``SweepResult.trials[].metrics``), not per-step history, so
the page draws final values per trial; curves come when per-step progress is recorded. The templates turn these
numbers into ``<rect>`` elements: no script and no chart library.

Example:
    >>> from streamtune.sweeps.schema import TrialSummary
    >>> trials = [TrialSummary(trial_id="a", params={}, metrics={"rmse": 2.0}),
    ...           TrialSummary(trial_id="b", params={}, metrics={"rmse": 1.0}),
    ...           TrialSummary(trial_id="c", params={}, error="ValueError: boom")]
    >>> chart = trial_chart(trials, "rmse", best_id="b")
    >>> [(b.trial_id, b.height, b.best) for b in chart.bars]
    [('a', 180.0, False), ('b', 90.0, True), ('c', 0.0, False)]
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from streamtune.sweeps.schema import TrialSummary

WIDTH, HEIGHT, TOP = 600.0, 200.0, 20.0


class Bar(BaseModel):
    """One trial's bar."""

    model_config = ConfigDict(extra="forbid")

    trial_id: str = Field(description="The trial.")
    x: float = Field(description="Left edge, px.")
    y: float = Field(description="Top edge, px.")
    width: float = Field(description="Width, px.")
    height: float = Field(description="Height, px (0 for a trial without the metric).")
    value: float | None = Field(description="Its final metric; None if it reported none.")
    best: bool = Field(description="Whether it is the sweep's best trial.")


class TrialChart(BaseModel):
    """Bars of every trial's final metric, on a 0-based scale."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="The metric drawn.")
    width: float = Field(WIDTH, description="SVG width, px.")
    height: float = Field(HEIGHT, description="SVG height, px.")
    top: float = Field(description="The scale's top value (the largest |metric|).")
    bars: list[Bar] = Field(description="One per trial, in trial order.")


def trial_chart(trials: list[TrialSummary], metric: str, *, best_id: str | None = None) -> TrialChart:
    """Bars of ``metric`` per trial, heights proportional to |value|, the largest reaching the top margin."""
    values = [_value(t, metric) for t in trials]
    top = max((abs(v) for v in values if v is not None), default=0.0) or 1.0
    slot = WIDTH / max(len(trials), 1)
    bars = []
    for index, (trial, value) in enumerate(zip(trials, values, strict=True)):
        height = 0.0 if value is None else round(abs(value) / top * (HEIGHT - TOP), 2)
        bars.append(Bar(trial_id=trial.trial_id, x=round(index * slot + slot * 0.1, 2), y=round(HEIGHT - height, 2),
                        width=round(slot * 0.8, 2), height=height, value=value, best=trial.trial_id == best_id))
    return TrialChart(metric=metric, top=top, bars=bars)


def _value(trial: TrialSummary, metric: str) -> float | None:
    value = trial.metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
