"""Request and response bodies of the HTTP API that are not records of their own."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streamtune.events.schema import DataArrival
from streamtune.registry.commands import Command


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommandRequest(_Body):
    """A command for the active controller, and why it is asked for."""

    command: Command = Field(description="What to do; `kind` tells which command.")
    reason: str = Field("", max_length=2000, description="Why; recorded with the command.")


class PublishRequest(_Body):
    """Data-arrival events to send to Kafka."""

    events: list[DataArrival] = Field(min_length=1, description="Events, in order.")
    topic: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Kafka topic (letters, digits, '.', '_', '-'); the default events topic when unset.",
    )


class PredictRequest(_Body):
    """Rows to score."""

    rows: list[dict[str, Any]] = Field(min_length=1, description="One object of column -> value per row.")


class CodeStored(_Body):
    """Where uploaded job code is kept in the platform's artifact store."""

    code_uri: str = Field(description="URI of the stored package; use it as the spec's job.code_uri.")


class Health(_Body):
    """Liveness of this API process."""

    status: str = Field(description='"ok" while the process serves.')
    active: bool = Field(description="True when this process's controller holds the lease.")
