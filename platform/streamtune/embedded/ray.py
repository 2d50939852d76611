"""A local Ray for the laptop mode and the tests: in-process, or a detached head node for ``streamtune up``.

Example:
    >>> from streamtune.config.settings import Settings
    >>> ray_ = LocalRay(Settings.from_env())  # doctest: +SKIP
    >>> ray_.start(); ray_.settings.jobs_url   # doctest: +SKIP
    'http://127.0.0.1:8265'
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

from streamtune.config.settings import Settings
from streamtune.errors import ServiceError
from streamtune.runtime.ray import NAMESPACE, join_ray, quiet_ray_logs, ray_bin, ray_token_file, start_serve_proxy

log = logging.getLogger(__name__)


class LocalRay:
    """Start (or join) Ray, with the Jobs API (dashboard) and Ray Serve's HTTP proxy on 127.0.0.1.

    With ``settings.ray_address`` set it joins that cluster; otherwise it starts one. ``detached=False``
    starts Ray inside this process (it ends with the process); ``detached=True`` runs ``ray start --head``
    so the cluster outlives the CLI call (``streamtune up`` / ``down``), with Ray's token auth on and the token
    kept under ``STREAMTUNE_HOME/ray/auth_token``.

    Example:
        >>> LocalRay(Settings(home="/tmp/st"), detached=True).detached
        True
    """

    def __init__(self, settings: Settings, *, detached: bool = False) -> None:
        self.settings = settings
        self.detached = detached
        self.started_here = False

    @property
    def jobs_url(self) -> str:
        """URL of the Ray Jobs API."""
        return self.settings.jobs_url

    def start(self) -> None:
        """Start (or connect to) Ray, then start Serve's HTTP proxy. Idempotent.

        A cluster started here runs Ray Jobs with this interpreter as ``python``: its folder goes first on the
        PATH the cluster inherits (sweep jobs call ``python`` as a cluster has it, never a path of ours).
        """
        if self.settings.ray_address is None:
            _interpreter_first_on_path()
        if self.settings.ray_address is None and self.detached:
            self._start_head()
        if self.settings.ray_address is None and not self.detached:
            import ray

            if not ray.is_initialized():
                self._init_in_process()
        else:
            join_ray(self.settings)
        start_serve_proxy(self.settings)

    def _init_in_process(self) -> None:
        import ray

        ray.init(
            num_cpus=self.settings.ray_num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=self.settings.dashboard_port,
            namespace=NAMESPACE,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
        quiet_ray_logs()
        self.started_here = True

    def _start_head(self) -> None:
        cmd = [
            ray_bin(), "start", "--head", f"--port={self.settings.ray_port}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.settings.dashboard_port}",
            "--include-dashboard=true", "--disable-usage-stats",
        ]
        if self.settings.ray_num_cpus:
            cmd.append(f"--num-cpus={self.settings.ray_num_cpus}")
        token = _ensure_token(ray_token_file(self.settings))
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        env.pop("RAY_AUTH_TOKEN", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 and "already" not in proc.stderr + proc.stdout:
            raise ServiceError(
                f"ray start --head failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
                fix="run `ray stop` and try again, or set STREAMTUNE_RAY_ADDRESS to an existing cluster",
            )
        self.started_here = True

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
            subprocess.run([ray_bin(), "stop"], capture_output=True)


def _ensure_token(path: Path) -> Path:
    """The cluster's Ray auth token under the home: made once (256 random bits), readable by its owner only."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path


def _interpreter_first_on_path() -> None:
    here = os.path.dirname(sys.executable)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != here:
        os.environ["PATH"] = os.pathsep.join([here, *[p for p in parts if p != here]])
