"""Commands: the only write a caller makes. The active controller carries each one out and records the outcome.

A caller (the SDK, the CLI, later the HTTP API) appends a command with who asked and why; the controller, the
single writer of specs, runs, aliases and serving state, executes pending commands in order and records
``succeeded`` or ``failed`` with an outcome. Every command is idempotent, so a controller that crashed while
running one simply runs it again after a failover.

Example:
    >>> rec = CommandRecord(id="c-1", command=Promote(model="ctr", version=2), actor="ana", reason="hotfix")
    >>> rec.command.describe(), rec.status.value
    ('promote ctr v2', 'pending')
    >>> CommandRecord.model_validate({"id": "c-2", "command": {"kind": "cancel", "run_id": "r-9"},
    ...                              "actor": "bo"}).command.describe()
    'cancel run r-9'
"""

from __future__ import annotations

import time
import uuid
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamtune.config.jobspec import JobSpec
from streamtune.serving.records import SwapReport

__all__ = [
    "ApproveRun", "CancelRun", "Command", "CommandOutcome", "DeleteSpec", "CommandRecord", "CommandStatus",
    "PauseSpec", "Promote",
    "Replay", "ResumeSpec", "RetryRun", "Rollback", "RunNow", "SubmitSpec", "new_command_id",
]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def describe(self) -> str:
        """A short human description, e.g. ``promote ctr v2``."""
        raise NotImplementedError


class SubmitSpec(_Command):
    """Store (or replace) a JobSpec; the controller starts watching its topic."""

    kind: Literal["submit"] = Field("submit", description="Command kind.")
    spec: JobSpec = Field(description="The JobSpec to store.")

    def describe(self) -> str:
        return f"submit spec {self.spec.name}"


class PauseSpec(_Command):
    """Stop starting runs of a spec; its windows still close into pending runs."""

    kind: Literal["pause"] = Field("pause", description="Command kind.")
    spec: str = Field(description="Spec name.")

    def describe(self) -> str:
        return f"pause spec {self.spec}"


class ResumeSpec(_Command):
    """Start runs of a paused spec again, oldest pending first."""

    kind: Literal["resume"] = Field("resume", description="Command kind.")
    spec: str = Field(description="Spec name.")

    def describe(self) -> str:
        return f"resume spec {self.spec}"


class DeleteSpec(_Command):
    """Remove a spec: its topic stops being watched for it and its open window is discarded.

    Its runs, model versions and aliases stay in the registry. Refused while a run of it is in flight
    (submitted, running, or passed the gate and being promoted) unless ``force``, which stops that run's Ray Job
    and cancels it; pending runs are cancelled either way.

    Example:
        >>> DeleteSpec(spec="ctr", force=True).describe()
        'delete spec ctr (force)'
    """

    kind: Literal["delete_spec"] = Field("delete_spec", description="Command kind.")
    spec: str = Field(description="Spec name.")
    force: bool = Field(False, description="Stop and cancel a run in flight instead of refusing.")

    def describe(self) -> str:
        return f"delete spec {self.spec}" + (" (force)" if self.force else "")


class Promote(_Command):
    """Hot-swap a registered version into serving and make it the champion."""

    kind: Literal["promote"] = Field("promote", description="Command kind.")
    model: str = Field(description="Model (spec) name.")
    version: int = Field(ge=1, description="Registered version to serve.")

    def describe(self) -> str:
        return f"promote {self.model} v{self.version}"


class Rollback(_Command):
    """Swap back to the champion before the current one."""

    kind: Literal["rollback"] = Field("rollback", description="Command kind.")
    model: str = Field(description="Model (spec) name.")

    def describe(self) -> str:
        return f"rollback {self.model}"


class CancelRun(_Command):
    """End a run that has not passed the gate yet; its Ray Job is stopped."""

    kind: Literal["cancel"] = Field("cancel", description="Command kind.")
    run_id: str = Field(description="Run to cancel.")

    def describe(self) -> str:
        return f"cancel run {self.run_id}"


class RunNow(_Command):
    """Start a manual run over the data of the spec's most recent window (reason ``manual``)."""

    kind: Literal["run_now"] = Field("run_now", description="Command kind.")
    spec: str = Field(description="Spec name.")

    def describe(self) -> str:
        return f"run {self.spec} now"


class Replay(_Command):
    """Rebuild a spec's windows from Kafka's retained history, with a consumer of its own, as replay runs.

    The controller reads the spec's topic from ``from_offset`` (every partition) or from the first record at or
    after ``from_time``, up to the end offsets when the replay starts, and closes windows by the spec's
    ``min_rows`` (the last, partial one at the end). Replay runs get ids of their own (from the replay's command
    id and the offsets), reason ``replay``, and skip live deduplication: they never collide with live windows,
    never move the live offsets, and mark nothing as seen.

    Example:
        >>> Replay(spec="sales", from_offset=0).describe()
        'replay sales from offset 0'
        >>> Replay(spec="sales")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        pydantic_core._pydantic_core.ValidationError: 1 validation error for Replay
        ...exactly one of from_offset and from_time...
    """

    kind: Literal["replay"] = Field("replay", description="Command kind.")
    spec: str = Field(description="Spec name.")
    from_offset: int | None = Field(None, ge=0, description="First offset read, in every partition of the topic.")
    from_time: float | None = Field(
        None, ge=0, description="Read from the first record at or after this Unix time (Kafka record timestamps)."
    )

    @model_validator(mode="after")
    def _one_start(self) -> Replay:
        if (self.from_offset is None) == (self.from_time is None):
            raise ValueError("a replay starts at exactly one of from_offset and from_time")
        return self

    def describe(self) -> str:
        start = f"offset {self.from_offset}" if self.from_offset is not None else f"time {self.from_time:.0f}"
        return f"replay {self.spec} from {start}"


class RetryRun(_Command):
    """Start a new attempt of a failed run at once (a new Ray Job over the same window)."""

    kind: Literal["retry"] = Field("retry", description="Command kind.")
    run_id: str = Field(description="The failed run to retry.")

    def describe(self) -> str:
        return f"retry run {self.run_id}"


class ApproveRun(_Command):
    """Approve a run that passed the gate under ``promotion: manual``; it is then promoted, the approver recorded.

    Example:
        >>> ApproveRun(run_id="r-1").describe()
        'approve run r-1'
    """

    kind: Literal["approve"] = Field("approve", description="Command kind.")
    run_id: str = Field(description="The run awaiting approval.")

    def describe(self) -> str:
        return f"approve run {self.run_id}"


Command = Annotated[
    SubmitSpec | PauseSpec | ResumeSpec | DeleteSpec | Promote | Rollback | CancelRun | RunNow | RetryRun
    | ApproveRun | Replay,
    Field(discriminator="kind"),
]
"""Any command; the ``kind`` field tells which."""


class CommandStatus(str, Enum):  # noqa: UP042 -- a str Enum keeps JSON and SQL plain
    """Where a command stands: ``pending`` → ``running`` → ``succeeded`` | ``failed``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CommandOutcome(BaseModel):
    """What the controller did for a command."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="One line saying what was done.")
    run_id: str | None = Field(None, description="The run the command created or changed, if any.")
    version: int | None = Field(None, description="The model version now serving, if the command swapped.")
    swap: SwapReport | None = Field(None, description="The hot-swap's report, if the command swapped.")


class CommandRecord(BaseModel):
    """One command as the registry keeps it: what was asked, by whom and why, and what came of it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Command id (c- and 16 hex digits).")
    command: Command = Field(description="What was asked.")
    actor: str = Field(description="Who asked (user name, or 'controller' for its own commands).")
    reason: str = Field("", description="Why they asked.")
    status: CommandStatus = Field(CommandStatus.PENDING, description="Where the command stands.")
    outcome: CommandOutcome | None = Field(None, description="What the controller did, once it succeeded.")
    error: str | None = Field(None, description="Why it failed, once it failed.")
    controller: str | None = Field(None, description="The controller (lease holder) that carried it out.")
    created_at: float = Field(default_factory=time.time, description="Unix time it was appended.")
    started_at: float | None = Field(None, description="Unix time the controller picked it up.")
    finished_at: float | None = Field(None, description="Unix time it succeeded or failed.")

    @property
    def done(self) -> bool:
        """True once the command succeeded or failed."""
        return self.status in (CommandStatus.SUCCEEDED, CommandStatus.FAILED)


def new_command_id() -> str:
    """A fresh command id.

    Example:
        >>> new_command_id().startswith("c-") and len(new_command_id()) == 18
        True
    """
    return "c-" + uuid.uuid4().hex[:16]
