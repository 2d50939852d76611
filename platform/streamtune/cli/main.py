"""The ``streamtune`` command line: typer + rich over the SDK.

Example:
    >>> from typer.testing import CliRunner
    >>> "promote" in CliRunner().invoke(app, ["--help"]).output
    True
"""

from __future__ import annotations

from streamtune.cli import control, services, specs, tokens  # noqa: F401 - they register their commands on the app
from streamtune.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
