"""Metric functions shared by jobs, the sweep and the gate, so every stage scores the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from streamtune.errors import ConfigError


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Root mean squared error.

    Example:
        >>> rmse([1.0, 2.0], [1.0, 4.0])
        1.4142135623730951
    """
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean absolute error."""
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.mean(np.abs(t - p)))


def logloss(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Binary log loss of predicted probabilities."""
    t = np.asarray(y_true, float)
    p = np.clip(np.asarray(y_pred, float), 1e-12, 1 - 1e-12)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def accuracy(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Share of rows where the predicted probability (>= 0.5) or class matches the label."""
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    if np.all((p >= 0) & (p <= 1)):
        p = (p >= 0.5).astype(float)
    return float(np.mean(t == p))


METRICS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "rmse": rmse,
    "mae": mae,
    "logloss": logloss,
    "accuracy": accuracy,
}


POINTWISE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "rmse": lambda t, p: (t - p) ** 2,
    "mae": lambda t, p: np.abs(t - p),
    "logloss": lambda t, p: -(t * np.log(np.clip(p, 1e-12, 1 - 1e-12))
                              + (1 - t) * np.log(1 - np.clip(p, 1e-12, 1 - 1e-12))),
    "accuracy": lambda t, p: (t == ((p >= 0.5).astype(float) if np.all((p >= 0) & (p <= 1)) else p)).astype(float),
}
"""Per-row terms of each metric: ``aggregate(name, pointwise(name, t, p)) == METRICS[name](t, p)``."""


def pointwise(name: str, y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-row terms of metric ``name`` (squared error for rmse), so the gate can resample rows.

    Example:
        >>> pointwise("rmse", [1.0, 2.0], [1.0, 4.0]).tolist()
        [0.0, 4.0]
    """
    get_metric(name)
    return POINTWISE[name](np.asarray(y_true, float), np.asarray(y_pred, float)).astype(float)


def aggregate(name: str, values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Fold per-row terms back into the metric: the mean, square-rooted for rmse; ``axis`` for many resamples.

    Example:
        >>> aggregate("rmse", pointwise("rmse", [1.0, 2.0], [1.0, 4.0]))
        1.4142135623730951
    """
    get_metric(name)
    mean = np.mean(values, axis=axis)
    out = np.sqrt(mean) if name == "rmse" else mean
    return float(out) if axis is None else np.asarray(out)


def get_metric(name: str) -> Callable[[Sequence[float], Sequence[float]], float]:
    """Look a metric up by name, raising :class:`ConfigError` naming the known ones.

    Example:
        >>> get_metric("mae")([0.0], [2.0])
        2.0
    """
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f'Got "{name}" for sweep.metric; must be one of {sorted(METRICS)}') from None
