"""``streamtune specs`` and ``streamtune spec pause|resume|delete NAME``: specs, their health and queue depth.

Example:
    >>> from typer.testing import CliRunner
    >>> "delete" in CliRunner().invoke(app, ["spec", "--help"]).output
    True
"""

from __future__ import annotations

import datetime

import typer
from rich.table import Table

from streamtune.cli.app import JSON_OPTION, REASON_OPTION, app, console, guard, print_json
from streamtune.cli.control import _client, _done

spec_app = typer.Typer(help="One spec: pause, resume (also retries a spec in error at once), delete.",
                       no_args_is_help=True)
app.add_typer(spec_app, name="spec")


@app.command("specs")
def specs(as_json: bool = JSON_OPTION) -> None:
    """List specs with their state (active, paused, error), queue depth and last error."""
    def _specs() -> None:
        st = _client().status()
        if as_json:
            print_json(st.specs)
            return
        table = Table("spec", "dataset", "topic", "state", "queue", "pending", "retry at", "error")
        for s in st.specs:
            retry = (datetime.datetime.fromtimestamp(s.retry_at).isoformat(sep=" ", timespec="seconds")
                     if s.retry_at else "-")
            table.add_row(s.name, s.dataset, s.topic, s.state, str(s.queue_depth), str(s.pending_runs), retry,
                          (s.error or "")[:80])
        console.print(table)
    guard(_specs)


@spec_app.command("pause")
def pause(name: str = typer.Argument(..., help="Spec name."), reason: str = REASON_OPTION,
          as_json: bool = JSON_OPTION) -> None:
    """Start no new runs of a spec (its windows still close into pending runs)."""
    guard(lambda: _done(_client().pause(name, reason=reason), as_json))


@spec_app.command("resume")
def resume(name: str = typer.Argument(..., help="Spec name."), reason: str = REASON_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Start runs of a paused spec again; a spec in error is tried again at once."""
    guard(lambda: _done(_client().resume(name, reason=reason), as_json))


@spec_app.command("delete")
def delete(name: str = typer.Argument(..., help="Spec name."),
           force: bool = typer.Option(False, "--force", help="Stop and cancel a run in flight instead of refusing."),
           reason: str = REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Remove a spec; its model versions stay, its Serve app keeps serving the last champion."""
    guard(lambda: _done(_client().delete_spec(name, force=force, reason=reason), as_json))
