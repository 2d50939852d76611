"""The registry: runs, Kafka offsets and window state, model versions, aliases and their history.

Open one with :func:`open_registry`; the URL picks the implementation: ``sqlite:///...`` a
:class:`SqliteRegistry`, ``postgresql://...`` a :class:`PostgresRegistry`. Both run the same queries
(:class:`~streamtune.registry.sql.SqlStore`) through a small :mod:`~streamtune.registry.dialect`.

Example:
    >>> from streamtune.registry import open_registry
    >>> with open_registry("sqlite:///:memory:") as reg:
    ...     reg.register_model("ctr", "r-1", "file:///a/1", {}, {}, {}).version
    1
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from streamtune.errors import RegistryError
from streamtune.registry.base import Registry
from streamtune.registry.commands import CommandOutcome, CommandRecord, CommandStatus
from streamtune.registry.manifest import verify_manifest, write_manifest
from streamtune.registry.records import (
    TERMINAL_STATUSES,
    AliasEvent,
    ApiToken,
    Lease,
    ModelVersion,
    OffsetReset,
    RunAttempt,
    RunRecord,
    RunStatus,
    SeenKey,
    SpecRecord,
    run_id_for,
)
from streamtune.registry.urls import URL_RULE, mask_url, registry_kind

if TYPE_CHECKING:
    from streamtune.registry.postgres import PostgresRegistry
    from streamtune.registry.sqlite import SqliteRegistry

_LAZY = {"PostgresRegistry": "streamtune.registry.postgres", "SqliteRegistry": "streamtune.registry.sqlite"}


def __getattr__(name: str) -> Any:
    """The SQL registries are imported on first use (SQLAlchemy and the dialects), so a trial's worker that
    only writes a manifest (``streamtune.registry.manifest``) does not load them."""
    if name not in _LAZY:
        raise AttributeError(f"module 'streamtune.registry' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value

"""The old name of :class:`SqliteRegistry`, kept while callers move to the new one."""

__all__ = [
    "TERMINAL_STATUSES",
    "AliasEvent",
    "ApiToken",
    "CommandOutcome",
    "CommandRecord",
    "CommandStatus",
    "Lease",
    "ModelVersion",
    "OffsetReset",
    "PostgresRegistry",
    "Registry",
    "RunRecord",
    "RunAttempt",
    "RunStatus",
    "SeenKey",
    "SpecRecord",
    "SqliteRegistry",
    "open_registry",
    "run_id_for",
    "verify_manifest",
    "write_manifest",
]


def open_registry(url: str, *, create: bool = True) -> Registry:
    """Open the registry at ``url``.

    Args:
        url: ``sqlite:///<absolute path>`` (parent folders are created) or ``sqlite:///:memory:`` for a
            :class:`SqliteRegistry`; ``postgresql://user:password@host:port/database`` (or ``postgres://``,
            ``postgresql+psycopg://``) for a :class:`PostgresRegistry` (needs ``streamtune[postgres]``).
        create: With False, a registry that does not exist yet is an error instead of a new empty one.

    Raises:
        RegistryError: the URL is invalid or unsupported (naming the value, its password masked, and the
            rule), or the database cannot be opened or reached.

    Example:
        >>> open_registry("sqlite:///:memory:").list_models()
        []
        >>> type(open_registry("sqlite:///:memory:")).__name__
        'SqliteRegistry'
    """
    if not isinstance(url, str) or not url.strip():
        raise RegistryError(
            f'Got "{url}" for registry_url; must be a URL like sqlite:////abs/path/registry.db or '
            "postgresql://user:password@host:5432/database",
            fix="set STREAMTUNE_REGISTRY_URL, or leave it unset for <home>/registry.db",
        )
    url = url.strip()
    if registry_kind(url) == "postgres":
        return _registry_class("PostgresRegistry")(url, create=create)
    if "://" in url and not url.startswith("sqlite:"):
        raise RegistryError(f'Got "{mask_url(url)}" for registry_url; {URL_RULE}')
    return _registry_class("SqliteRegistry")(url, create=create)


def _registry_class(name: str) -> Any:
    """The registry class ``name`` of this package, imported on first use."""
    return globals()[name] if name in globals() else __getattr__(name)
