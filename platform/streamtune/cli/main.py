"""The ``streamtune`` command line: typer + rich over the SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from streamtune.config.settings import Settings
from streamtune.errors import StreamtuneError

app = typer.Typer(help="streamtune: event-driven retraining on Kafka, Ray Tune and Ray Serve.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)


def _guard(fn: Callable[[], Any]) -> Any:
    """Run a command: user errors print their headline and fix; bugs print 'internal error' and a traceback."""
    try:
        return fn()
    except StreamtuneError as exc:
        err_console.print(f"[bold red]error:[/] {exc.headline}")
        if exc.fix:
            err_console.print(f"[yellow]fix:[/] {exc.fix}")
        raise typer.Exit(1) from None
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception:
        err_console.print("[bold red]internal error[/] (a bug in streamtune; please report it):")
        err_console.print(traceback.format_exc())
        raise typer.Exit(2) from None


@app.command()
def demo(spec: Path = typer.Option(Path("configs/demo.yaml"), help="JobSpec the demo runs."),
         timeout: float = typer.Option(600, help="Seconds each run may take.")) -> None:
    """Run the whole loop locally: Kafka event -> sweep -> gate -> registry -> hot-swap under load."""
    from streamtune.dev.demo import run_demo

    summary = _guard(lambda: run_demo(Settings.from_env(), spec_path=spec, console=console, timeout_s=timeout))
    raise typer.Exit(0 if summary["ok"] else 1)


@app.command()
def up() -> None:
    """Start a local Kafka broker, a Ray head with Serve, and the controller daemon."""
    def _up() -> None:
        from streamtune.dev.kafka import LocalKafka
        from streamtune.dev.ray import LocalRay

        settings = Settings.from_env()
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        with console.status("starting Kafka"):
            bootstrap = LocalKafka(settings).start()
        with console.status("starting Ray head and Serve"):
            LocalRay(settings, detached=True).start()
        pid = _start_controller(settings)
        console.print(f"Kafka {bootstrap}; Ray jobs http://127.0.0.1:{settings.dashboard_port}; "
                      f"Serve http://127.0.0.1:{settings.serve_port}; controller pid {pid}")
    _guard(_up)


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
        return True
    except OSError:
        return False


@app.command()
def down() -> None:
    """Stop the controller, Ray and the local Kafka broker."""
    def _down() -> None:
        from streamtune.dev.kafka import LocalKafka
        from streamtune.dev.ray import LocalRay

        settings = Settings.from_env()
        pid_file = settings.home / "controller.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
            pid_file.unlink()
        LocalRay(settings, detached=True).stop()
        LocalKafka(settings).stop()
        console.print("stopped")
    _guard(_down)


@app.command()
def kafka() -> None:
    """Run the local Kafka broker in the foreground until Ctrl-C (or reuse one that is already up)."""
    def _kafka() -> None:
        import signal as _signal
        import threading

        from streamtune.dev.kafka import LocalKafka

        broker = LocalKafka(Settings.from_env())
        with console.status("starting Kafka"):
            bootstrap = broker.start()
        console.print(f"Kafka at {bootstrap}; log {broker.log_file}; Ctrl-C stops it")
        done = threading.Event()
        _signal.signal(_signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                if not broker.is_running():
                    raise StreamtuneError(f"the broker stopped; see {broker.log_file}")
        except KeyboardInterrupt:
            pass
        finally:
            broker.stop()
            console.print("Kafka stopped")
    _guard(_kafka)


@app.command()
def submit(spec: Path = typer.Argument(..., help="JobSpec YAML file.")) -> None:
    """Register a JobSpec; the controller starts watching its topic."""
    from streamtune.sdk.client import Client

    def _submit() -> None:
        js = Client(Settings.from_env()).submit(spec)
        console.print(f"submitted [bold]{js.name}[/]: watching topic {js.trigger.topic} for dataset "
                      f"{js.dataset.name} (min_rows {js.trigger.min_rows}, max_wait {js.trigger.max_wait_s:g}s)")
    _guard(_submit)


@app.command()
def runs(spec: str = typer.Option(None, help="Only runs of this JobSpec."),
         limit: int = typer.Option(20, help="How many.")) -> None:
    """List runs, newest first."""
    from streamtune.sdk.client import Client

    def _runs() -> None:
        table = Table("run", "spec", "status", "rows", "trigger", "version", "holdout", "error")
        for r in Client(Settings.from_env()).runs(spec, limit):
            gate = (r.gate or {}).get("numbers") or {}
            table.add_row(r.run_id, r.spec_name, r.status.value, str(r.num_rows), r.reason,
                          str(r.model_version or "-"), str(gate.get("challenger", "-")), (r.error or "")[:60])
        console.print(table)
    _guard(_runs)


@app.command()
def models(name: str = typer.Option(None, help="Only versions of this model.")) -> None:
    """List registered model versions."""
    from streamtune.sdk.client import Client

    def _models() -> None:
        client = Client(Settings.from_env())
        table = Table("model", "version", "run", "metrics", "champion", "artifact")
        for m in client.models(name):
            champ = client.champion(m.name)
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(m.metrics.items(), key=lambda kv: not
                                kv[0].startswith("holdout_")) if isinstance(v, float))
            table.add_row(m.name, str(m.version), m.run_id, metrics,
                          "*" if champ and champ.version == m.version else "", m.artifact_uri)
        console.print(table)
    _guard(_models)


@app.command()
def promote(name: str = typer.Argument(..., help="Model (JobSpec) name."),
            version: int = typer.Argument(..., help="Registered version to serve.")) -> None:
    """Hot-swap a registered version into serving and make it the champion."""
    from streamtune.sdk.client import Client

    def _promote() -> None:
        report = Client(Settings.from_env()).promote(name, version)
        console.print(f"{name} v{report['version']} serving (was v{report['previous']}); "
                      f"load {report['load_s']:.3f}s, flip {report['flip_s']:.3f}s")
    _guard(_promote)


@app.command()
def rollback(name: str = typer.Argument(..., help="Model (JobSpec) name.")) -> None:
    """Swap back to the previous champion."""
    from streamtune.sdk.client import Client

    def _rollback() -> None:
        report = Client(Settings.from_env()).rollback(name)
        console.print(f"{name} rolled back to v{report['version']} (was v{report['previous']}); "
                      f"flip {report['flip_s']:.3f}s")
    _guard(_rollback)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
