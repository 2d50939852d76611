"""Session fixture: one real Kafka broker for the whole test session.

Uses ``STREAMTUNE_KAFKA_BOOTSTRAP`` when set; otherwise starts a local KRaft broker (``LocalKafka``) under a
session temp dir, on a free port, and stops it when the session ends.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from streamtune.config.settings import Settings
from streamtune.embedded.kafka import LocalKafka


def _free_port_pair() -> int:
    """A free port whose successor (the controller listener) is free too."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports found for the test Kafka broker")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka broker that lives for the whole session."""
    external = os.environ.get("STREAMTUNE_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    home = tmp_path_factory.mktemp("kafka-home")
    kafka = LocalKafka(Settings(home=home, kafka_port=_free_port_pair()))
    try:
        yield kafka.start(timeout=120)
    finally:
        kafka.stop()
