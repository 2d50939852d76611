"""Join a running Ray cluster and make sure Ray Serve's HTTP proxy listens: what production code needs.

Starting a cluster is not done here: :class:`streamtune.embedded.ray.LocalRay` starts one for the laptop
mode, ``ray start`` or KubeRay does it elsewhere.

Example:
    >>> from streamtune.config.settings import Settings
    >>> join_ray(Settings(home="/tmp/st", ray_address="127.0.0.1:6389"))  # doctest: +SKIP
    >>> start_serve_proxy(Settings(home="/tmp/st"))                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from streamtune.config.settings import Settings
from streamtune.errors import ServiceError

NAMESPACE = "streamtune"

__all__ = ["NAMESPACE", "join_ray", "quiet_ray_logs", "ray_bin", "ray_token_file", "start_serve_proxy", "use_ray_token"]


def join_ray(settings: Settings, *, timeout_s: float = 60) -> None:
    """Connect this process to the cluster at ``settings.ray_join_address``; a no-op when connected.

    Raises:
        ServiceError: no cluster answered at that address.
    """
    use_ray_token(settings)  # must happen before ray is imported in this process
    import ray

    if ray.is_initialized():
        return
    address = settings.ray_join_address
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ServiceError(
            f"Could not join Ray at {address}: {exc}",
            fix="start it (streamtune up), or set STREAMTUNE_RAY_ADDRESS to a running cluster",
        ) from None
    quiet_ray_logs()


def start_serve_proxy(settings: Settings, *, timeout_s: float = 60) -> None:
    """Start Ray Serve (idempotent) with its HTTP proxy on ``serve_host:serve_port``, and wait for it."""
    from ray import serve

    serve.start(http_options={"host": settings.serve_host, "port": settings.serve_port})
    # /-/healthz answers 503 until an app is deployed; any HTTP answer means the proxy is listening.
    _wait_http(f"http://{settings.serve_host}:{settings.serve_port}/-/routes", timeout_s)
    quiet_ray_logs()


def ray_bin() -> str:
    """The ``ray`` CLI of this interpreter's environment (a venv's bin/ need not be on PATH)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.is_file() else (shutil.which("ray") or "ray")


def ray_token_file(settings: Settings) -> Path:
    """Where ``streamtune up`` keeps the Ray cluster's auth token (mode 0600)."""
    return settings.home / "ray" / "auth_token"


def use_ray_token(settings: Settings) -> None:
    """Authenticate this process to a token-auth Ray cluster: the home's token, else Ray's default one.

    Call it before ray is imported. Ray 2.60's ``ray.init(address="host:port")`` sends a token only when
    ``RAY_AUTH_MODE=token`` is set; ``RAY_AUTH_TOKEN_PATH`` points it at the home's token. Child processes
    (the Jobs API client, sweep drivers) inherit both.
    """
    ours = ray_token_file(settings)
    if ours.is_file() and "RAY_AUTH_TOKEN" not in os.environ:
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(ours))
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        return
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and (token.is_file() or os.environ.get("RAY_AUTH_TOKEN")):
        os.environ["RAY_AUTH_MODE"] = "token"


def quiet_ray_logs() -> None:
    """Keep Ray's INFO chatter (package uploads, Serve app status) off the console of a CLI command."""
    for name in ("ray", "ray.serve", "ray.dashboard", "ray.dashboard.modules.dashboard_sdk", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _wait_http(url: str, timeout_s: float) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise ServiceError(f"Ray Serve did not answer at {url} within {timeout_s:.0f}s")
