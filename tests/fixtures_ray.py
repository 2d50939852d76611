"""Session fixture: one real, in-process local Ray (with Serve's HTTP proxy) for the whole test session.

Ports come from the OS so that it never collides with another Ray on the same machine (8000/8265 are left
alone), and the cluster lives under the session's temp dir.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamtune.config.settings import Settings
from streamtune.embedded.ray import LocalRay


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_services(tmp_path_factory: pytest.TempPathFactory, s3_bucket: str) -> Iterator[Settings]:
    """Settings of a local Ray started in this process (dashboard + Serve proxy on free ports)."""
    dashboard_port = free_port()
    serve_port = free_port()
    while serve_port == dashboard_port:
        serve_port = free_port()
    settings = Settings(
        home=tmp_path_factory.mktemp("streamtune-ray"),
        dashboard_port=dashboard_port,
        serve_port=serve_port,
        ray_num_cpus=2,
    )
    local = LocalRay(settings)
    local.start()
    try:
        yield settings
    finally:
        local.stop()


def stored_code(package: Path, root: Path) -> str:
    """Store a job package in an artifact store under ``root`` the way submit does; return its URI."""
    from streamtune.artifacts import ArtifactStore, pack_code, store_code

    return store_code(ArtifactStore(str(root)), pack_code(package))

