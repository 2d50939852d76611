"""``streamtune token create|list|revoke``: API tokens, managed by an operator beside the registry."""

from __future__ import annotations

import datetime

import typer
from rich.table import Table

from streamtune.cli.app import JSON_OPTION, app, console, guard, print_json
from streamtune.config.settings import Settings
from streamtune.registry import open_registry
from streamtune.registry.base import Registry

tokens = typer.Typer(help="API tokens: create (shown once), list, revoke. Run on the platform's host.",
                     no_args_is_help=True)
app.add_typer(tokens, name="token")


def _registry() -> Registry:
    return open_registry(Settings.from_env().registry_url, create=False)


@tokens.command("create")
def create(name: str = typer.Argument(..., help="Who the token is for; recorded as the actor of their commands."),
           as_json: bool = JSON_OPTION) -> None:
    """Make a token for NAME and print it once; only its sha256 is stored."""
    def _create() -> None:
        from streamtune.api.auth import hash_token, new_token

        token = new_token()
        record = _registry().add_token(name, hash_token(token))
        if as_json:
            typer.echo(f'{{"name": "{record.name}", "token": "{token}"}}')
        else:
            console.print(f"token for [bold]{name}[/] (shown once; set it as STREAMTUNE_TOKEN):", highlight=False)
            typer.echo(token)
    guard(_create)


@tokens.command("list")
def list_(revoked: bool = typer.Option(False, "--revoked", help="Show revoked tokens too."),
          as_json: bool = JSON_OPTION) -> None:
    """List tokens by owner (never the tokens themselves)."""
    def _list() -> None:
        found = _registry().list_tokens(include_revoked=revoked)
        if as_json:
            print_json([t.model_copy(update={"token_sha256": t.token_sha256[:12]}) for t in found])
            return
        table = Table("name", "sha256", "created", "revoked")
        for t in found:
            table.add_row(t.name, t.token_sha256[:12] + "…", _when(t.created_at), _when(t.revoked_at))
        console.print(table)
    guard(_list)


@tokens.command("revoke")
def revoke(name: str = typer.Argument(..., help="Whose tokens to revoke."), as_json: bool = JSON_OPTION) -> None:
    """Revoke every token of NAME; the API and the model endpoints refuse them at once."""
    def _revoke() -> None:
        from streamtune.errors import NotFoundError

        gone = _registry().revoke_tokens(name)
        if not gone:
            raise NotFoundError(f'Got "{name}" for token owner; no active token belongs to it',
                                fix="see `streamtune token list`")
        if as_json:
            print_json(gone)
        else:
            console.print(f"revoked {len(gone)} token(s) of {name}")
    guard(_revoke)


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds")
