"""Session fixture: a real S3-compatible server (moto's standalone server) for the s3:// artifact store.

It starts before the session's Ray (``ray_services`` depends on it), so the AWS_* variables it sets reach every
Ray worker: trials, job drivers and Serve replicas read and write ``s3://`` through pyarrow, and Ray's
runtime_env fetches ``s3://`` job code with boto3, all against this server. ``STREAMTUNE_TEST_S3_ENDPOINT``
uses an existing server instead (with its own credentials in the environment).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

BUCKET = "streamtune-test"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``s3://streamtune-test``: a bucket on a session S3 server, with AWS_* set for this process and Ray."""
    endpoint = os.environ.get("STREAMTUNE_TEST_S3_ENDPOINT")
    proc = None
    if endpoint is None:
        port = _free_port()
        log = open(tmp_path_factory.mktemp("s3") / "moto.log", "wb")  # noqa: SIM115 - handed to the child
        server = Path(sys.executable).parent / "moto_server"
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
        endpoint = f"http://127.0.0.1:{port}"
        _wait(endpoint, proc)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "streamtune-test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "streamtune-test")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield f"s3://{BUCKET}"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


def _wait(endpoint: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            requests.get(endpoint, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer at {endpoint}")
