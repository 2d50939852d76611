"""Session fixture: one real multi-node Ray cluster on this machine (head + worker node, Serve's HTTP proxy).

It is started by the code that ``streamtune up --workers 1`` runs (``LocalRay(detached=True, workers=1)``):
``ray start --head`` and ``ray start --address=...`` with token auth, 2 logical CPUs per node, a custom resource
per node (``streamtune_node_head``, ``streamtune_node_w1``), and this process joined to it. Ports come from the
OS so that it never collides with a ``streamtune up`` on its defaults (8000/8265 are left alone); the worker
node's own ports are in ``<home>/ray/nodes.json``. ``STREAMTUNE_TEST_RAY_WORKERS`` (default 1) sets how many
worker nodes it has (0: the head alone).

Ray reads ``RAY_AUTH_MODE`` once, when it is imported, so it is set here, before anything imports ray (conftest
imports this module before collecting tests); the token file's path is set when the fixture joins.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamtune.config.settings import Settings
from streamtune.embedded.ray import LocalRay

os.environ["RAY_AUTH_MODE"] = "token"
WORKERS = int(os.environ.get("STREAMTUNE_TEST_RAY_WORKERS", "1"))
CPUS_PER_NODE = 2


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="session")
def ray_services(tmp_path_factory: pytest.TempPathFactory, s3_bucket: str) -> Iterator[Settings]:
    """Settings of the session's cluster (head + ``WORKERS`` worker nodes; dashboard and Serve on free ports).

    ``s3_bucket`` comes first: its AWS_* variables are in the environment every node starts with.
    """
    ray_port, dashboard_port, serve_port = free_ports(3)
    settings = Settings(
        home=tmp_path_factory.mktemp("streamtune-ray"),
        ray_port=ray_port,
        dashboard_port=dashboard_port,
        serve_port=serve_port,
        ray_num_cpus=CPUS_PER_NODE,
    )
    local = LocalRay(settings, detached=True, workers=WORKERS)
    try:
        local.start()
        yield settings
    finally:
        local.stop()


def stored_code(package: Path, root: Path) -> str:
    """Store a job package in an artifact store under ``root`` the way submit does; return its URI."""
    from streamtune.artifacts import ArtifactStore, pack_code, store_code

    return store_code(ArtifactStore(str(root)), pack_code(package))


def finished_sweep(runner: Any, run_id: str, out: Path, timeout: float = 180, log_lines: int = 60) -> Any:
    """Wait for the sweep Ray Job ``run_id`` to end, assert it succeeded (its log's tail in the failure) and
    return the ``SweepResult`` it wrote under ``out``."""
    import time

    from streamtune.sweeps.schema import SweepResult

    deadline, status = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = runner.status(run_id)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.5)
    assert status == "SUCCEEDED", runner.logs_tail(run_id, log_lines)
    return SweepResult.model_validate_json((out / "result.json").read_text())
