"""Unit tests are pure logic: no Ray, no Kafka. Starting Ray here is an error."""

import pytest


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch):
    import sys

    ray = sys.modules.get("ray")
    if ray is not None:
        def _refuse(*a, **k):
            raise RuntimeError("unit tests must not start Ray; put this test under tests/integration")

        monkeypatch.setattr(ray, "init", _refuse)
    yield
