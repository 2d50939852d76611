"""A local Ray for the laptop mode and the tests: in-process, or a detached cluster for ``streamtune up``.

A detached cluster is a head node (``ray start --head``) plus ``workers`` worker nodes on this machine
(``ray start --address=...``), all with Ray's token auth. Every node has a custom resource naming it
(:func:`node_resource`: ``streamtune_node_head``, ``streamtune_node_w1``, ...) and the head also has
:data:`HEAD_RESOURCE`, so work can be pinned to a node. Several nodes fit on one machine because each worker
node gets ports of its own (node manager, object manager, dashboard agent, metrics, runtime-env agent) and a
worker-port range of its own; they are kept in ``STREAMTUNE_HOME/ray/nodes.json``.

Example:
    >>> from streamtune.config.settings import Settings
    >>> ray_ = LocalRay(Settings.from_env(), detached=True, workers=1)  # doctest: +SKIP
    >>> ray_.start(); ray_.settings.jobs_url   # doctest: +SKIP
    'http://127.0.0.1:8265'
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from streamtune.config.settings import Settings
from streamtune.errors import ConfigError, ServiceError
from streamtune.runtime.ray import NAMESPACE, join_ray, quiet_ray_logs, ray_bin, ray_token_file, start_serve_proxy

log = logging.getLogger(__name__)

HEAD_RESOURCE = "streamtune_head"
"""A custom resource only the head of a local cluster has (100 units): ask for a little to run on the head."""
MAX_WORKERS = 8
WORKER_PORTS_FROM = 20000
"""Worker node ``i`` starts its worker processes on ports ``20000 + 1000 * (i - 1)`` and up (999 of them); the
head keeps Ray's default range (10002-19999)."""
_PORT_FLAGS = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
               "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")


def node_resource(name: str) -> str:
    """The custom resource (1 unit) that names a node of a local cluster.

    Example:
        >>> node_resource("head"), node_resource("w1")
        ('streamtune_node_head', 'streamtune_node_w1')
    """
    return f"streamtune_node_{name}"


class LocalNode(BaseModel):
    """One node of a local cluster: its name, custom resources and (for a worker) the ports it owns.

    Example:
        >>> node = LocalNode.worker(2, ports={f: 40000 + i for i, f in enumerate(_PORT_FLAGS)})
        >>> node.name, node.resources, node.ports["min-worker-port"], node.ports["max-worker-port"]
        ('w2', {'streamtune_node_w2': 1.0}, 21000, 21999)
        >>> node.flags()[:2]
        ['--node-manager-port=40000', '--object-manager-port=40001']
    """

    name: str = Field(description="'head', or 'w<i>' for worker node i.")
    resources: dict[str, float] = Field(description="Custom resources the node offers.")
    ports: dict[str, int] = Field(default_factory=dict, description="`ray start` port flag -> port (workers).")

    @classmethod
    def head(cls) -> LocalNode:
        """The head: its node resource and :data:`HEAD_RESOURCE` (Ray picks its ports)."""
        return cls(name="head", resources={node_resource("head"): 1.0, HEAD_RESOURCE: 100.0})

    @classmethod
    def worker(cls, index: int, ports: dict[str, int] | None = None) -> LocalNode:
        """Worker node ``index`` (1-based), with free ports (or ``ports``) and its worker-port range."""
        name = f"w{index}"
        chosen = dict(ports) if ports is not None else {flag: _free_port() for flag in _PORT_FLAGS}
        low = WORKER_PORTS_FROM + 1000 * (index - 1)
        chosen.update({"min-worker-port": low, "max-worker-port": low + 999})
        return cls(name=name, resources={node_resource(name): 1.0}, ports=chosen)

    def flags(self) -> list[str]:
        """The node's ``ray start`` flags for its ports."""
        return [f"--{flag}={port}" for flag, port in self.ports.items()]


def read_nodes(settings: Settings) -> list[LocalNode]:
    """The nodes the last ``LocalRay(..., detached=True).start()`` under this home started (head first)."""
    path = _nodes_file(settings)
    if not path.is_file():
        return []
    return [LocalNode.model_validate(node) for node in json.loads(path.read_text())]


class LocalRay:
    """Start (or join) Ray, with the Jobs API (dashboard) and Ray Serve's HTTP proxy on 127.0.0.1.

    With ``settings.ray_address`` set it joins that cluster; otherwise it starts one. ``detached=False``
    starts Ray inside this process (it ends with the process); ``detached=True`` runs ``ray start --head``
    (plus ``workers`` worker nodes) so the cluster outlives the CLI call (``streamtune up`` / ``down``), with
    Ray's token auth on and the token kept under ``STREAMTUNE_HOME/ray/auth_token``.

    Example:
        >>> LocalRay(Settings(home="/tmp/st"), detached=True, workers=2).workers
        2
        >>> LocalRay(Settings(home="/tmp/st"), workers=1)
        Traceback (most recent call last):
        ...
        streamtune.errors.ConfigError: Got 1 worker nodes for an in-process Ray; worker nodes need a detached ...
    """

    def __init__(self, settings: Settings, *, detached: bool = False, workers: int = 0) -> None:
        if not 0 <= workers <= MAX_WORKERS:
            raise ConfigError(f"Got {workers} for workers; a local cluster has 0 to {MAX_WORKERS} worker nodes")
        if workers and not detached:
            raise ConfigError(f"Got {workers} worker nodes for an in-process Ray; worker nodes need a detached "
                              "cluster (streamtune up --workers N)")
        if workers and settings.ray_address is not None:
            raise ConfigError(f"Got {workers} worker nodes with STREAMTUNE_RAY_ADDRESS={settings.ray_address}; "
                              "worker nodes are started for a local cluster only",
                              fix="unset STREAMTUNE_RAY_ADDRESS, or add nodes to that cluster its own way")
        self.settings = settings
        self.detached = detached
        self.workers = workers
        self.started_here = False

    @property
    def jobs_url(self) -> str:
        """URL of the Ray Jobs API."""
        return self.settings.jobs_url

    def start(self) -> None:
        """Start (or connect to) Ray, then start Serve's HTTP proxy. Idempotent.

        A cluster started here runs Ray Jobs with this interpreter as ``python``: its folder goes first on the
        PATH the cluster's nodes inherit (sweep jobs call ``python`` as a cluster has it, never a path of ours).
        Its Serve proxy runs on the head only: the nodes share this machine's address, so a proxy per node
        would contend for one port.
        """
        local = self.settings.ray_address is None
        if local:
            _interpreter_first_on_path()
        if local and self.detached:
            self._start_head()
        if local and not self.detached:
            import ray

            if not ray.is_initialized():
                self._init_in_process()
        else:
            join_ray(self.settings)
        if local and self.detached:
            self._start_workers()
            _serve_on_head(self.settings)
        start_serve_proxy(self.settings)

    def _init_in_process(self) -> None:
        import ray

        try:
            ray.init(
                address="local",  # a new cluster of our own, never whatever /tmp/ray/ray_current_cluster names
                num_cpus=self.settings.ray_num_cpus,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=self.settings.dashboard_port,
                namespace=NAMESPACE,
                log_to_driver=False,
                configure_logging=True,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ServiceError(
                f"Could not start an in-process Ray: {str(exc).splitlines()[0]}",
                fix="another Ray may be running on this machine (`ray status`): stop it (`streamtune down`), "
                "or set STREAMTUNE_RAY_ADDRESS to use it",
            ) from None
        quiet_ray_logs()
        self.started_here = True

    def _start_head(self) -> None:
        head = LocalNode.head()
        cmd = [
            ray_bin(), "start", "--head", f"--port={self.settings.ray_port}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.settings.dashboard_port}",
            "--include-dashboard=true", "--disable-usage-stats", f"--resources={json.dumps(head.resources)}",
        ]
        proc = self._ray_start(cmd)
        if proc.returncode != 0 and "already" not in proc.stderr + proc.stdout:
            raise ServiceError(
                f"ray start --head failed: {_last_line(proc)}",
                fix="run `ray stop` and try again, or set STREAMTUNE_RAY_ADDRESS to an existing cluster",
            )
        if proc.returncode == 0:
            _write_nodes(self.settings, [head])
        self.started_here = True

    def _start_workers(self) -> None:
        """Start the worker nodes the cluster lacks (a node named by its resource is alive), then wait for all."""
        alive = _alive_resources()
        nodes = read_nodes(self.settings) or [LocalNode.head()]
        started: list[str] = []
        for index in range(1, self.workers + 1):
            node = LocalNode.worker(index)
            if node_resource(node.name) in alive:
                continue
            cmd = [ray_bin(), "start", f"--address={self.settings.ray_join_address}", "--disable-usage-stats",
                   f"--resources={json.dumps(node.resources)}", *node.flags()]
            proc = self._ray_start(cmd)
            if proc.returncode != 0:
                raise ServiceError(f"ray start of worker node {node.name} failed: {_last_line(proc)}",
                                   fix="run `streamtune down` (or `ray stop`) and try again")
            nodes = [n for n in nodes if n.name != node.name] + [node]
            started.append(node.name)
        _write_nodes(self.settings, nodes)
        _wait_nodes([node_resource(f"w{i}") for i in range(1, self.workers + 1)], timeout_s=60)
        if started:
            log.info("started worker nodes %s", ", ".join(started))

    def _ray_start(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        """Run ``ray start`` with the cluster's token auth (every node needs the same token) and CPU count."""
        if self.settings.ray_num_cpus:
            cmd.append(f"--num-cpus={self.settings.ray_num_cpus}")
        token = _ensure_token(ray_token_file(self.settings))
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        env.pop("RAY_AUTH_TOKEN", None)
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    def stop(self) -> None:
        """Shut down what :meth:`start` started (Serve apps end with the cluster).

        A detached cluster is stopped with ``ray stop``, which ends every Ray node on this machine.
        """
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
            _nodes_file(self.settings).unlink(missing_ok=True)


def _serve_on_head(settings: Settings) -> None:
    """Start Serve (if not yet running) with its HTTP proxy on the head node only."""
    from ray import serve

    serve.start(proxy_location="HeadOnly", http_options={"host": settings.serve_host, "port": settings.serve_port})


def _alive_resources() -> set[str]:
    import ray

    return {name for node in ray.nodes() if node.get("Alive") for name in node.get("Resources", {})}


def _wait_nodes(resources: list[str], timeout_s: float) -> None:
    """Wait until a live node offers each of ``resources``."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [r for r in resources if r not in _alive_resources()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"worker nodes with {', '.join(missing)} did not join within {timeout_s:.0f}s",
                               fix="see raylet.*.out under /tmp/ray/session_latest/logs")
        time.sleep(0.25)


def _nodes_file(settings: Settings) -> Path:
    return settings.home / "ray" / "nodes.json"


def _write_nodes(settings: Settings, nodes: list[LocalNode]) -> None:
    path = _nodes_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([node.model_dump() for node in nodes], indent=1))


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
