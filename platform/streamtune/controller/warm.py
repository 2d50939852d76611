"""Warm start: the points a sweep evaluates first, taken from the registry's lineage.

Each sweep first tries the champion's params on the new data, then the best ``top_k`` trials of the spec's
earlier sweeps (their stored results, best first by the sweep metric). The controller reads them from the
registry when it submits the run and hands them to the job (``SweepRequest.warm_start``), which passes them to
the searcher as ``points_to_evaluate``; nothing is written from the cluster to a second store. A point is kept
only if it fits the current search space: every dimension present (a conditional one only when its condition
holds), each value inside its range or among its choices. Points that repeat are dropped.

Example:
    >>> from streamtune.config.jobspec import ParamSpec
    >>> space = {"lr": ParamSpec(type="loguniform", low=0.01, high=0.3), "leaves": ParamSpec(type="int", low=7,
    ...          high=63)}
    >>> fit_space({"lr": 0.1, "leaves": 31, "objective": "regression"}, space)
    {'lr': 0.1, 'leaves': 31}
    >>> fit_space({"lr": 0.5, "leaves": 31}, space) is None   # outside the range now
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from streamtune.config.jobspec import JobSpec, ParamSpec
from streamtune.registry.base import Registry
from streamtune.registry.records import RunRecord, RunStatus

__all__ = ["fit_space", "warm_start_points"]

_EARLIER_RUNS = 50
"""Earlier runs of the spec whose trials are considered for the top-k."""


def _fits(value: Any, p: ParamSpec) -> bool:
    if p.type == "choice":
        return value in (p.values or [])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    low, high = float(p.low or 0.0), float(p.high or 0.0)
    if p.type == "int" and float(value) != int(value):
        return False
    return low <= float(value) <= high


def _condition_holds(p: ParamSpec, point: Mapping[str, Any]) -> bool:
    when = getattr(p, "when", None)  # conditional dimensions (sweep.space.<name>.when)
    if not when:
        return True
    for other, wanted in when.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if point.get(other) not in options:
            return False
    return True


def fit_space(params: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any] | None:
    """``params`` cut to the search space's dimensions, or None if a dimension is missing or out of range."""
    point: dict[str, Any] = {}
    for name, p in space.items():
        if not _condition_holds(p, {**params, **point}):
            continue
        if name not in params or not _fits(params[name], p):
            return None
        value = params[name]
        point[name] = int(value) if p.type == "int" else value
    return point


def _top_trials(runs: Iterable[RunRecord], metric: str, mode: str) -> list[dict[str, Any]]:
    scored: list[tuple[float, dict[str, Any]]] = []
    for run in runs:
        for trial in (run.sweep or {}).get("trials", []):
            value = (trial.get("metrics") or {}).get(metric)
            if trial.get("artifact_uri") and isinstance(value, (int, float)) and math.isfinite(value):
                scored.append((float(value) if mode == "min" else -float(value), dict(trial.get("params") or {})))
    return [params for _, params in sorted(scored, key=lambda s: s[0])]


def warm_start_points(registry: Registry, spec: JobSpec) -> list[dict[str, Any]]:
    """The points the spec's next sweep evaluates first: the champion's params, then the top-k earlier trials."""
    cfg = spec.sweep.warm_start
    candidates: list[dict[str, Any]] = []
    if cfg.champion:
        champion = registry.get_alias(spec.name, "champion")
        if champion is not None:
            candidates.append(dict(champion.params))
    if cfg.top_k:
        done = registry.list_runs(spec.name, status=[RunStatus.PROMOTED, RunStatus.REJECTED], limit=_EARLIER_RUNS)
        candidates.extend(_top_trials(done, spec.sweep.metric, spec.sweep.mode)[: cfg.top_k * 4])
    points: list[dict[str, Any]] = []
    for params in candidates:
        point = fit_space(params, spec.sweep.space)
        if point is not None and point not in points:
            points.append(point)
        if len(points) >= int(cfg.champion) + cfg.top_k:
            break
    return points[: spec.sweep.num_samples]
