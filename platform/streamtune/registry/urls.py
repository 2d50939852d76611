"""Registry URLs: which database a URL names, and how to show one without its password.

Example:
    >>> registry_kind("postgresql+psycopg://st:secret@db:5432/streamtune"), registry_kind("sqlite:///:memory:")
    ('postgres', 'sqlite')
    >>> mask_url("postgresql://st:secret@db:5432/streamtune?sslmode=require")
    'postgresql://st:***@db:5432/streamtune?sslmode=require'
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["POSTGRES_SCHEMES", "URL_RULE", "mask_url", "registry_kind"]

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
"""URL schemes of a Postgres registry (``+psycopg`` as SQLAlchemy spells it; the driver is psycopg 3 either way)."""

URL_RULE = (
    "must be sqlite:///<absolute path> (e.g. sqlite:////home/me/registry.db), sqlite:///:memory: or "
    "postgresql://<user>:<password>@<host>:<port>/<database>"
)


def registry_kind(url: str) -> Literal["postgres", "sqlite"]:
    """``"postgres"`` for a Postgres URL, else ``"sqlite"`` (whose URL parser names what is wrong with it).

    Example:
        >>> registry_kind("postgres://db/st"), registry_kind("sqlite:////var/st/registry.db")
        ('postgres', 'sqlite')
    """
    scheme, sep, _ = url.partition("://")
    return "postgres" if sep and scheme.lower() in POSTGRES_SCHEMES else "sqlite"


def mask_url(url: str) -> str:
    """``url`` with the password, in the authority or a ``password=`` parameter, replaced by ``***``.

    Example:
        >>> mask_url("postgres://st@db/x?password=hunter2&connect_timeout=3")
        'postgres://st@db/x?password=***&connect_timeout=3'
        >>> mask_url("not a url")
        'not a url'
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hosts = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = parts.query
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*/")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<a URL that cannot be parsed>"
