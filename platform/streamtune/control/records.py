"""Typed records the control-plane interface returns besides the registry's own.

Example:
    >>> Prediction(version=2, predictions=[1.5]).version
    2
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishedEvent(_Record):
    """Where a published event landed."""

    event_id: str = Field(description="The event's id.")
    topic: str = Field(description="Topic it was sent to.")
    partition: int = Field(description="Partition it landed in.")
    offset: int = Field(description="Its offset there.")


class RunLogs(_Record):
    """The Ray Job log of one attempt of a run.

    Example:
        >>> RunLogs(run_id="r-1", attempt=2, submission_id="r-1-a2", text="ValueError: boom").submission_id
        'r-1-a2'
    """

    run_id: str = Field(description="The run.")
    attempt: int = Field(ge=1, description="Which attempt (1 for the first).")
    submission_id: str = Field(description="The attempt's Ray Job id.")
    error: str | None = Field(None, description="Why the attempt failed, if it did and has ended.")
    text: str = Field(description="The job's driver log.")


class Prediction(_Record):
    """A model's answer to a batch of rows."""

    version: int | str = Field(description="The model version that answered.")
    predictions: list[Any] = Field(description="One prediction per row, in order.")


class ControllerStatus(_Record):
    """The active controller, as its lease tells."""

    holder: str = Field(description="Id of the controller that holds (or last held) the lease.")
    token: int = Field(description="Its fencing token.")
    active: bool = Field(description="False once the lease has lapsed (no controller is working).")
    acquired_at: float = Field(description="Unix time it took the lease.")
    expires_in_s: float = Field(description="Seconds until the lease lapses unless renewed (negative: lapsed).")


class SpecStatus(_Record):
    """One spec at a glance."""

    name: str = Field(description="Spec (model) name.")
    dataset: str = Field(description="Dataset it trains on.")
    topic: str = Field(description="Topic it watches.")
    app: str = Field(description="Serve app that serves it.")
    paused: bool = Field(description="True while no new run starts.")
    champion: int | None = Field(description="Version the champion alias points at: what serving should answer with.")
    active_run: str | None = Field(description="The run in flight, if any.")
    active_status: str | None = Field(description="Its status.")
    pending_runs: int = Field(description="Runs waiting to start.")
    queue_depth: int = Field(0, description="Runs of this spec not ended yet: pending, plus the one in flight.")
    state: str = Field("active", description="active, paused, or error (the controller could not advance it).")
    error: str | None = Field(None, description="Why the controller could not advance it the last time.")
    failures: int = Field(0, description="Failed turns in a row; the backoff doubles with each.")
    retry_at: float | None = Field(None, description="Unix time the controller tries it again after an error.")


class ControlStatus(_Record):
    """The control plane at a glance: the controller, every spec, and the command queue."""

    controller: ControllerStatus | None = Field(description="The lease; None if no controller ever ran.")
    specs: list[SpecStatus] = Field(description="Every spec, by name.")
    pending_commands: int = Field(description="Commands not yet carried out.")
    registry: str = Field(description="The registry this status was read from.")
