"""The registry: runs, Kafka offsets and window state, model versions, aliases and their history.

Open one with :func:`open_registry`; the URL picks the implementation.

Example:
    >>> from streamtune.registry import open_registry
    >>> with open_registry("sqlite:///:memory:") as reg:
    ...     reg.register_model("ctr", "r-1", "file:///a/1", {}, {}, {}).version
    1
"""

from __future__ import annotations

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
    RunRecord,
    RunStatus,
    SpecRecord,
    run_id_for,
)
from streamtune.registry.sql import SqlRegistry

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
    "Registry",
    "RunRecord",
    "RunStatus",
    "SpecRecord",
    "SqlRegistry",
    "open_registry",
    "run_id_for",
    "verify_manifest",
    "write_manifest",
]


def open_registry(url: str, *, create: bool = True) -> Registry:
    """Open the registry at ``url``.

    Args:
        url: ``sqlite:///<absolute path>`` (parent folders are created) or ``sqlite:///:memory:``.
            ``postgres://`` and ``postgresql://`` URLs are recognised but not supported yet.
        create: With False, a registry that does not exist yet is an error instead of a new empty one.

    Raises:
        RegistryError: the URL is invalid or unsupported (naming the value and the rule), or the
            database cannot be opened.

    Example:
        >>> open_registry("sqlite:///:memory:").list_models()
        []
    """
    if not isinstance(url, str) or not url.strip():
        raise RegistryError(
            f'Got "{url}" for registry_url; must be a URL like sqlite:////abs/path/registry.db',
            fix="set STREAMTUNE_REGISTRY_URL, or leave it unset for <home>/registry.db",
        )
    return SqlRegistry(url.strip(), create=create)
