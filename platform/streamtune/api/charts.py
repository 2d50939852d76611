"""Inline-SVG geometry for the status page: one bar per trial of a sweep, its final metric, the best one marked.

An ended sweep's result keeps each trial's last metrics (``SweepResult.trials[].metrics``): :func:`trial_chart`
draws one bar per trial. While a sweep runs, its ``progress.json`` keeps every trial's curve of the sweep metric:
:func:`curve_chart` draws them. The templates turn these numbers into ``<rect>`` and ``<polyline>`` elements: no
script and no chart library.

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

from streamtune.sweeps.progress import SweepProgress
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


class Curve(BaseModel):
    """One trial's curve of the sweep metric, as SVG polyline points."""

    model_config = ConfigDict(extra="forbid")

    trial_id: str = Field(description="The trial.")
    points: str = Field(description="SVG polyline points, 'x,y x,y ...'.")
    state: str = Field(description="running, done, pruned or error.")
    best: bool = Field(description="Whether it holds the best value so far.")
    last: float | None = Field(description="Its latest value.")


class CurveChart(BaseModel):
    """Every trial's curve on shared axes (report step across, metric up)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="The sweep metric.")
    width: float = Field(description="Chart width, px.")
    height: float = Field(description="Chart height, px.")
    low: float = Field(description="Metric at the bottom edge.")
    high: float = Field(description="Metric at the top edge.")
    steps: int = Field(description="Most report steps of any trial.")
    curves: list[Curve] = Field(description="One per trial with at least one value.")


def curve_chart(progress: SweepProgress) -> CurveChart | None:
    """Per-step curves of a running sweep (:mod:`streamtune.sweeps.progress`); None before any value.

    Example:
        >>> from streamtune.sweeps.progress import SweepProgress, TrialProgress
        >>> p = SweepProgress(metric="rmse", mode="min", planned=2, best_trial="b", best=1.0, trials=[
        ...     TrialProgress(trial_id="a", state="pruned", curve=[4.0, 3.0]),
        ...     TrialProgress(trial_id="b", state="running", curve=[3.0, 2.0, 1.0])])
        >>> c = curve_chart(p)
        >>> [(k.trial_id, k.points, k.best) for k in c.curves]
        [('a', '0.0,20.0 300.0,86.7', False), ('b', '0.0,86.7 300.0,153.3 600.0,220.0', True)]
    """
    values = [v for t in progress.trials for v in t.curve if math.isfinite(v)]
    if not values:
        return None
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    steps = max(len(t.curve) for t in progress.trials)
    dx = WIDTH / max(1, steps - 1)

    def point(i: int, v: float) -> str:
        return f"{round(i * dx, 1)},{round(TOP + (high - v) / span * HEIGHT, 1)}"

    curves = [Curve(trial_id=t.trial_id, state=t.state, best=t.trial_id == progress.best_trial, last=t.value,
                    points=" ".join(point(i, v) for i, v in enumerate(t.curve) if math.isfinite(v)))
              for t in progress.trials if t.curve]
    return CurveChart(metric=progress.metric, width=WIDTH, height=HEIGHT, low=low, high=high, steps=steps,
                      curves=curves)
