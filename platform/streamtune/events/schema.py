"""The data-arrival event: the message that says new data landed."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamtune.config._format import format_validation_error
from streamtune.errors import EventError

MAX_EVENT_BYTES = 1_000_000
"""Largest event (its JSON value) accepted: an event names files; inline rows are for small batches."""


class DataArrival(BaseModel):
    """New data landed for a dataset.

    Either ``uris`` (Parquet files) or inline ``rows`` must be given.

    Example:
        >>> ev = DataArrival(dataset="sales", uris=["/data/sales/part-0.parquet"], num_rows=500)
        >>> DataArrival.from_bytes(ev.to_bytes()).num_rows
        500
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, description="Unique event id.")
    dataset: str = Field(min_length=1, description="Dataset name; matches JobSpec dataset.name.")
    uris: list[str] = Field(default_factory=list, description="Parquet files holding the new rows.")
    rows: list[dict[str, Any]] | None = Field(None, description="Inline rows, for small batches.")
    num_rows: int = Field(ge=0, description="Rows the event adds.")
    schema_fingerprint: str | None = Field(None, description="Fingerprint of the files' Arrow schema.")
    produced_at: float = Field(default_factory=time.time, description="Unix time the producer sent it.")

    @model_validator(mode="after")
    def _has_data(self) -> DataArrival:
        if not self.uris and not self.rows:
            raise ValueError("an event needs 'uris' or 'rows'")
        return self

    def to_bytes(self) -> bytes:
        """JSON-encode for Kafka."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None, *, max_bytes: int = MAX_EVENT_BYTES) -> DataArrival:
        """Decode a Kafka value, raising :class:`EventError` that says what is wrong.

        A good value takes one pass of pydantic's JSON parser; only a bad one is parsed again to say why.

        Example:
            >>> DataArrival.from_bytes(b"not json")  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            streamtune.errors.EventError: event is not valid JSON: ...
            >>> DataArrival.from_bytes(b"x" * 20, max_bytes=10)  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            streamtune.errors.EventError: event is 20 bytes; events may be at most 10 bytes
        """
        if raw is None:
            raise EventError("event has no value (a tombstone); expected a JSON DataArrival")
        if len(raw) > max_bytes:
            raise EventError(f"event is {len(raw)} bytes; events may be at most {max_bytes} bytes",
                             fix="put the rows in a Parquet file and send its URI")
        try:
            return cls.model_validate_json(raw)
        except (ValidationError, ValueError):
            return cls._from_bytes_slow(raw)

    @classmethod
    def _from_bytes_slow(cls, raw: bytes) -> DataArrival:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventError(f"event is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EventError(f'Got "{type(data).__name__}" for the event; must be a JSON object')
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = format_validation_error(exc, prefix="event")
            raise EventError(err.headline, fix=err.fix) from None
