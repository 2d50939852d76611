"""Serving: a Ray Serve app per model whose replicas hot-swap versions in place.

The typed records import eagerly and without Ray; :class:`ModelService`, :class:`VersionBoard` and
:class:`ServeHub` (which need Ray) import on first use.

Example:
    >>> from streamtune.serving import ModelRef, SwapReport
    >>> ModelRef(version=2, uri="/artifacts/sales/2").version
    2
    >>> from streamtune.serving import ModelService  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamtune.serving.records import (
    AccessPolicy,
    BoardSnapshot,
    BoardView,
    CanaryReport,
    EnsureResult,
    InputSchema,
    LoadFailure,
    ModelRef,
    ReplicaReport,
    ReplicaStatus,
    RequestCounts,
    ServiceStatus,
    StaleFenceError,
    SwapFailure,
    SwapRecord,
    SwapReport,
    Version,
    VersionFigures,
    WatchReport,
)

if TYPE_CHECKING:
    from streamtune.serving.board import VersionBoard
    from streamtune.serving.hub import ServeHub
    from streamtune.serving.service import ModelService

_LAZY = {
    "ModelService": "streamtune.serving.service",
    "ServeHub": "streamtune.serving.hub",
    "VersionBoard": "streamtune.serving.board",
}

__all__ = [
    "AccessPolicy", "BoardSnapshot", "BoardView", "CanaryReport", "EnsureResult", "InputSchema", "LoadFailure",
    "ModelRef", "ModelService", "ReplicaReport", "ReplicaStatus", "RequestCounts", "ServeHub", "ServiceStatus",
    "StaleFenceError", "SwapFailure", "SwapRecord", "SwapReport", "Version", "VersionBoard", "VersionFigures",
    "WatchReport",
]


def __getattr__(name: str) -> Any:
    """Import the Ray-backed classes only when asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
