"""The gate: a challenger reaches traffic only if it clears the threshold and beats the champion."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from streamtune.config.jobspec import ValidationSpec


class GateEvidence(BaseModel):
    """The numbers the gate decides on, all measured on the SAME holdout."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="Metric name, e.g. 'rmse'.")
    mode: Literal["min", "max"] = Field(description="Whether lower or higher is better.")
    challenger: float | None = Field(description="Challenger's metric on the holdout; None if it failed to score.")
    champion: float | None = Field(None, description="Champion's metric on the same holdout; None if no champion.")
    holdout_rows: int = Field(ge=0, description="Rows in the holdout.")
    snapshot_rows: int = Field(ge=0, description="Rows in the whole snapshot.")
    error: str | None = Field(None, description="Why the challenger could not be scored, if it could not.")


class GateReport(BaseModel):
    """The gate's verdict with its reasons and numbers."""

    passed: bool = Field(description="Whether the challenger may be promoted.")
    reasons: list[str] = Field(description="One line per check, failed checks first.")
    numbers: dict[str, float | int | str | None] = Field(description="The numbers the checks used.")


class Validator(ABC):
    """An extension point: decides whether a challenger may replace the champion."""

    @abstractmethod
    def validate(self, evidence: GateEvidence) -> GateReport:
        """Return a report; never raise for a failing model."""


class MetricGate(Validator):
    """Data-size check, an absolute threshold and champion-vs-challenger on the same holdout.

    Example:
        >>> gate = MetricGate(ValidationSpec(threshold=2.0, min_rows=10))
        >>> ev = GateEvidence(metric="rmse", mode="min", challenger=1.0, champion=1.5,
        ...                   holdout_rows=50, snapshot_rows=250)
        >>> gate.validate(ev).passed
        True
    """

    def __init__(self, spec: ValidationSpec) -> None:
        self.spec = spec

    def validate(self, evidence: GateEvidence) -> GateReport:
        """Run every check and collect the reasons."""
        failed: list[str] = []
        ok: list[str] = []
        ev = evidence
        numbers: dict[str, float | int | str | None] = {
            "metric": ev.metric, "challenger": ev.challenger, "champion": ev.champion,
            "holdout_rows": ev.holdout_rows, "snapshot_rows": ev.snapshot_rows,
            "threshold": self.spec.threshold, "must_beat_champion_by": self.spec.must_beat_champion_by,
        }
        self._check_rows(ev, ok, failed)
        if ev.challenger is None or not math.isfinite(ev.challenger):
            failed.append(f"challenger could not be scored on the holdout: {ev.error or ev.challenger}")
            return GateReport(passed=False, reasons=failed + ok, numbers=numbers)
        self._check_threshold(ev, ok, failed)
        improvement = self._check_champion(ev, ok, failed)
        numbers["improvement"] = improvement
        return GateReport(passed=not failed, reasons=failed + ok, numbers=numbers)

    def _check_rows(self, ev: GateEvidence, ok: list[str], failed: list[str]) -> None:
        line = f"snapshot has {ev.snapshot_rows} rows (min {self.spec.min_rows})"
        (ok if ev.snapshot_rows >= self.spec.min_rows else failed).append(line)

    def _check_threshold(self, ev: GateEvidence, ok: list[str], failed: list[str]) -> None:
        limit = self.spec.threshold
        if limit is None or ev.challenger is None:
            return
        good = ev.challenger <= limit if ev.mode == "min" else ev.challenger >= limit
        op = "<=" if ev.mode == "min" else ">="
        (ok if good else failed).append(f"{ev.metric} {ev.challenger:.6g} {op} threshold {limit:.6g}: {good}")

    def _check_champion(self, ev: GateEvidence, ok: list[str], failed: list[str]) -> float | None:
        if ev.champion is None:
            ok.append("no champion yet: the first model needs only the threshold")
            return None
        assert ev.challenger is not None
        scale = abs(ev.champion) or 1e-12
        gain = (ev.champion - ev.challenger) if ev.mode == "min" else (ev.challenger - ev.champion)
        improvement = gain / scale
        margin = self.spec.must_beat_champion_by
        good = improvement >= margin and (margin > 0 or improvement > 0)
        line = (
            f"challenger {ev.metric} {ev.challenger:.6g} vs champion {ev.champion:.6g} on the same holdout: "
            f"{improvement:+.2%} (needs > {margin:.2%})"
        )
        (ok if good else failed).append(line)
        return improvement
