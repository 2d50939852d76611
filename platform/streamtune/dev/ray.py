"""A local Ray for the demo and the tests: in-process, or a detached head node for ``streamtune up``."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from streamtune.config.settings import Settings
from streamtune.errors import ServiceError

log = logging.getLogger(__name__)


class LocalRay:
    """Start or join Ray, with the Jobs API (dashboard) and Ray Serve's HTTP proxy on 127.0.0.1.

    With ``settings.ray_address`` set it joins that cluster; otherwise it starts one. ``detached=False``
    starts Ray inside this process (it ends with the process); ``detached=True`` runs ``ray start --head``
    so the cluster outlives the CLI call (``streamtune up`` / ``down``).

    Example:
        >>> ray_ = LocalRay(Settings.from_env())  # doctest: +SKIP
        >>> ray_.start(); ray_.jobs_url            # doctest: +SKIP
        'http://127.0.0.1:8265'
    """

    def __init__(self, settings: Settings, *, detached: bool = False) -> None:
        self.settings = settings
        self.detached = detached
        self.started_here = False

    @property
    def jobs_url(self) -> str:
        """URL of the Ray Jobs API."""
        address = self.settings.ray_address
        if address and address.startswith("http"):
            return address
        host = address.removeprefix("ray://").rsplit(":", 1)[0] if address and address != "auto" else "127.0.0.1"
        return f"http://{host}:{self.settings.dashboard_port}"

    def start(self) -> None:
        """Start (or connect to) Ray, then start Serve's HTTP proxy. Idempotent."""
        address = self.settings.ray_address
        if address is None and self.detached:
            self._start_head()
            address = f"127.0.0.1:{self.settings.ray_port}"
        if address is not None:
            _use_token_auth_if_available()  # must happen before ray is imported in this process
        import ray

        if not ray.is_initialized():
            if address is None:
                self._init_in_process()
            else:
                ray.init(address=address, namespace="streamtune", log_to_driver=False)
        self._start_serve()
        quiet_ray_logs()

    def _init_in_process(self) -> None:
        import ray

        ray.init(
            num_cpus=self.settings.ray_num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=self.settings.dashboard_port,
            namespace="streamtune",
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
        self.started_here = True

    def _start_head(self) -> None:
        cmd = [
            _ray_bin(), "start", "--head", f"--port={self.settings.ray_port}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.settings.dashboard_port}",
            "--include-dashboard=true", "--disable-usage-stats",
        ]
        if self.settings.ray_num_cpus:
            cmd.append(f"--num-cpus={self.settings.ray_num_cpus}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 and "already" not in proc.stderr + proc.stdout:
            raise ServiceError(
                f"ray start --head failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
                fix="run `ray stop` and try again, or set STREAMTUNE_RAY_ADDRESS to an existing cluster",
            )
        self.started_here = True

    def _start_serve(self) -> None:
        from ray import serve

        serve.start(http_options={"host": "127.0.0.1", "port": self.settings.serve_port})
        # /-/healthz answers 503 until an app is deployed; any HTTP answer means the proxy is listening.
        _wait_http(f"http://127.0.0.1:{self.settings.serve_port}/-/routes", 60)

    def stop(self) -> None:
        """Shut down what :meth:`start` started (Serve apps end with the cluster)."""
        import ray

        if ray.is_initialized() and self.started_here and not self.detached:
            from ray import serve

            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        elif self.detached:
            if ray.is_initialized():
                ray.shutdown()
            subprocess.run([_ray_bin(), "stop"], capture_output=True)


def _ray_bin() -> str:
    """The ``ray`` CLI of this interpreter's environment (a venv's bin/ need not be on PATH)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.is_file() else (shutil.which("ray") or "ray")


def _use_token_auth_if_available() -> None:
    # Ray 2.60's ray.init(address="host:port") does not send the auth token that `ray start` enabled (an
    # address of "auto" does); RAY_AUTH_MODE=token, set before ray is imported, makes it send the saved token.
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
