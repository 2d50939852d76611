"""The records the registry stores: runs, model versions and alias events.

A run is one trigger window turned into a sweep. Its id is derived from the window's dataset and Kafka
offset range (:func:`run_id_for`), so the same window always maps to the same run, inserting it twice is
a no-op, and the Ray Job submitted for it (``submission_id = run_id``) is deduplicated by Ray as well.

Example:
    >>> rid = run_id_for("clicks", {"data:0": [10, 19]})
    >>> run = RunRecord(run_id=rid, spec_name="ctr", dataset="clicks", offsets={"data:0": [10, 19]})
    >>> run.status.value, run.run_id == rid
    ('pending', True)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamtune.config.jobspec import JobSpec

__all__ = [
    "TERMINAL_STATUSES", "AliasEvent", "ApiToken", "Degradation", "Lease", "ModelVersion", "OffsetReset", "RunAttempt",
    "RunRecord", "RunStatus", "SeenKey", "SpecRecord", "TriggerDetail", "TriggerKind", "run_id_for",
    "scheduled_run_id",
]


class RunStatus(str, Enum):  # noqa: UP042 -- StrEnum needs 3.11; we support 3.10
    """Where a run stands in the flow.

    ``pending`` (window closed, run stored) → ``submitted`` (Ray Job submitted) → ``running`` →
    ``succeeded`` (sweep done) or ``failed``; then the gate makes a succeeded run ``promoted`` or
    ``rejected``. A ``cancel`` command ends a run that has not passed the gate as ``cancelled``. With
    ``promotion: manual`` a run that passed the gate is ``awaiting_approval`` (nothing registered or swapped)
    until an ``approve`` command makes it ``succeeded``, and the advancer promotes it as usual.

    Example:
        >>> RunStatus("running") is RunStatus.RUNNING
        True
    """

    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    PROMOTED = "promoted"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"


TERMINAL_STATUSES = frozenset({RunStatus.PROMOTED, RunStatus.REJECTED, RunStatus.FAILED, RunStatus.CANCELLED})
"""Statuses a run never leaves."""


def _check_offsets(value: dict[str, list[int]]) -> dict[str, list[int]]:
    for key, span in value.items():
        topic, sep, part = key.rpartition(":")
        if not sep or not topic or not part.isdigit():
            raise ValueError(f'got key "{key}"; keys must be "topic:partition" like "data:0"')
        if len(span) != 2 or span[0] > span[1]:
            raise ValueError(f"got {span} for {key}; must be [first, last] with first <= last")
    return value


class RunAttempt(BaseModel):
    """One attempt of a run that ended without a result: its Ray Job and why it failed."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1, description="Attempt number, 1 for the first.")
    submission_id: str = Field(description="The attempt's Ray Job id.")
    error: str = Field(description="Why the attempt failed: the exception's type and message.")
    started_at: float | None = Field(None, description="Unix time it was submitted.")
    ended_at: float = Field(default_factory=time.time, description="Unix time it was found failed.")
    preempted_by: str | None = Field(
        None, description="The event-triggered run this attempt of a run asked for by hand was stopped for "
        "(trigger.preempt); the next attempt resumes it, and it does not count against sweep.retries. None: it failed."
    )


TriggerKind = Literal["min_rows", "max_wait", "drift", "degradation", "schedule", "replay", "manual"]


class Degradation(BaseModel):
    """The champion scored on a labelled window, against its gate holdout metric."""

    metric: str = Field(description="The spec's metric (sweep.metric).")
    live: float = Field(description="The champion's metric on the window's labelled rows.")
    reference: float = Field(description="The champion's metric on its gate holdout.")
    relative: float = Field(description="How much worse live is than reference, as a share of |reference| "
                            "(positive: worse).")
    rows: int = Field(description="Labelled rows scored.")
    version: int = Field(description="The champion version scored.")


class TriggerDetail(BaseModel):
    """Why a run was triggered, with the numbers that decided it.

    Example:
        >>> TriggerDetail(kind="drift", rows=800, drift={"temp": 0.41}, threshold=0.2).kind
        'drift'
    """

    model_config = ConfigDict(extra="forbid")

    kind: TriggerKind = Field(description="What fired.")
    rows: int | None = Field(None, description="Rows in the window when it closed.")
    waited_s: float | None = Field(None, description="Seconds the window had been open.")
    drift: dict[str, float] | None = Field(
        None, description="Per-feature drift of the window against the champion's training data (PSI or KS)."
    )
    drift_method: str | None = Field(None, description="'psi' or 'ks'.")
    threshold: float | None = Field(None, description="The threshold that was passed (drift or degradation).")
    degradation: Degradation | None = Field(None, description="The champion's live degradation, if that fired.")
    schedule: str | None = Field(None, description="The cron expression that fired.")
    slot: float | None = Field(None, description="Unix time of the schedule slot that fired.")
    replay_id: str | None = Field(None, description="The replay this run belongs to.")
    from_offset: int | None = Field(None, description="Replay: the first offset read.")
    from_time: float | None = Field(None, description="Replay: the first event time read (Unix seconds).")
    command_id: str | None = Field(None, description="The command that asked for it (manual, replay).")


class RunRecord(BaseModel):
    """One run: a closed trigger window, the sweep it started, and what became of it.

    Example:
        >>> r = RunRecord(run_id="r-1", spec_name="ctr", dataset="clicks", num_rows=500, reason="min_rows")
        >>> r.status, r.model_version
        (<RunStatus.PENDING: 'pending'>, None)
    """

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="Deterministic id of the window (see run_id_for); also the Ray Job id.")
    spec_name: str = Field(description="Name of the JobSpec whose trigger closed the window.")
    dataset: str = Field(description="Dataset name the window's events belong to.")
    status: RunStatus = Field(RunStatus.PENDING, description="Where the run stands in the flow.")
    reason: str = Field("", description='Why the window closed, e.g. "min_rows", "max_wait" or "drift".')
    event_ids: list[str] = Field(
        default_factory=list, description="Ids of the DataArrival events in the window."
    )
    offsets: dict[str, list[int]] = Field(
        default_factory=dict,
        description='Kafka offsets of the window: "topic:partition" -> [first, last], both inclusive.',
    )
    num_rows: int = Field(0, ge=0, description="Rows in the window, summed over its events.")
    uris: list[str] = Field(default_factory=list, description="Data files behind the window's snapshot.")
    created_at: float = Field(default_factory=time.time, description="Unix time the run was stored.")
    updated_at: float = Field(default_factory=time.time, description="Unix time of the last change.")
    sweep: dict[str, Any] | None = Field(None, description="The sweep result as JSON, once the sweep ends.")
    gate: dict[str, Any] | None = Field(
        None, description="The gate's GateReport (streamtune.validation) as JSON: every check with its value, limit "
        "and reason, the paired bootstrap interval, the slices; `GateReport.model_validate(run.gate)` types it."
    )
    model_version: int | None = Field(None, description="Registered model version, if the run produced one.")
    error: str | None = Field(None, description="Headline of the error that failed the run, if any.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds spent per stage.")
    command_id: str | None = Field(
        None, description="The command that asked for this run (a manual run), or None for a trigger window."
    )
    attempt: int = Field(1, ge=1, description="The current attempt; each is a Ray Job of its own.")
    attempts: list[RunAttempt] = Field(
        default_factory=list, description="Earlier attempts that failed, oldest first, each with its reason."
    )
    retry_at: float | None = Field(
        None, description="Unix time the next attempt may start (backoff after a failed attempt); None: now."
    )
    trigger_detail: TriggerDetail | None = Field(
        None, description="Why the run was triggered, with the numbers (rows, drift per feature, degradation, "
        "schedule slot, replay); None for runs stored before it was recorded."
    )

    @property
    def submission_id(self) -> str:
        """The Ray Job id of the current attempt: the run id for the first, ``<run_id>-a<N>`` after.

        Example:
            >>> RunRecord(run_id="r-1", spec_name="s", dataset="d", attempt=3).submission_id
            'r-1-a3'
        """
        return self.run_id if self.attempt == 1 else f"{self.run_id}-a{self.attempt}"

    @field_validator("offsets")
    @classmethod
    def _offsets_are_spans(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        return _check_offsets(value)


class ModelVersion(BaseModel):
    """One registered version of a named model, with the lineage that produced it.

    Example:
        >>> mv = ModelVersion(name="ctr", version=1, run_id="r-1", artifact_uri="file:///tmp/a")
        >>> mv.version
        1
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Model name; usually the JobSpec name.")
    version: int = Field(ge=1, description="Version number, 1, 2, ... per model name.")
    run_id: str = Field(description="Run that produced this version.")
    artifact_uri: str = Field(description="Where the artifact folder (with its MANIFEST.json) lives.")
    params: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters of the winning trial.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Metrics of the winning trial.")
    lineage: dict[str, Any] = Field(
        default_factory=dict,
        description="Event ids, offsets, snapshot fingerprint, sweep and trial ids behind this version.",
    )
    created_at: float = Field(default_factory=time.time, description="Unix time of registration.")
    manifest_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the artifact's MANIFEST.json bytes, recorded at registration; every load checks "
        "the manifest against it before the files. None for versions registered before digests were kept.",
    )


class AliasEvent(BaseModel):
    """One change of an alias (``champion``, ``challenger``, ...): what it pointed at before and after.

    Example:
        >>> AliasEvent(name="ctr", alias="champion", version=2, previous=1, reason="gate passed").previous
        1
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Model name.")
    alias: str = Field(description='Alias name, e.g. "champion".')
    version: int | None = Field(description="Version the alias points at after the change; None = removed.")
    previous: int | None = Field(None, description="Version it pointed at before; None if it was unset.")
    reason: str = Field("", description='Why it changed, e.g. "gate passed" or "rollback: p99 too high".')
    at: float = Field(default_factory=time.time, description="Unix time of the change.")


def run_id_for(dataset: str, offsets: dict[str, list[int]], *, spec_name: str | None = None,
               resets: dict[str, int] | None = None) -> str:
    """Derive a window's run id from its dataset and offset ranges.

    The id is ``"r-"`` and 16 hex digits of a sha256, so it is stable across processes and restarts, and
    valid as a Ray Jobs ``submission_id``. The order of ``offsets`` keys does not matter.

    Args:
        dataset: Dataset name of the window.
        offsets: ``"topic:partition" -> [first, last]`` offsets of the window.
        spec_name: Pass it when several JobSpecs may watch the same dataset, so their windows get
            distinct runs; left out, the id depends on the dataset and offsets only.
        resets: ``"topic:partition" -> recorded offset resets`` of the window's partitions: a topic that was
            recreated restarts its offsets, and its new windows must not take the ids of the old ones. Zero
            counts are left out, so a partition never reset keeps its ids.

    Returns:
        The run id.

    Example:
        >>> run_id_for("clicks", {"a:0": [1, 5], "a:1": [3, 4]}) == run_id_for(
        ...     "clicks", {"a:1": [3, 4], "a:0": [1, 5]})
        True
        >>> len(run_id_for("clicks", {"a:0": [1, 5]}))
        18
        >>> run_id_for("clicks", {"a:0": [1, 5]}, resets={"a:0": 0}) == run_id_for("clicks", {"a:0": [1, 5]}) != (
        ...     run_id_for("clicks", {"a:0": [1, 5]}, resets={"a:0": 1}))
        True
    """
    payload: dict[str, Any] = {
        "dataset": dataset,
        "offsets": sorted((key, [int(x) for x in span]) for key, span in offsets.items()),
    }
    if spec_name is not None:
        payload["spec_name"] = spec_name
    epochs = sorted((key, int(n)) for key, n in (resets or {}).items() if n and key in offsets)
    if epochs:
        payload["resets"] = epochs
    digest = hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()
    return "r-" + digest[:16]


class SpecRecord(BaseModel):
    """A JobSpec as the registry keeps it, with whether the controller may start its runs.

    Example:
        >>> from streamtune.config.jobspec import JobSpec
        >>> spec = JobSpec.model_validate({"name": "ctr", "dataset": {"name": "clicks", "label": "y"},
        ...     "job": {"entrypoint": "jobs.x:Job"}, "serve": {"app": "ctr"},
        ...     "sweep": {"metric": "auc", "mode": "max", "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
        >>> SpecRecord(name="ctr", spec=spec).paused
        False
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Spec name; also the model name.")
    spec: JobSpec = Field(description="The JobSpec.")
    paused: bool = Field(
        False, description="True while paused: windows still close into pending runs, none is started."
    )
    updated_at: float = Field(default_factory=time.time, description="Unix time of the last change.")
    error: str | None = Field(
        None, description="Why the controller could not advance this spec the last time; None while healthy."
    )
    failures: int = Field(0, ge=0, description="Failed turns in a row; the backoff doubles with each.")
    retry_at: float | None = Field(None, description="Unix time the controller tries this spec again after an error.")

    @property
    def state(self) -> str:
        """``paused``, ``error`` or ``active``."""
        return "paused" if self.paused else ("error" if self.error else "active")


@dataclass(frozen=True, slots=True)
class SeenKey:
    """An event id or a normalized data URI that a spec has already trained on (cross-window dedupe).

    A plain frozen dataclass, not a pydantic model: a window of 1,000 file events writes 2,000 of them, and
    they never cross the API.

    Attributes:
        spec_name: The spec that saw it; another spec on the same dataset trains on it too.
        key: ``"id:<event id>"`` or ``"uri:<normalized uri>"``.
        run_id: The run whose window held it.
        first_seen: Unix time its window closed.

    Example:
        >>> SeenKey("ctr", "id:e1", "r-1", 5.0).key
        'id:e1'
    """

    spec_name: str
    key: str
    run_id: str
    first_seen: float = field(default_factory=time.time)


class Lease(BaseModel):
    """The controller lease: who is the active controller, and the fencing token of its term.

    Every new holder gets a higher ``token``; a registry fenced with an older token refuses writes.

    Example:
        >>> Lease(name="controller", holder="host:12", token=3, expires_at=0.0).expired(now=1.0)
        True
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description='Lease name; the controller uses "controller".')
    holder: str = Field(description="Id of the process that holds it (host:pid:nonce).")
    token: int = Field(ge=1, description="Fencing token: rises by one each time another holder takes the lease.")
    acquired_at: float = Field(default_factory=time.time, description="Unix time this holder took it.")
    renewed_at: float = Field(default_factory=time.time, description="Unix time of the last renewal.")
    expires_at: float = Field(description="Unix time it lapses unless renewed.")

    def expired(self, now: float | None = None) -> bool:
        """True once the lease has lapsed."""
        return (time.time() if now is None else now) >= self.expires_at


class ApiToken(BaseModel):
    """An API token as the registry keeps it: only its sha256, never the token itself.

    Example:
        >>> ApiToken(name="ana", token_sha256="ab" * 32).active
        True
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Who the token belongs to; recorded as the actor of their commands.")
    token_sha256: str = Field(description="Hex sha256 of the token.")
    created_at: float = Field(default_factory=time.time, description="Unix time it was created.")
    revoked_at: float | None = Field(None, description="Unix time it was revoked; None while it is valid.")

    @property
    def active(self) -> bool:
        """True until the token is revoked."""
        return self.revoked_at is None


class OffsetReset(BaseModel):
    """An explicit, recorded move of stored offsets (the only way they may go backwards)."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(description="Consumer group.")
    topic: str = Field(description="Topic.")
    partition: int = Field(ge=0, description="Partition.")
    previous: int | None = Field(description="Stored next offset before the reset; None if there was none.")
    offset: int = Field(ge=0, description="Next offset after the reset.")
    reason: str = Field(description="Why, e.g. 'topic recreated'.")
    actor: str = Field(description="Who asked.")
    at: float = Field(default_factory=time.time, description="Unix time of the reset.")


def scheduled_run_id(spec_name: str, slot: float) -> str:
    """The run id of a schedule slot that fired with no open window (the latest window trained again).

    Example:
        >>> scheduled_run_id("sales", 1795660800.0) == scheduled_run_id("sales", 1795660800.0)
        True
        >>> scheduled_run_id("sales", 1795660800.0).startswith("r-")
        True
    """
    body = json.dumps({"schedule": spec_name, "slot": round(slot, 3)}, sort_keys=True)
    return "r-" + hashlib.sha256(body.encode()).hexdigest()[:16]
