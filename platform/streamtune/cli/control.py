"""Commands over the control plane: submit, runs, models, history, promote, rollback, cancel, run-now, ..."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from streamtune.cli.app import JSON_OPTION, REASON_OPTION, app, console, guard, print_json
from streamtune.cli.gate_view import show_run
from streamtune.cli.watch import watch_run
from streamtune.config.settings import Settings
from streamtune.errors import ConfigError
from streamtune.registry.commands import CommandRecord
from streamtune.sdk.client import Client


def _client() -> Client:
    """A client of the platform's API: ``STREAMTUNE_URL`` (+ ``STREAMTUNE_TOKEN``), or this machine's ``up``."""
    settings = Settings.from_env()
    return Client(settings.api_url, token=operator_token(settings), settings=settings)


def operator_token(settings: Settings) -> str | None:
    """``STREAMTUNE_TOKEN``, else the token ``streamtune up`` left for this machine's operator, else None."""
    if settings.token is not None:
        return settings.token.get_secret_value()
    try:
        return settings.token_file.read_text().strip() or None
    except OSError:
        return None


def _done(record: CommandRecord, as_json: bool) -> None:
    if as_json:
        print_json(record)
    else:
        assert record.outcome is not None
        console.print(f"{record.outcome.message} [dim](command {record.id})[/]", highlight=False)


@app.command()
def submit(spec: Path = typer.Argument(..., help="JobSpec YAML file."), reason: str = REASON_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Submit a JobSpec; the controller stores it and starts watching its topic."""
    guard(lambda: _done(_client().submit(spec, reason=reason), as_json))


@app.command()
def pause(name: str = typer.Argument(..., help="Spec name."), reason: str = REASON_OPTION,
          as_json: bool = JSON_OPTION) -> None:
    """Start no new runs of a spec (its windows still close into pending runs)."""
    guard(lambda: _done(_client().pause(name, reason=reason), as_json))


@app.command()
def resume(name: str = typer.Argument(..., help="Spec name."), reason: str = REASON_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Start runs of a paused spec again."""
    guard(lambda: _done(_client().resume(name, reason=reason), as_json))


@app.command()
def promote(name: str = typer.Argument(..., help="Model (spec) name."),
            version: int = typer.Argument(..., help="Registered version to serve."),
            reason: str = REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Hot-swap a registered version into serving and make it the champion."""
    def _promote() -> None:
        record = _client().promote(name, version, reason=reason)
        _done(record, as_json)
        swap = record.outcome.swap if record.outcome else None
        if swap is not None and not as_json:
            console.print(f"load {swap.load_s:.3f}s, flip {swap.flip_s:.3f}s on {swap.replicas} replicas")
    guard(_promote)


@app.command()
def rollback(name: str = typer.Argument(..., help="Model (spec) name."), reason: str = REASON_OPTION,
             as_json: bool = JSON_OPTION) -> None:
    """Swap back to the previous champion."""
    guard(lambda: _done(_client().rollback(name, reason=reason), as_json))


@app.command()
def cancel(run_id: str = typer.Argument(..., help="Run id."), reason: str = REASON_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Cancel a run that has not passed the gate yet (its Ray Job is stopped)."""
    guard(lambda: _done(_client().cancel(run_id, reason=reason), as_json))


@app.command("run-now")
def run_now(name: str = typer.Argument(..., help="Spec name."), reason: str = REASON_OPTION,
            as_json: bool = JSON_OPTION) -> None:
    """Queue a manual run over the data of the spec's most recent window."""
    guard(lambda: _done(_client().run_now(name, reason=reason), as_json))


@app.command()
def replay(name: str = typer.Argument(..., help="Spec name."),
           from_offset: int | None = typer.Option(None, "--from-offset", help="First offset, in every partition."),
           from_time: str | None = typer.Option(
               None, "--from-time", help="Start at the first record at or after this time: ISO 8601 "
               "(2026-11-01T00:00:00+00:00) or Unix seconds."),
           reason: str = REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Rebuild a spec's windows from Kafka's retained history as replay runs (a backfill)."""
    guard(lambda: _done(_client().replay(name, from_offset=from_offset, from_time=_when(from_time),
                                         reason=reason), as_json))


def _when(text: str | None) -> float | None:
    """Unix seconds from ISO 8601 or a number; a clear error naming the option otherwise."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f'Got "{text}" for --from-time; must be ISO 8601 (2026-11-01T00:00:00+00:00) or Unix '
                          "seconds") from None


runs_app = typer.Typer(
    help="List runs, newest first; `runs retry RUN`, `runs approve RUN` and `runs logs RUN` act on one.")
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
def runs(ctx: typer.Context, spec: str = typer.Option(None, help="Only runs of this JobSpec."),
         limit: int = typer.Option(20, help="How many."),
         show: str = typer.Option(None, "--show", metavar="RUN", help="Show one run with its whole gate report."),
         watch: str = typer.Option(None, "--watch", metavar="RUN",
                                   help="Follow one run until it ends: status, trials done/running/pruned, best "
                                        "so far (with --json: one JSON line per change)."),
         as_json: bool = JSON_OPTION) -> None:
    """List runs, newest first (attempt N of a retried run shows as "status (aN)"); `--show RUN` shows one,
    `--watch RUN` follows one while its sweep runs."""
    if ctx.invoked_subcommand is not None:
        return

    def _runs() -> None:
        if watch is not None:
            watch_run(console, _client(), watch, as_json=as_json)
            return
        if show is not None:
            one = _client().run(show)
            print_json(one) if as_json else show_run(console, one)
            return
        found = _client().runs(spec, limit=limit)
        if as_json:
            print_json(found)
            return
        table = Table("run", "spec", "status", "rows", "trigger", "version", "holdout", "error")
        for r in found:
            gate = (r.gate or {}).get("numbers") or {}
            state = r.status.value if r.attempt == 1 else f"{r.status.value} (a{r.attempt})"
            table.add_row(r.run_id, r.spec_name, state, str(r.num_rows), r.reason,
                          str(r.model_version or "-"), str(gate.get("challenger", "-")), (r.error or "")[:60])
        console.print(table)
    guard(_runs)


@runs_app.command("retry")
def retry(run_id: str = typer.Argument(..., help="A failed run."), reason: str = REASON_OPTION,
          as_json: bool = JSON_OPTION) -> None:
    """Start a new attempt of a failed run at once (a new Ray Job over the same window)."""
    guard(lambda: _done(_client().retry(run_id, reason=reason), as_json))


@runs_app.command("approve")
def approve(run_id: str = typer.Argument(..., help="A run awaiting approval (promotion: manual)."),
            reason: str = REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Approve a run that passed the gate under `promotion: manual`; it is promoted, and you are recorded as the
    approver."""
    guard(lambda: _done(_client().approve(run_id, reason=reason), as_json))


@runs_app.command("logs")
def logs(run_id: str = typer.Argument(..., help="Run id."),
         attempt: int = typer.Option(None, "--attempt", "-a", min=1, help="Which attempt (default: the last)."),
         as_json: bool = JSON_OPTION) -> None:
    """Print the Ray Job log of a run's attempt (and why it failed, if it did)."""
    def _logs() -> None:
        found = _client().logs(run_id, attempt=attempt)
        if as_json:
            print_json(found)
            return
        typer.echo(found.text.rstrip("\n"))
        if found.error:
            console.print(f"[bold red]attempt {found.attempt} ({found.submission_id}) failed:[/] {found.error}",
                          highlight=False)
    guard(_logs)


@app.command()
def models(name: str = typer.Option(None, help="Only versions of this model."), as_json: bool = JSON_OPTION) -> None:
    """List registered model versions; * marks the champion."""
    def _models() -> None:
        client = _client()
        found = client.models(name)
        if as_json:
            print_json(found)
            return
        table = Table("model", "version", "run", "metrics", "champion", "artifact")
        champions = {n: client.champion(n) for n in {m.name for m in found}}
        for m in found:
            champ = champions[m.name]
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(m.metrics.items(), key=lambda kv: not
                                kv[0].startswith("holdout_")) if isinstance(v, float))
            table.add_row(m.name, str(m.version), m.run_id, metrics,
                          "*" if champ and champ.version == m.version else "", m.artifact_uri)
        console.print(table)
    guard(_models)


@app.command()
def history(name: str = typer.Argument(..., help="Model (spec) name."),
            alias: str = typer.Option("champion", help="Alias to show; '' for all."),
            as_json: bool = JSON_OPTION) -> None:
    """Show how a model's alias moved: when, from which version to which, and why."""
    def _history() -> None:
        import datetime

        events = _client().alias_history(name, alias or None)
        if as_json:
            print_json(events)
            return
        table = Table("when", "alias", "version", "previous", "reason")
        for e in events:
            when = datetime.datetime.fromtimestamp(e.at).isoformat(sep=" ", timespec="seconds")
            table.add_row(when, e.alias, str(e.version or "-"), str(e.previous or "-"), e.reason)
        console.print(table)
    guard(_history)


@app.command()
def commands(limit: int = typer.Option(20, help="How many."), as_json: bool = JSON_OPTION) -> None:
    """List commands, newest first: what was asked, by whom, why, and what came of it."""
    def _commands() -> None:
        found = _client().commands(limit)
        if as_json:
            print_json(found)
            return
        table = Table("command", "what", "actor", "reason", "status", "outcome")
        for c in found:
            outcome = c.error if c.error else (c.outcome.message if c.outcome else "")
            table.add_row(c.id, c.command.describe(), c.actor, c.reason, c.status.value, outcome[:70])
        console.print(table)
    guard(_commands)


@app.command()
def status(as_json: bool = JSON_OPTION) -> None:
    """Show the active controller, every spec, and the command queue."""
    def _status() -> None:
        st = _client().status()
        if as_json:
            print_json(st)
            return
        ctl = st.controller
        if ctl is None:
            console.print("controller: [red]none has ever run[/] (start one with `streamtune up`)")
        else:
            lapsed = f"[red]none active[/] (lease lapsed {-ctl.expires_in_s:.0f}s ago)"
            state = "[green]active[/]" if ctl.active else lapsed
            console.print(f"controller: {state}, {ctl.holder}, lease token {ctl.token}", highlight=False)
        table = Table("spec", "dataset", "topic", "app", "state", "champion", "active run", "pending", "queue",
                      "error")
        for s in st.specs:
            active = f"{s.active_run} ({s.active_status})" if s.active_run else "-"
            table.add_row(s.name, s.dataset, s.topic, s.app, s.state, str(s.champion or "-"),
                          active, str(s.pending_runs), str(s.queue_depth), (s.error or "")[:60])
        console.print(table)
        console.print(f"{st.pending_commands} command(s) waiting; registry {st.registry}", highlight=False)
    guard(_status)
