"""Typed platform events: what the active controller emits on its :class:`~streamtune.observe.bus.EventBus`.

Every record is frozen pydantic with a ``kind`` (the union's discriminator), a fresh ``event_id`` (a webhook
receiver dedupes retries by it) and ``at`` (Unix time of the emit). Listeners get the same object; it never
changes. The builders below (:func:`run_finished`, :func:`gate_verdict`, :func:`swap_outcome`,
:func:`ingest_progress`) turn the controller's own records into events, so each hook in the controller is one
line; the bus calls them lazily, inside its guard, so a builder that fails never fails the flow.

Example:
    >>> event = GateVerdict(spec="sales", run_id="r-1", passed=False, metric="rmse", challenger=9.1,
    ...                     champion=8.0, reasons=["rmse 9.1 does not beat the champion's 8.0"])
    >>> event.name
    'gate_rejected'
    >>> parse_event(event.model_dump_json()) == event
    True
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from streamtune.registry.records import TERMINAL_STATUSES, RunRecord, RunStatus
from streamtune.serving.records import SwapReport
from streamtune.sweeps.schema import HoldoutScores

__all__ = [
    "DriftDetected", "GateVerdict", "IngestProgress", "PlatformEvent", "Promoted", "RolledBack", "RunFinished",
    "gate_verdict", "ingest_progress", "parse_event", "run_finished", "swap_outcome",
]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex,
                          description="Unique id of this event; a webhook's retries carry the same one.")
    at: float = Field(default_factory=time.time, description="Unix time the controller emitted it.")

    @property
    def name(self) -> str:
        """The event's name as webhooks configure it (``kind``, except for gate verdicts)."""
        return str(getattr(self, "kind"))  # noqa: B009 -- every subclass defines kind


class RunFinished(_Event):
    """A run reached a status it never leaves: promoted, rejected, failed or cancelled."""

    kind: Literal["run_finished"] = "run_finished"
    spec: str = Field(description="The spec the run belongs to.")
    run_id: str = Field(description="The run.")
    status: Literal["promoted", "rejected", "failed", "cancelled"] = Field(description="Its final status.")
    succeeded: bool = Field(description="True for promoted or rejected (the sweep ran and was judged).")
    seconds: float = Field(description="From the window closing (the run's creation) until it finished.")
    attempt: int = Field(1, description="Its last attempt.")
    model_version: int | None = Field(None, description="The version it registered, if it got that far.")
    error: str | None = Field(None, description="Why it failed or was rejected without a gate report.")


class GateVerdict(_Event):
    """The model gate judged a run's winner against the champion on the same holdout."""

    kind: Literal["gate_verdict"] = "gate_verdict"
    spec: str = Field(description="The spec.")
    run_id: str = Field(description="The run whose winner was judged.")
    passed: bool = Field(description="Whether the challenger passed every check.")
    metric: str = Field(description="The gate's metric.")
    challenger: float | None = Field(None, description="The challenger's holdout score.")
    champion: float | None = Field(None, description="The champion's score on the same rows; None without one.")
    champion_version: int | None = Field(None, description="Which champion was scored.")
    reasons: list[str] = Field(default_factory=list, description="The gate's reasons, the deciding one first.")

    @property
    def name(self) -> str:
        """``gate_passed`` or ``gate_rejected``."""
        return "gate_passed" if self.passed else "gate_rejected"


class Promoted(_Event):
    """A version serves and is the champion: a run's promotion or a ``promote`` command."""

    kind: Literal["promoted"] = "promoted"
    spec: str = Field(description="The spec (the model's name).")
    version: int = Field(description="The version now serving.")
    previous: int | None = Field(None, description="The version that served before.")
    app: str | None = Field(None, description="The Serve app.")
    run_id: str | None = Field(None, description="The run promoted; None for a promote command.")
    command_id: str | None = Field(None, description="The promote command; None for a run's promotion.")
    swap_s: float = Field(description="Seconds the whole swap took (load, canary, flip, watch).")
    load_s: float = Field(0.0, description="Seconds until every replica had the version loaded.")
    flip_s: float = Field(0.0, description="Seconds from the flip until every replica acknowledged it.")
    reason: str = Field("", description="Why (the alias change's reason).")


class RolledBack(_Event):
    """Serving went back to an earlier version: a ``rollback`` command, or a swap that rolled itself back."""

    kind: Literal["rolled_back"] = "rolled_back"
    spec: str = Field(description="The spec (the model's name).")
    from_version: int | None = Field(description="The version that was serving, or the withdrawn candidate.")
    to_version: int = Field(description="The version serving now.")
    reason: str = Field(description="Why: the command's reason, or the breach that withdrew the candidate.")
    automatic: bool = Field(description="True when the swap rolled back by itself (canary, ack, live watch).")
    app: str | None = Field(None, description="The Serve app.")
    run_id: str | None = Field(None, description="The run whose promotion rolled back, if any.")
    command_id: str | None = Field(None, description="The command that swapped, if any.")
    swap_s: float = Field(0.0, description="Seconds the swap call took.")


class DriftDetected(_Event):
    """Live data or predictions of a spec drifted from its reference (emitted by the drift trigger)."""

    kind: Literal["drift_detected"] = "drift_detected"
    spec: str = Field(description="The spec.")
    version: int | None = Field(None, description="The serving version whose inputs or outputs drifted.")
    features: dict[str, float] = Field(description="Drift per feature (or 'prediction'), in ``metric`` units.")
    threshold: float = Field(description="The value past which a feature counts as drifted.")
    metric: str = Field("psi", description="The drift measure, e.g. psi.")
    run_id: str | None = Field(None, description="The run the drift trigger started, if any.")


class IngestProgress(_Event):
    """What one controller ingest step consumed and stored (deltas, only emitted when something changed)."""

    kind: Literal["ingest_progress"] = "ingest_progress"
    records: int = Field(0, ge=0, description="Kafka records polled and committed.")
    events: int = Field(0, ge=0, description="Events decoded and routed to a spec.")
    accepted: int = Field(0, ge=0, description="Events staged into a window.")
    duplicates: int = Field(0, ge=0, description="Events already seen (consumed, not counted).")
    dead_lettered: int = Field(0, ge=0, description="Records sent to the dead-letter topic.")
    bad_events: int = Field(0, ge=0, description="Records that could not be decoded.")
    windows_closed: int = Field(0, ge=0, description="Trigger windows closed.")
    runs_inserted: int = Field(0, ge=0, description="New runs stored.")


PlatformEvent = Annotated[RunFinished | GateVerdict | Promoted | RolledBack | DriftDetected | IngestProgress,
                          Field(discriminator="kind")]
"""Any platform event; ``kind`` tells which."""

_ADAPTER: TypeAdapter[PlatformEvent] = TypeAdapter(PlatformEvent)


def parse_event(data: str | bytes | Mapping[str, Any]) -> PlatformEvent:
    """Read an event back from its JSON (a webhook body) or dict.

    Example:
        >>> parse_event('{"kind": "drift_detected", "spec": "s", "features": {"price": 0.3}, '
        ...             '"threshold": 0.2}').features
        {'price': 0.3}
    """
    if isinstance(data, str | bytes):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)


def run_finished(run: RunRecord) -> RunFinished | None:
    """The event of a run that has ended; None while it has not.

    Example:
        >>> run = RunRecord(run_id="r-1", spec_name="s", dataset="d", status=RunStatus.FAILED, error="boom",
        ...                 created_at=100.0, updated_at=130.5)
        >>> e = run_finished(run)
        >>> e.status, e.succeeded, e.seconds
        ('failed', False, 30.5)
        >>> run_finished(run.model_copy(update={"status": RunStatus.RUNNING})) is None
        True
    """
    if run.status not in TERMINAL_STATUSES:
        return None
    status = RunStatus(run.status).value
    return RunFinished(
        spec=run.spec_name, run_id=run.run_id, status=status,
        succeeded=status in ("promoted", "rejected"), seconds=round(max(0.0, run.updated_at - run.created_at), 3),
        attempt=run.attempt, model_version=run.model_version, error=run.error,
    )


def gate_verdict(spec: str, run_id: str, gate: Mapping[str, Any], holdout: HoldoutScores) -> GateVerdict:
    """The event of a gate report (the run's ``gate`` JSON) and the holdout's headline numbers.

    Example:
        >>> holdout = HoldoutScores(metric="rmse", challenger=7.5, champion=8.0, champion_version=1, rows=400)
        >>> gate_verdict("s", "r-1", {"passed": True, "reasons": ["beats the champion"]}, holdout).name
        'gate_passed'
    """
    return GateVerdict(spec=spec, run_id=run_id, passed=bool(gate.get("passed")), metric=holdout.metric,
                       challenger=holdout.challenger, champion=holdout.champion,
                       champion_version=holdout.champion_version, reasons=[str(r) for r in gate.get("reasons") or []])


def swap_outcome(spec: str, report: SwapReport, *, wanted: int, rollback: bool = False, app: str | None = None,
                 run_id: str | None = None, command_id: str | None = None, reason: str = "") -> Promoted | RolledBack:
    """The event of a finished swap to version ``wanted``: promoted, or rolled back (by a command, or by itself).

    Example:
        >>> report = SwapReport(version=1, previous=2, load_s=0.0, flip_s=0.01, total_s=0.2, replicas=2)
        >>> e = swap_outcome("s", report, wanted=1, rollback=True, reason="p99")
        >>> e.kind, e.from_version, e.to_version, e.automatic
        ('rolled_back', 2, 1, False)
        >>> withdrawn = report.model_copy(update={"version": 2, "candidate": 3, "rolled_back": True,
        ...                                       "reason": "canary error rate 0.2"})
        >>> e = swap_outcome("s", withdrawn, wanted=3)
        >>> e.kind, e.from_version, e.to_version, e.automatic, e.reason
        ('rolled_back', 3, 2, True, 'canary error rate 0.2')
        >>> swap_outcome("s", report.model_copy(update={"previous": None}), wanted=1).kind
        'promoted'
    """
    serving = int(report.version)
    if serving != wanted:
        return RolledBack(spec=spec, from_version=_int(report.candidate) or wanted, to_version=serving,
                          reason=report.reason or "rolled back", automatic=True, app=app, run_id=run_id,
                          command_id=command_id, swap_s=report.total_s)
    if rollback:
        return RolledBack(spec=spec, from_version=_int(report.previous), to_version=serving, reason=reason,
                          automatic=False, app=app, run_id=run_id, command_id=command_id, swap_s=report.total_s)
    return Promoted(spec=spec, version=serving, previous=_int(report.previous), app=app, run_id=run_id,
                    command_id=command_id, swap_s=report.total_s, load_s=report.load_s, flip_s=report.flip_s,
                    reason=reason)


def drift_detected(run: RunRecord | None) -> DriftDetected | None:
    """The event of a run that the drift trigger started (None for any other run).

    Example:
        >>> from streamtune.registry.records import TriggerDetail
        >>> run = RunRecord(run_id="r-1", spec_name="s", dataset="d", reason="drift",
        ...                 trigger_detail=TriggerDetail(kind="drift", drift={"temp": 0.4}, threshold=0.2))
        >>> drift_detected(run).features, drift_detected(run.model_copy(update={"trigger_detail": None}))
        ({'temp': 0.4}, None)
    """
    detail = run.trigger_detail if run is not None else None
    if run is None or detail is None or detail.kind != "drift" or not detail.drift:
        return None
    return DriftDetected(spec=run.spec_name, features=dict(detail.drift), threshold=float(detail.threshold or 0.0),
                         metric=detail.drift_method or "psi", run_id=run.run_id)


def ingest_progress(before: Mapping[str, int], after: Mapping[str, int]) -> IngestProgress | None:
    """What an ingest step added, from its stats before and after (:meth:`IngestStats.as_dict`); None if nothing.

    Example:
        >>> ingest_progress({"records": 3, "events": 3}, {"records": 5, "events": 4, "failed_steps": 1}).records
        2
        >>> ingest_progress({"records": 3}, {"records": 3}) is None
        True
    """
    fields = IngestProgress.model_fields.keys() - _Event.model_fields.keys() - {"kind"}
    deltas = {k: max(0, after.get(k, 0) - before.get(k, 0)) for k in fields}
    return IngestProgress(**deltas) if any(deltas.values()) else None


def _int(value: int | str | None) -> int | None:
    return None if value is None else int(value)
