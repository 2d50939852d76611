"""The in-memory ScriptedSource the ingest unit tests use runs the EventSource conformance suite too."""

from __future__ import annotations

import uuid

import pytest

from conformance.event_source_suite import EventSourceConformance, ScriptedLog, ScriptedSource


class _ScriptedStream:
    def __init__(self) -> None:
        self.log, self.topic = ScriptedLog(), f"t-{uuid.uuid4().hex[:6]}"

    def append(self, values):
        self.log.append(self.topic, values, key=b"sales")

    def open(self, start_offsets=None, group=None):
        return ScriptedSource(self.log, [self.topic], group or uuid.uuid4().hex, start_offsets)

    def dead_letters(self):
        return [(lt.value, dict(lt.headers())) for lt in self.log.dead]


class TestScriptedSourceConformance(EventSourceConformance):
    @pytest.fixture
    def stream(self) -> _ScriptedStream:
        return _ScriptedStream()
