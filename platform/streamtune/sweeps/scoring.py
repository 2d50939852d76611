"""Score the challenger and the champion on the same holdout rows, in the sweep job, for the gate.

The holdout is the snapshot's rows that no trial trained or tuned on (:meth:`Snapshot.split`). Each model is
loaded from a private, verified copy of its artifact and predicts the whole holdout; the challenger also
predicts up to ``LATENCY_ROWS`` rows one at a time (the p50/p99 of a one-row predict) and its folder's size is
taken. The metric scores each model's :meth:`~streamtune.job.Predictor.predict_scores` against the label, encoded
by that model's own ``classes`` for a classifier (:func:`~streamtune.validation.labels.encode_labels`: the
champion may know other classes than the challenger). Both models' per-row scores, encoded labels and metric terms,
with the columns the spec's slices use, go to ``holdout_scores.parquet`` beside ``result.json``
(:func:`~streamtune.validation.holdout.scores_table`); :class:`HoldoutScores` keeps the headline numbers.

A champion that cannot be scored (a column it needs is gone, its artifact is deleted or tampered, it fails to
load or predict) is recorded in ``champion_error``, never dropped: the gate rejects the challenger then.

Example:
    >>> import pyarrow as pa
    >>> slice_columns(pa.table({"region": [0, 1], "y": [1.0, 2.0]}), ["region", "promo"])
    ['region']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamtune.artifacts.store import ArtifactStore
from streamtune.artifacts.verified import fetch_verified
from streamtune.config.jobspec import JobSpec
from streamtune.job import load_job_class
from streamtune.sweeps.schema import HoldoutScores, SweepRequest, TrialSummary
from streamtune.validation.holdout import HOLDOUT_SCORES, scores_table
from streamtune.validation.labels import encode_labels
from streamtune.validation.metrics import get_metric

LATENCY_ROWS = 100
"""Holdout rows the challenger predicts one at a time, for its one-row latency percentiles."""
_WARMUP = 3


@dataclass(frozen=True)
class Predictions:
    """One model's scores on the holdout (:meth:`Predictor.predict_scores`: (rows,) or (rows, K)), its classes
    (None for regression), with what loading and predicting it measured."""

    values: np.ndarray
    artifact_bytes: int
    batch_ms: float
    row_ms: list[float]
    classes: list[Any] | None = None

    def truth(self, label: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The label as this model's metric takes it: encoded by its classes, or the values for regression."""
        if self.classes is not None:
            return encode_labels(label, self.classes)
        return np.asarray(label.to_numpy())


def predict_holdout(entrypoint: str, artifact_uri: str, holdout: pa.Table, *, manifest_sha256: str | None = None,
                    latency_rows: int = 0) -> Predictions:
    """Load a model from a private, verified copy and score every holdout row (:meth:`Predictor.predict_scores`;
    and ``predict`` ``latency_rows`` rows one at a time, timed).

    Raises:
        Exception: whatever fetching, verifying, loading or predicting raised; scores of the wrong shape are a
            ValueError naming the shapes.
    """
    with fetch_verified(artifact_uri, manifest_sha256=manifest_sha256) as folder:
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        predictor = load_job_class(entrypoint)().load(folder)
        raw_classes = getattr(predictor, "classes", None)
        classes = None if raw_classes is None else list(raw_classes)
        scorer = getattr(predictor, "predict_scores", None)
        t0 = time.perf_counter()
        if callable(scorer):
            values = np.asarray(scorer(holdout), dtype=float)
        else:  # a predictor that is no streamtune.job.Predictor: its predictions are the scores
            values = np.asarray(list(predictor.predict(holdout)), dtype=float)
        batch_ms = (time.perf_counter() - t0) * 1000
        row_ms: list[float] = []
        n = min(latency_rows, holdout.num_rows)
        for i in range(n + min(_WARMUP, n)):
            row = holdout.slice(i % n, 1)
            t0 = time.perf_counter()
            predictor.predict(row)
            if i >= min(_WARMUP, n):
                row_ms.append((time.perf_counter() - t0) * 1000)
    _check_scores(values, classes, holdout.num_rows)
    return Predictions(values, size, batch_ms, row_ms, classes)


def _check_scores(values: np.ndarray, classes: list[Any] | None, rows: int) -> None:
    """Scores must be one per row: (rows,), or (rows, K) for a classifier of K classes.

    Example:
        >>> _check_scores(np.zeros((3, 2)), ["a", "b", "c"], 3)
        Traceback (most recent call last):
        ValueError: predictor returned scores of shape (3, 2) for 3 classes; multiclass scores must be (rows, 3)
    """
    got = values.shape[0] if values.ndim in (1, 2) else values.size
    if values.ndim not in (1, 2) or got != rows:
        raise ValueError(f"predictor returned {got} predictions for {rows} holdout rows")
    wrong_1d = values.ndim == 1 and classes is not None and len(classes) > 2
    if wrong_1d or (values.ndim == 2 and (classes is None or values.shape[1] != len(classes))):
        what = "a model without classes (regression)" if classes is None else f"{len(classes)} classes"
        must = "(rows,)" if classes is None else f"(rows, {len(classes)})"
        kind = "its scores" if classes is None else "multiclass scores"
        raise ValueError(f"predictor returned scores of shape {values.shape} for {what}; {kind} must be {must}")


def slice_columns(holdout: pa.Table, wanted: Sequence[str]) -> list[str]:
    """The columns the spec's slices name that the holdout has (a missing one fails its slice in the gate)."""
    return [c for c in dict.fromkeys(wanted) if c in holdout.column_names]


def score_holdout(req: SweepRequest, spec: JobSpec, best: TrialSummary, holdout: pa.Table) -> HoldoutScores:
    """Score the winner and the champion on ``holdout``; write the per-row scores beside ``result.json``."""
    metric, label = spec.sweep.metric, spec.dataset.label
    out = HoldoutScores(metric=metric, challenger=None, rows=holdout.num_rows)
    y = holdout[label]
    try:
        chal = predict_holdout(spec.job.entrypoint, str(best.artifact_uri), holdout,
                               manifest_sha256=best.manifest_sha256, latency_rows=LATENCY_ROWS)
        chal_y = chal.truth(y)
        out.challenger = get_metric(metric)(chal_y, chal.values)
    except Exception as exc:  # a model that cannot be scored must not reach traffic
        out.error = f"challenger: {type(exc).__name__}: {exc}"
        return out
    out.artifact_bytes, out.predict_batch_ms = chal.artifact_bytes, round(chal.batch_ms, 4)
    if chal.row_ms:
        out.latency_rows = len(chal.row_ms)
        out.predict_ms_p50 = round(float(np.percentile(chal.row_ms, 50)), 4)
        out.predict_ms_p99 = round(float(np.percentile(chal.row_ms, 99)), 4)
    champ: Predictions | None = None
    champ_y: np.ndarray | None = None
    if req.champion is not None:
        out.champion_version = req.champion.version
        try:
            champ = predict_holdout(spec.job.entrypoint, req.champion.artifact_uri, holdout,
                                    manifest_sha256=req.champion.manifest_sha256)
            champ_y = champ.truth(y)
            out.champion = get_metric(metric)(champ_y, champ.values)
        except Exception as exc:
            champ = None
            out.champion_error = f"{type(exc).__name__}: {exc}"[:1000]
    cols = slice_columns(holdout, [s.column for s in spec.validation.slices])
    table = scores_table(metric, y, chal.values, None if champ is None else champ.values,
                         {c: holdout[c] for c in cols}, challenger_label=None if chal.classes is None else chal_y,
                         champion_label=None if champ is None or champ.classes is None else champ_y)
    out.scores_uri = write_scores(req.out_uri, table)
    return out


def write_scores(out_uri: str, table: pa.Table) -> str:
    """Write the per-row scores as ``<out_uri>/holdout_scores.parquet`` and return its URI."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    uri = f"{out_uri.rstrip('/')}/{HOLDOUT_SCORES}"
    return ArtifactStore(uri).put_bytes(uri, sink.getvalue().to_pybytes())


def read_scores(uri: str) -> pa.Table:
    """Read the per-row scores :func:`write_scores` wrote.

    Example:
        >>> import tempfile
        >>> from streamtune.validation.holdout import scores_table
        >>> uri = write_scores(tempfile.mkdtemp(), scores_table("mae", [1.0], [2.0], None, {}))
        >>> read_scores(uri).column("challenger_loss").to_pylist()
        [1.0]
    """
    return pq.read_table(pa.BufferReader(ArtifactStore(uri).get_bytes(uri)))
