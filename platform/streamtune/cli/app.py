"""The typer app, its consoles, and the guard that turns errors into a headline and a fix."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

from streamtune.errors import StreamtuneError

app = typer.Typer(help="streamtune: event-driven retraining on Kafka, Ray Tune and Ray Serve.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")
REASON_OPTION = typer.Option("", "--reason", "-r", help="Why; recorded with the command.")


def guard(fn: Callable[[], Any]) -> Any:
    """Run a command: user errors print their headline and fix; bugs print 'internal error' and a traceback."""
    try:
        return fn()
    except StreamtuneError as exc:
        err_console.print(f"[bold red]error:[/] {exc.headline}", highlight=False)
        if exc.fix:
            err_console.print(f"[yellow]fix:[/] {exc.fix}", highlight=False)
        raise typer.Exit(1) from None
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception:
        err_console.print("[bold red]internal error[/] (a bug in streamtune; please report it):")
        err_console.print(traceback.format_exc())
        raise typer.Exit(2) from None


def print_json(value: BaseModel | Sequence[BaseModel]) -> None:
    """Print a record or a list of records as JSON on stdout (no colour, no wrapping)."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else [v.model_dump(mode="json") for v in value]
    typer.echo(json.dumps(data, indent=2))
