"""The gate: a challenger reaches traffic only if it clears every check against the champion on the same rows.

Checks, in order (each a :class:`GateCheck` with its value, limit and reason):

- ``rows``: the snapshot has ``validation.min_rows``;
- ``challenger_scored``: the challenger scored a finite metric on the holdout;
- ``threshold``: the absolute limit, if set;
- ``predict_latency`` / ``artifact_size``: ``validation.max_predict_ms`` / ``max_artifact_mb``, if set;
- ``champion``: with a champion that could not be scored, the challenger is rejected unless
  ``validation.on_champion_error: promote``;
- ``beats_champion``: the point estimate beats the champion by ``must_beat_champion_by``;
- ``bootstrap``: the paired bootstrap interval of the gain lies above the margin (unless ``bootstrap: false``);
- ``slice:<name>``: the challenger regresses no more than the slice's ``max_regression``.

A metric that is no mean of per-row terms (auc, pr_auc, f1, balanced_accuracy) is computed again from each
model's per-row labels and scores on every bootstrap resample and on each slice's rows
(:class:`~streamtune.validation.holdout.PairedRows`). A slice where it is undefined for both models (e.g. a slice
with one class only, for auc) is not checked, like an empty slice; undefined for one model only fails the slice.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamtune.config.jobspec import SliceSpec, ValidationSpec
from streamtune.validation.bootstrap import BootstrapCI, paired_bootstrap
from streamtune.validation.data_gate import DataGateReport
from streamtune.validation.holdout import PairedRows, slice_mask
from streamtune.validation.metrics import DECOMPOSABLE, aggregate
from streamtune.validation.smoke import SmokeReport


class GateEvidence(BaseModel):
    """The numbers the gate decides on, all measured on the SAME holdout."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    metric: str = Field(description="Metric name, e.g. 'rmse'.")
    mode: Literal["min", "max"] = Field(description="Whether lower or higher is better.")
    challenger: float | None = Field(description="Challenger's metric on the holdout; None if it failed to score.")
    champion: float | None = Field(None, description="Champion's metric on the same holdout; None if no champion "
                                   "or it could not be scored.")
    holdout_rows: int = Field(ge=0, description="Rows in the holdout.")
    snapshot_rows: int = Field(ge=0, description="Rows in the whole snapshot.")
    error: str | None = Field(None, description="Why the challenger could not be scored, if it could not.")
    champion_version: int | None = Field(None, description="The champion the run was started against, if any.")
    champion_error: str | None = Field(None, description="Why that champion could not be scored, if it could not.")
    predict_ms_p99: float | None = Field(None, description="Challenger's p99 latency of a one-row predict, in ms.")
    artifact_bytes: int | None = Field(None, description="Size of the challenger's artifact folder in bytes.")
    scores_error: str | None = Field(None, description="Why the per-row scores could not be read, if not.")
    paired: PairedRows | None = Field(
        None, exclude=True, description="Per-row metric terms of both models on the holdout (and slice columns), "
        "for the bootstrap and the slices."
    )

    @property
    def has_champion(self) -> bool:
        """Whether a champion existed when the run started (scored or not)."""
        return self.champion is not None or self.champion_version is not None or self.champion_error is not None


class GateCheck(BaseModel):
    """One check of the gate."""

    name: str = Field(description="Check name, e.g. 'bootstrap' or 'slice:north'.")
    passed: bool = Field(description="Whether the check passed.")
    value: float | None = Field(None, description="What was measured.")
    limit: float | None = Field(None, description="The limit it was held to, if any.")
    reason: str = Field(description="One readable line with the numbers.")


class SliceReport(BaseModel):
    """Both models' metric on one declared slice of the holdout."""

    name: str = Field(description="Slice name.")
    column: str = Field(description="Column the slice is defined on.")
    rows: int = Field(description="Holdout rows in the slice.")
    challenger: float | None = Field(None, description="Challenger's metric on the slice.")
    champion: float | None = Field(None, description="Champion's metric on the slice.")
    regression: float | None = Field(None, description="Relative worsening of the challenger (negative: better).")
    max_regression: float = Field(description="The slice's limit.")
    passed: bool = Field(description="Whether regression <= max_regression.")


class GateReport(BaseModel):
    """The gate's verdict with every check's numbers; stored with the run (``RunRecord.gate``)."""

    passed: bool = Field(description="Whether the challenger may be promoted.")
    reasons: list[str] = Field(description="One line per check, failed checks first.")
    numbers: dict[str, float | int | str | None] = Field(description="The headline numbers the checks used.")
    checks: list[GateCheck] = Field(default_factory=list, description="Every check, in the order run.")
    bootstrap: BootstrapCI | None = Field(None, description="The paired bootstrap interval, when computed.")
    slices: list[SliceReport] = Field(default_factory=list, description="Per-slice metrics, when computed.")
    data_gate: DataGateReport | None = Field(None, description="The data gate's report on the snapshot (the run "
                                             "adds it; the sweep job ran it before any trial).")
    smoke: SmokeReport | None = Field(None, description="The winner's smoke test (the run adds it); a failed one "
                                      "fails the gate.")

    def failed(self) -> list[GateCheck]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]


class Validator(ABC):
    """An extension point: decides whether a challenger may replace the champion."""

    @abstractmethod
    def validate(self, evidence: GateEvidence) -> GateReport:
        """Return a report; never raise for a failing model."""


class MetricGate(Validator):
    """Data size, threshold, budgets and champion-vs-challenger on the same holdout (bootstrap, slices).

    Example:
        >>> gate = MetricGate(ValidationSpec(threshold=2.0, min_rows=10, bootstrap=False))
        >>> ev = GateEvidence(metric="rmse", mode="min", challenger=1.0, champion=1.5,
        ...                   holdout_rows=50, snapshot_rows=250)
        >>> gate.validate(ev).passed
        True
        >>> ev = GateEvidence(metric="rmse", mode="min", challenger=1.0, champion=None, champion_version=3,
        ...                   champion_error="KeyError: 'temp'", holdout_rows=50, snapshot_rows=250)
        >>> print(gate.validate(ev).reasons[0])  # doctest: +NORMALIZE_WHITESPACE
        champion v3 could not be scored on this holdout (KeyError: 'temp'); the challenger is rejected
        (validation.on_champion_error=reject)
    """

    def __init__(self, spec: ValidationSpec, *, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed

    def validate(self, evidence: GateEvidence) -> GateReport:
        """Run every check and collect the reasons."""
        ev = evidence
        checks: list[GateCheck] = [self._rows(ev)]
        numbers: dict[str, float | int | str | None] = {
            "metric": ev.metric, "challenger": ev.challenger, "champion": ev.champion,
            "champion_version": ev.champion_version, "holdout_rows": ev.holdout_rows,
            "snapshot_rows": ev.snapshot_rows, "threshold": self.spec.threshold,
            "must_beat_champion_by": self.spec.must_beat_champion_by,
            "predict_ms_p99": ev.predict_ms_p99, "artifact_bytes": ev.artifact_bytes,
        }
        if ev.challenger is None or not math.isfinite(ev.challenger):
            why = ev.error or ev.challenger
            checks.append(GateCheck(name="challenger_scored", passed=False, value=ev.challenger,
                                    reason=f"challenger could not be scored on the holdout: {why}"))
            return _report(checks, numbers)
        checks += self._threshold(ev) + self._budgets(ev)
        bootstrap: BootstrapCI | None = None
        slices: list[SliceReport] = []
        if not ev.has_champion:
            checks.append(GateCheck(name="champion", passed=True,
                                    reason="no champion yet: the first model needs only the threshold and budgets"))
        elif ev.champion is None or not math.isfinite(ev.champion):
            checks.append(self._unscorable_champion(ev))
        else:
            check, numbers["improvement"] = self._beats_champion(ev)
            checks.append(check)
            if self.spec.bootstrap:
                check, bootstrap = self._bootstrap(ev)
                checks.append(check)
            for spec in self.spec.slices:
                check, row = self._slice(ev, spec)
                checks.append(check)
                if row is not None:
                    slices.append(row)
        return _report(checks, numbers, bootstrap, slices)

    def _rows(self, ev: GateEvidence) -> GateCheck:
        good = ev.snapshot_rows >= self.spec.min_rows
        return GateCheck(name="rows", passed=good, value=ev.snapshot_rows, limit=self.spec.min_rows,
                         reason=f"snapshot has {ev.snapshot_rows} rows (min {self.spec.min_rows})")

    def _threshold(self, ev: GateEvidence) -> list[GateCheck]:
        limit = self.spec.threshold
        if limit is None or ev.challenger is None:
            return []
        good = ev.challenger <= limit if ev.mode == "min" else ev.challenger >= limit
        op = "<=" if ev.mode == "min" else ">="
        return [GateCheck(name="threshold", passed=good, value=ev.challenger, limit=limit,
                          reason=f"{ev.metric} {ev.challenger:.6g} {op} threshold {limit:.6g}: {good}")]

    def _budgets(self, ev: GateEvidence) -> list[GateCheck]:
        out = []
        if self.spec.max_predict_ms is not None:
            limit, ms = self.spec.max_predict_ms, ev.predict_ms_p99
            good = ms is not None and ms <= limit
            said = "was not measured" if ms is None else f"{ms:.3g} ms"
            out.append(GateCheck(name="predict_latency", passed=good, value=ms, limit=limit,
                                 reason=f"p99 one-row predict {said} (validation.max_predict_ms {limit:g} ms)"))
        if self.spec.max_artifact_mb is not None:
            limit, size = self.spec.max_artifact_mb, ev.artifact_bytes
            mb = None if size is None else size / 1e6
            good = mb is not None and mb <= limit
            said = "was not measured" if mb is None else f"{mb:.3f} MB"
            out.append(GateCheck(name="artifact_size", passed=good, value=mb, limit=limit,
                                 reason=f"artifact size {said} (validation.max_artifact_mb {limit:g} MB)"))
        return out

    def _unscorable_champion(self, ev: GateEvidence) -> GateCheck:
        what = f"champion v{ev.champion_version}" if ev.champion_version is not None else "the champion"
        cause = ev.champion_error or f"its metric is {ev.champion}"
        policy = self.spec.on_champion_error
        if policy == "promote":
            return GateCheck(name="champion", passed=True, reason=(
                f"{what} could not be scored on this holdout ({cause}); the challenger is judged on its own checks "
                "(validation.on_champion_error=promote)"))
        return GateCheck(name="champion", passed=False, reason=(
            f"{what} could not be scored on this holdout ({cause}); the challenger is rejected "
            "(validation.on_champion_error=reject)"))

    def _beats_champion(self, ev: GateEvidence) -> tuple[GateCheck, float]:
        assert ev.challenger is not None and ev.champion is not None
        scale = abs(ev.champion) or 1e-12
        gain = (ev.champion - ev.challenger) if ev.mode == "min" else (ev.challenger - ev.champion)
        improvement = gain / scale
        margin = self.spec.must_beat_champion_by
        good = improvement >= margin and (margin > 0 or improvement > 0)
        line = (f"challenger {ev.metric} {ev.challenger:.6g} vs champion {ev.champion:.6g} on the same holdout: "
                f"{improvement:+.2%} (needs > {margin:.2%})")
        return GateCheck(name="beats_champion", passed=good, value=improvement, limit=margin, reason=line), improvement

    def _bootstrap(self, ev: GateEvidence) -> tuple[GateCheck, BootstrapCI | None]:
        assert ev.champion is not None
        paired = ev.paired
        level = self.spec.confidence
        if paired is None or paired.champion is None:
            why = f" ({ev.scores_error})" if ev.scores_error else ""
            return GateCheck(name="bootstrap", passed=False, reason=(
                f"no per-row holdout scores of challenger and champion were recorded{why}, so the paired bootstrap "
                "cannot run; set validation.bootstrap: false to decide on the point estimate alone")), None
        if paired.champion.shape[0] != paired.challenger.shape[0] or paired.rows == 0:
            return GateCheck(name="bootstrap", passed=False, reason=(
                f"per-row scores disagree: challenger {paired.challenger.shape[0]} rows, champion "
                f"{paired.champion.shape[0]} rows; the bootstrap needs the same non-empty rows")), None
        if paired.metric is not None and paired.metric != ev.metric:
            return GateCheck(name="bootstrap", passed=False, reason=(
                f"per-row scores are for {paired.metric}, not {ev.metric}; the bootstrap needs the gate's "
                "metric")), None
        required = self.spec.must_beat_champion_by * (abs(ev.champion) or 1e-12)
        try:
            ci = paired_bootstrap(ev.metric, ev.mode, paired.challenger, paired.champion, confidence=level,
                                  resamples=self.spec.bootstrap_resamples, seed=self.seed, required=required)
        except ValueError as exc:
            return GateCheck(name="bootstrap", passed=False, limit=required,
                             reason=f"paired bootstrap of {ev.metric} cannot run: {exc}"), None
        verdict = "significant" if ci.significant else "not significant"
        dropped = (f"; {ci.dropped} resamples where {ev.metric} is undefined dropped" if ci.dropped else "")
        line = (f"paired bootstrap gain in {ev.metric} {ci.gain:+.4g}, {level:.0%} CI [{ci.low:+.4g}, {ci.high:+.4g}] "
                f"over {ci.resamples} resamples of {ci.rows} rows: {verdict} (lower end must exceed "
                f"{required:.4g}; validation.confidence {level:g}{dropped})")
        return GateCheck(name="bootstrap", passed=ci.significant, value=ci.low, limit=required, reason=line), ci

    def _slice(self, ev: GateEvidence, spec: SliceSpec) -> tuple[GateCheck, SliceReport | None]:
        name = f"slice:{spec.name}"
        paired = ev.paired
        if paired is None or paired.champion is None:
            return GateCheck(name=name, passed=False, limit=spec.max_regression, reason=(
                f"slice {spec.name}: no per-row holdout scores were recorded, so the slice cannot be checked")), None
        if paired.metric is not None and paired.metric != ev.metric:
            return GateCheck(name=name, passed=False, limit=spec.max_regression, reason=(
                f"slice {spec.name}: per-row scores are for {paired.metric}, not {ev.metric}")), None
        if spec.column not in paired.columns:
            return GateCheck(name=name, passed=False, limit=spec.max_regression, reason=(
                f'slice {spec.name}: got column "{spec.column}"; it is not a column of the holdout, and a slice '
                "must be defined on one")), None
        mask = slice_mask(spec, paired.columns[spec.column])
        rows = int(mask.sum())
        if rows == 0:
            report = SliceReport(name=spec.name, column=spec.column, rows=0, max_regression=spec.max_regression,
                                 passed=True)
            return GateCheck(name=name, passed=True, value=None, limit=spec.max_regression, reason=(
                f"slice {spec.name}: no holdout rows fall in it; not checked")), report
        chal = float(aggregate(ev.metric, paired.challenger[mask]))
        champ = float(aggregate(ev.metric, paired.champion[mask]))
        if ev.metric not in DECOMPOSABLE and not (math.isfinite(chal) and math.isfinite(champ)):
            return self._undefined_slice(ev, spec, rows, chal, champ)
        worse = (chal - champ) if ev.mode == "min" else (champ - chal)
        regression = worse / (abs(champ) or 1e-12)
        good = bool(np.isfinite(regression)) and regression <= spec.max_regression
        report = SliceReport(name=spec.name, column=spec.column, rows=rows, challenger=chal, champion=champ,
                             regression=regression, max_regression=spec.max_regression, passed=good)
        line = (f"slice {spec.name} ({rows} rows): challenger {ev.metric} {chal:.6g} vs champion {champ:.6g}, "
                f"regression {regression:+.2%} (max_regression {spec.max_regression:.2%})")
        return GateCheck(name=name, passed=good, value=regression, limit=spec.max_regression, reason=line), report

    @staticmethod
    def _undefined_slice(ev: GateEvidence, spec: SliceSpec, rows: int, chal: float,
                         champ: float) -> tuple[GateCheck, SliceReport]:
        """A slice where the metric is undefined (e.g. auc on one class): not checked if for both models, else
        failed, since the models cannot be compared on it."""
        both = not math.isfinite(chal) and not math.isfinite(champ)
        report = SliceReport(name=spec.name, column=spec.column, rows=rows,
                             challenger=chal if math.isfinite(chal) else None,
                             champion=champ if math.isfinite(champ) else None,
                             max_regression=spec.max_regression, passed=both)
        if both:
            why = (f"slice {spec.name} ({rows} rows): {ev.metric} is undefined on its rows for both models (e.g. one "
                   "class only); not checked")
        else:
            who = "challenger" if not math.isfinite(chal) else "champion"
            why = (f"slice {spec.name} ({rows} rows): {ev.metric} is undefined on its rows for the {who} only (e.g. "
                   "its classes lack the slice's labels), so the models cannot be compared on it")
        return GateCheck(name=f"slice:{spec.name}", passed=both, value=None, limit=spec.max_regression,
                         reason=why), report


def _report(checks: list[GateCheck], numbers: dict[str, float | int | str | None],
            bootstrap: BootstrapCI | None = None, slices: list[SliceReport] | None = None) -> GateReport:
    failed = [c.reason for c in checks if not c.passed]
    ok = [c.reason for c in checks if c.passed]
    if bootstrap is not None:
        numbers = {**numbers, "bootstrap_low": bootstrap.low, "bootstrap_high": bootstrap.high}
    return GateReport(passed=not failed, reasons=failed + ok, numbers=numbers, checks=checks, bootstrap=bootstrap,
                      slices=slices or [])
