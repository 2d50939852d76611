"""Metric functions shared by jobs, the sweep and the gate, so every stage scores the same way.

Every metric takes ``(y_true, y_score)``:

- regression (``rmse``, ``mae``): the label values and the predicted values;
- classification (``logloss``, ``accuracy``, ``auc``, ``pr_auc``, ``f1``, ``balanced_accuracy``): the label
  ENCODED by the model's classes (:func:`streamtune.validation.labels.encode_labels`: ints ``0..K-1``, ``-1`` for
  a label the model never saw) and the model's scores (:meth:`streamtune.job.Predictor.predict_scores`): shape
  ``(rows,)``, the probability of class 1, for a binary model; ``(rows, K)``, one probability per class, for a
  multiclass one.

Each metric's better direction is in :data:`DIRECTIONS`. The metrics in :data:`DECOMPOSABLE` are a mean of per-row
terms (:func:`pointwise`), which the gate resamples and folds per slice (:func:`aggregate`). The others are not (an
AUC is no mean of per-row numbers): for them :func:`pointwise` returns each row's record (its encoded label and
scores) and :func:`aggregate` / :func:`weighted` compute the metric again from the rows given, so the gate's
bootstrap and slices score them exactly.

Rules for classification:

- the predicted class is the argmax of multiclass scores; a binary score ``>= 0.5`` predicts class 1;
- a row whose label is unknown (``-1``) is wrong for every metric: ``logloss`` takes its probability as 1e-12,
  ``accuracy`` counts it wrong; ``f1`` (multiclass) and ``balanced_accuracy`` count the unknown rows as one more
  class that is never predicted (F1 0, recall 0); binary ``f1`` scores class 1 only, so there an unknown row is a
  negative; ``auc`` and ``pr_auc`` count it as a negative of every class;
- multiclass ``auc`` and ``pr_auc`` are the macro mean of the one-vs-rest values over the classes where they are
  defined; multiclass ``f1`` is the macro F1 over the classes present in the labels or the predictions (as
  scikit-learn's ``f1_score(average="macro")``); ``balanced_accuracy`` is the mean recall over the classes present
  in the labels (as scikit-learn's);
- undefined is ``nan``: ``auc`` without a positive and a negative row (multiclass: no class has both);
  ``pr_auc`` without a positive row (with only positive rows it is 1.0, as scikit-learn's
  ``average_precision_score``); any classification metric on no rows or on a non-finite score. ``f1`` is 0 when
  there is neither a positive row nor a positive prediction (scikit-learn's ``zero_division`` default). The gate
  takes a ``nan`` headline as "could not be scored", drops bootstrap resamples where the metric is undefined,
  and skips a slice where it is undefined for both models.

Example:
    >>> import numpy as np
    >>> y = [0, 0, 1, 1]                      # encoded labels
    >>> p = [0.1, 0.6, 0.4, 0.8]              # P(class 1)
    >>> auc(y, p), accuracy(y, p), direction("auc"), "auc" in DECOMPOSABLE
    (0.75, 0.5, 'max', False)
    >>> probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]])
    >>> accuracy([0, 1, 1], probs), round(logloss([0, 1, 2], probs), 4)
    (0.6666666666666666, 0.5202)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from streamtune.errors import ConfigError

__all__ = ["DECOMPOSABLE", "DIRECTIONS", "METRICS", "POINTWISE", "accuracy", "aggregate", "auc", "balanced_accuracy",
           "direction", "f1", "get_metric", "logloss", "mae", "pointwise", "pr_auc", "rmse", "weighted"]

_EPS = 1e-12
"""Probabilities are clipped to [_EPS, 1 - _EPS] for the log loss; an unknown label's probability is _EPS."""


# -- regression and the decomposable classification metrics ------------------------------------------------------


def _logloss_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    if p.ndim == 2:  # multiclass: -log p[label]; an unknown label (or one past the columns) is p = _EPS
        codes = t.astype(np.int64)
        known = (codes >= 0) & (codes < p.shape[1])
        picked = np.where(known, p[np.arange(p.shape[0]), np.where(known, codes, 0)], _EPS)
        return np.asarray(-np.log(np.clip(picked, _EPS, 1 - _EPS)))
    q = np.clip(p, _EPS, 1 - _EPS)
    with np.errstate(invalid="ignore"):
        terms = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    return np.asarray(np.where(t < 0, -np.log(_EPS), terms))


def _accuracy_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    if p.ndim == 2:
        return np.asarray(p.argmax(axis=1) == t, dtype=float)
    if np.all((p >= 0) & (p <= 1)):
        p = (p >= 0.5).astype(float)
    return np.asarray(t == p, dtype=float)


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error.

    Example:
        >>> rmse([1.0, 2.0], [1.0, 4.0])
        1.4142135623730951
    """
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error."""
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.mean(np.abs(t - p)))


def logloss(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Log loss of predicted probabilities: binary (``y_pred`` the probability of class 1, labels 0/1) or
    multiclass (``y_pred`` of shape (rows, K), ``-mean log p[label]``); an unknown label (-1) has p = 1e-12.

    Example:
        >>> round(logloss([1, 0], [0.9, 0.2]), 4), round(logloss([1, -1], [0.9, 0.2]), 4)
        (0.1643, 13.8682)
    """
    return float(np.mean(_logloss_terms(np.asarray(y_true, float), np.asarray(y_pred, float))))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of rows where the predicted class matches the label: the argmax of multiclass scores, a binary
    probability ``>= 0.5`` as class 1, or (values outside [0, 1]) the predictions themselves as classes."""
    return float(np.mean(_accuracy_terms(np.asarray(y_true, float), np.asarray(y_pred, float))))


# -- the classification metrics that are no mean of per-row terms -------------------------------------------------


def _inputs(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Encoded labels (int64) and scores (float, 1-d or 2-d), checked against each other."""
    raw = np.asarray(y_true)
    hint = ("classification metrics take the label encoded by the model's classes (ints 0..K-1, -1 for an unknown "
            "label; streamtune.validation.labels.encode_labels)")
    if raw.ndim != 1:
        raise ValueError(f"labels must be 1-d; got shape {raw.shape}")
    if raw.dtype.kind in "iub":
        codes = raw.astype(np.int64)
    elif raw.dtype.kind == "f" and bool(np.all(np.isfinite(raw))) and bool(np.all(raw == np.round(raw))):
        codes = raw.astype(np.int64)
    else:
        raise ValueError(f"Got labels like {raw[:3].tolist()}; {hint}")
    score = np.asarray(y_score, float)
    if score.ndim not in (1, 2) or score.shape[0] != codes.shape[0]:
        raise ValueError(f"scores must be (rows,) or (rows, K) for {codes.shape[0]} labels; got {score.shape}")
    top = 1 if score.ndim == 1 else score.shape[1] - 1
    if score.ndim == 2 and score.shape[1] < 2:
        raise ValueError(f"multiclass scores need one column per class, at least 2; got shape {score.shape}")
    if codes.size and (codes.min() < -1 or codes.max() > top):
        raise ValueError(f"Got label codes from {codes.min()} to {codes.max()} for scores of shape {score.shape}; "
                         f"{hint}")
    return codes, score


def _dot(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Total weight of the rows in ``mask``, per weight row: (k, n) @ (n,) -> (k,)."""
    return np.asarray(w @ mask.astype(float))


def _ratio(num: np.ndarray, den: np.ndarray, undefined: float) -> np.ndarray:
    out = np.full(np.shape(num), undefined, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _groups(w: np.ndarray, pos: np.ndarray, score: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weight of the positive rows and of all rows at each distinct score, in score order: (k, groups) each."""
    order = np.argsort(-score if descending else score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    wo = w[:, order]
    wp = np.multiply(wo, pos[order].astype(float))
    if starts.size < s.size:  # tied scores: one group each
        wo, wp = np.add.reduceat(wo, starts, axis=1), np.add.reduceat(wp, starts, axis=1)
    return wp, wo


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.einsum("ij,ij->i", a, b))


def _auc(w: np.ndarray, pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney: a tied positive/negative pair counts one half), per weight row; nan without a
    positive and a negative row."""
    gp, gt = _groups(w, pos, score, descending=False)
    gn = gt - gp
    # each positive beats the negatives below its score and half of those tied with it
    num = _rowdot(gp, np.cumsum(gn, axis=1)) - 0.5 * _rowdot(gp, gn)
    npos = gp.sum(axis=1)
    return _ratio(num, npos * (gt.sum(axis=1) - npos), np.nan)


def _average_precision(w: np.ndarray, pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Average precision ``sum_n (R_n - R_(n-1)) P_n`` over the distinct scores, highest first (scikit-learn's
    ``average_precision_score``), per weight row; nan without a positive row."""
    gp, gt = _groups(w, pos, score, descending=True)
    tps = np.cumsum(gp, axis=1)
    precision = _ratio(tps, np.cumsum(gt, axis=1), 0.0)
    return _ratio(_rowdot(gp, precision), tps[:, -1], np.nan)


def _macro(values: list[np.ndarray]) -> np.ndarray:
    """Mean over the classes where the value is defined, per weight row; nan where none is."""
    per = np.stack(values, axis=1)
    defined = np.isfinite(per)
    return _ratio(np.where(defined, per, 0.0).sum(axis=1), defined.sum(axis=1).astype(float), np.nan)


def _f1_binary(w: np.ndarray, pos: np.ndarray, said: np.ndarray) -> np.ndarray:
    tp, fp, fn = _dot(w, pos & said), _dot(w, ~pos & said), _dot(w, pos & ~said)
    return _ratio(2 * tp, 2 * tp + fp + fn, 0.0)


def _f1_macro(w: np.ndarray, codes: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    total, counted = np.zeros(w.shape[0]), np.zeros(w.shape[0])
    for c in range(n_classes):
        true, said = codes == c, pred == c
        tp, fp, fn = _dot(w, true & said), _dot(w, ~true & said), _dot(w, true & ~said)
        den = 2 * tp + fp + fn
        total += _ratio(2 * tp, den, 0.0)
        counted += den > 0
    counted += _dot(w, codes < 0) > 0  # the unknown labels: one more class, never predicted (F1 0)
    return _ratio(total, counted, np.nan)


def _balanced(w: np.ndarray, codes: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    total, counted = np.zeros(w.shape[0]), np.zeros(w.shape[0])
    for c in range(n_classes):
        true = codes == c
        support = _dot(w, true)
        total += _ratio(_dot(w, true & (pred == c)), support, 0.0)
        counted += support > 0
    counted += _dot(w, codes < 0) > 0  # the unknown labels: one more class, never predicted (recall 0)
    return _ratio(total, counted, np.nan)


def _classify(name: str, codes: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Metric ``name`` of encoded labels and scores, once per row of the weights ``w`` (k, rows): shape (k,)."""
    if codes.size == 0 or not np.all(np.isfinite(score)):
        return np.full(w.shape[0], np.nan)
    if score.ndim == 1:
        pos = codes == 1
        if name == "auc":
            return _auc(w, pos, score)
        if name == "pr_auc":
            return _average_precision(w, pos, score)
        pred = (score >= 0.5).astype(np.int64)
        return _f1_binary(w, pos, pred == 1) if name == "f1" else _balanced(w, codes, pred, 2)
    n_classes = score.shape[1]
    if name in ("auc", "pr_auc"):
        one = _auc if name == "auc" else _average_precision
        return _macro([one(w, codes == c, score[:, c]) for c in range(n_classes)])
    pred = score.argmax(axis=1)
    return _f1_macro(w, codes, pred, n_classes) if name == "f1" else _balanced(w, codes, pred, n_classes)


def _score(name: str, y_true: ArrayLike, y_score: ArrayLike) -> float:
    codes, score = _inputs(y_true, y_score)
    return float(_classify(name, codes, score, np.ones((1, codes.size)))[0])


def auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """ROC AUC from ranks (tied scores count one half); multiclass: the macro mean of one-vs-rest AUCs over the
    classes that have positive and negative rows. ``nan`` when no class has both.

    Example:
        >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
        >>> auc([0, 1, 1], [0.5, 0.5, 0.9])       # a tie counts one half
        0.75
        >>> auc([1, 1], [0.2, 0.9])                # one class only: undefined
        nan
        >>> auc([0, 1, 2], [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
        1.0
    """
    return _score("auc", y_true, y_score)


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's ``average_precision_score``):
    ``sum_n (R_n - R_(n-1)) P_n`` over the distinct scores, highest first; multiclass: the macro mean of
    one-vs-rest values over the classes with positive rows. ``nan`` without a positive row.

    Example:
        >>> pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])   # (1/2) * 1 + (1/2) * 2/3
        0.8333333333333333
        >>> pr_auc([0] * 9 + [1], [0.1] * 10)              # no ranking at all: the positive rate
        0.1
    """
    return _score("pr_auc", y_true, y_score)


def f1(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """F1 of class 1 with a binary score ``>= 0.5`` as class 1 (0 with neither a positive row nor a positive
    prediction); multiclass: the macro F1 of the argmax over the classes in the labels or the predictions.

    Example:
        >>> f1([0, 1, 1, 1], [0.7, 0.9, 0.2, 0.6])       # tp 2, fp 1, fn 1
        0.6666666666666666
        >>> probs = [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]  # argmax 0, 0, 2, 1
        >>> f1([0, 1, 2, 2], probs)                        # (2/3 + 0 + 2/3) / 3
        0.4444444444444444
    """
    return _score("f1", y_true, y_score)


def balanced_accuracy(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Mean recall of the predicted class (binary: score ``>= 0.5`` is class 1; multiclass: the argmax) over the
    classes present in the labels; rows with an unknown label (-1) are one more class, always wrong.

    Example:
        >>> y, always_normal = [0] * 93 + [1] * 7, [0.1] * 100
        >>> accuracy(y, always_normal), balanced_accuracy(y, always_normal)
        (0.93, 0.5)
    """
    return _score("balanced_accuracy", y_true, y_score)


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "rmse": rmse,
    "mae": mae,
    "logloss": logloss,
    "accuracy": accuracy,
    "auc": auc,
    "pr_auc": pr_auc,
    "f1": f1,
    "balanced_accuracy": balanced_accuracy,
}
"""Every metric by name: ``METRICS[name](y_true, y_score) -> float``."""

DIRECTIONS: dict[str, Literal["min", "max"]] = {
    "rmse": "min", "mae": "min", "logloss": "min", "accuracy": "max",
    "auc": "max", "pr_auc": "max", "f1": "max", "balanced_accuracy": "max",
}
"""The better direction of every metric in :data:`METRICS`: lower (min) or higher (max)."""

DECOMPOSABLE: frozenset[str] = frozenset({"rmse", "mae", "logloss", "accuracy"})
"""Metrics that are a mean of per-row terms (rmse: square-rooted), so the gate can resample the terms alone."""


POINTWISE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "rmse": lambda t, p: (t - p) ** 2,
    "mae": lambda t, p: np.abs(t - p),
    "logloss": _logloss_terms,
    "accuracy": _accuracy_terms,
}
"""Per-row terms of each metric in :data:`DECOMPOSABLE`: ``aggregate(name, pointwise(name, t, p)) ==
METRICS[name](t, p)``."""


def direction(name: str) -> Literal["min", "max"]:
    """Whether lower (``"min"``) or higher (``"max"``) of metric ``name`` is better.

    Example:
        >>> direction("rmse"), direction("pr_auc")
        ('min', 'max')
    """
    get_metric(name)
    return DIRECTIONS[name]


def pointwise(name: str, y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Per-row terms of metric ``name`` (squared error for rmse), so the gate can resample rows.

    A metric that is no mean of per-row terms (not in :data:`DECOMPOSABLE`) gets each row's record instead, shape
    (rows, 1 + C): the encoded label, then the score (binary, C = 1) or the K class probabilities; :func:`aggregate`
    and :func:`weighted` compute the metric from any rows of it.

    Example:
        >>> pointwise("rmse", [1.0, 2.0], [1.0, 4.0]).tolist()
        [0.0, 4.0]
        >>> pointwise("auc", [0, 1], [0.3, 0.8]).tolist()
        [[0.0, 0.3], [1.0, 0.8]]
    """
    get_metric(name)
    if name not in DECOMPOSABLE:
        codes, score = _inputs(y_true, y_pred)
        return np.column_stack([codes.astype(float), score.reshape(codes.size, -1)])
    return POINTWISE[name](np.asarray(y_true, float), np.asarray(y_pred, float)).astype(float)


def _records(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoded labels and scores back from :func:`pointwise` records."""
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"per-row records must be (rows, 1 + scores); got shape {values.shape}")
    score = values[:, 1] if values.shape[1] == 2 else values[:, 1:]
    return values[:, 0].astype(np.int64), score


def aggregate(name: str, values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Fold per-row terms back into the metric: the mean, square-rooted for rmse; ``axis`` for many resamples.

    For a metric not in :data:`DECOMPOSABLE`, ``values`` are :func:`pointwise` records (rows, 1 + C), or many
    resamples of them (resamples, rows, 1 + C) with ``axis=1``; the metric is computed from them again.

    Example:
        >>> aggregate("rmse", pointwise("rmse", [1.0, 2.0], [1.0, 4.0]))
        1.4142135623730951
        >>> rows = pointwise("auc", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> aggregate("auc", rows), aggregate("auc", rows[[0, 3]])
        (0.75, 1.0)
    """
    get_metric(name)
    if name not in DECOMPOSABLE:
        v = np.asarray(values, float)
        if axis is None:
            return float(weighted(name, v, np.ones(v.shape[0])))
        if v.ndim != 3 or axis not in (1, -2):
            raise ValueError(f"{name}: resampled records must be (resamples, rows, 1 + scores) with axis=1; got "
                             f"shape {v.shape} and axis={axis}")
        return np.asarray([weighted(name, r, np.ones(r.shape[0])) for r in v])
    mean = np.mean(values, axis=axis)
    out = np.sqrt(mean) if name == "rmse" else mean
    return float(out) if axis is None else np.asarray(out)


def weighted(name: str, values: np.ndarray, weights: np.ndarray) -> np.ndarray | float:
    """Metric ``name`` of the :func:`pointwise` values (terms or records) with row weights: ``weights`` of shape
    (rows,) gives one number, (k, rows) one per weight row. A bootstrap resample is the count of each row's draws.

    Example:
        >>> rows = pointwise("pr_auc", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> weighted("pr_auc", rows, np.ones(4))
        0.8333333333333333
        >>> weighted("pr_auc", rows, np.array([[2, 0, 1, 1], [1, 1, 0, 2]])).tolist()
        [1.0, 1.0]
        >>> weighted("mae", pointwise("mae", [0.0, 0.0], [1.0, 3.0]), np.array([3.0, 1.0]))
        1.5
    """
    get_metric(name)
    w = np.asarray(weights, float)
    one = w.ndim == 1
    w2 = w.reshape(1, -1) if one else w
    v = np.asarray(values, float)
    if w2.ndim != 2 or w2.shape[1] != v.shape[0]:
        raise ValueError(f"weights must be (rows,) or (k, rows) for {v.shape[0]} rows; got shape {w.shape}")
    if name in DECOMPOSABLE:
        mean = _ratio(w2 @ v, w2.sum(axis=1), np.nan)
        out = np.sqrt(mean) if name == "rmse" else mean
    else:
        codes, score = _records(v)
        out = _classify(name, codes, score, w2)
    return float(out[0]) if one else np.asarray(out)


def get_metric(name: str) -> Callable[[Any, Any], float]:
    """Look a metric up by name, raising :class:`ConfigError` naming the known ones.

    Example:
        >>> get_metric("mae")([0.0], [2.0])
        2.0
    """
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f'Got "{name}" for sweep.metric; must be one of {sorted(METRICS)}') from None
