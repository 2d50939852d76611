"""The model gate as the controller runs it: evidence from the sweep's ``result.json`` and per-row scores.

The sweep job wrote the headline numbers (:class:`HoldoutScores`) and ``holdout_scores.parquet`` (both models'
per-row scores, encoded labels and metric terms on the same holdout rows, and the slice columns); this reads them
for the run's metric (:meth:`PairedRows.from_table`) and hands them to :class:`MetricGate`, whose
:class:`GateReport` the run stores.

Example:
    >>> from streamtune.config import ValidationSpec
    >>> from streamtune.sweeps.schema import HoldoutScores
    >>> h = HoldoutScores(metric="rmse", challenger=1.0, rows=50, champion_version=2,
    ...                   champion_error="KeyError: 'temp'")
    >>> ev = gate_evidence(h, mode="min", snapshot_rows=250)
    >>> ev.has_champion, ev.champion_error
    (True, "KeyError: 'temp'")
    >>> MetricGate(ValidationSpec(min_rows=10)).validate(ev).passed
    False
"""

from __future__ import annotations

import logging
from typing import Literal

from streamtune.config.jobspec import JobSpec
from streamtune.sweeps.schema import HoldoutScores, SweepResult
from streamtune.sweeps.scoring import read_scores
from streamtune.validation.gate import GateEvidence, GateReport, MetricGate
from streamtune.validation.holdout import PairedRows

log = logging.getLogger(__name__)


def gate_evidence(holdout: HoldoutScores, *, mode: Literal["min", "max"], snapshot_rows: int) -> GateEvidence:
    """The gate's evidence from a sweep's holdout scores, with the per-row scores read from the store."""
    champion_error = holdout.champion_error
    if champion_error is None and holdout.champion_version is not None and holdout.champion is None:
        champion_error = holdout.error or "no score was recorded"  # a result.json from before champion_error
    paired, scores_error = None, None
    if holdout.scores_uri is not None:
        try:
            paired = PairedRows.from_table(read_scores(holdout.scores_uri), metric=holdout.metric)
        except Exception as exc:  # the gate then says it has no per-row scores, and why
            scores_error = f"cannot read {holdout.scores_uri}: {type(exc).__name__}: {exc}"
            log.warning("gate: %s", scores_error)
    return GateEvidence(
        metric=holdout.metric, mode=mode, challenger=holdout.challenger, champion=holdout.champion,
        holdout_rows=holdout.rows, snapshot_rows=snapshot_rows,
        error=None if champion_error == holdout.error else holdout.error,
        champion_version=holdout.champion_version, champion_error=champion_error,
        predict_ms_p99=holdout.predict_ms_p99, artifact_bytes=holdout.artifact_bytes, paired=paired,
        scores_error=scores_error,
    )


def gate_result(spec: JobSpec, result: SweepResult) -> GateReport:
    """Run the spec's gate on a sweep's result."""
    evidence = gate_evidence(result.holdout, mode=spec.sweep.mode,
                             snapshot_rows=int(result.snapshot.get("num_rows", 0)))
    return MetricGate(spec.validation).validate(evidence)
