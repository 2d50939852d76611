"""Serving rebuilt from the registry: every spec's champion is put back into service without retraining.

The registry's ``champion`` alias is the desired state of serving; the Serve apps and their version boards
are only a cache of it. On election, and every ``reconcile_interval`` seconds after, the active controller
asks serving to match each champion: redeploy a missing app, recreate a missing board, or swap a stale one.
A spec whose latest run passed the gate but is not promoted yet is left alone: that promotion swaps it.

Example:
    >>> from streamtune.registry import open_registry
    >>> ServingReconciler(open_registry("sqlite:///:memory:"), services=None).step({})
    []
"""

from __future__ import annotations

import logging
from typing import Any

from streamtune.controller.ports import Serving
from streamtune.errors import FencedError, StreamtuneError
from streamtune.registry.base import Registry
from streamtune.registry.records import RunStatus, SpecRecord
from streamtune.serving.records import EnsureResult, ModelRef

log = logging.getLogger(__name__)


class ServingReconciler:
    """Makes each spec's Serve app serve the registry's champion.

    Args:
        registry: Where the champions are.
        services: Serving, fenced with the controller's token.
    """

    def __init__(self, registry: Registry, services: Serving | Any) -> None:
        self.registry = registry
        self.services = services
        self.last: dict[str, EnsureResult | str] = {}

    def step(self, specs: dict[str, SpecRecord]) -> list[EnsureResult]:
        """Check every spec with a champion; return what was done where something was."""
        done = []
        for name, record in specs.items():
            champion = self.registry.get_alias(name, "champion")
            if champion is None or self.registry.list_runs(name, status=RunStatus.SUCCEEDED, limit=1):
                continue
            desired = ModelRef(version=champion.version, uri=champion.artifact_uri,
                               manifest_sha256=champion.manifest_sha256)
            try:
                result = self.services.ensure(record.spec, desired)
            except FencedError:
                raise
            except StreamtuneError as exc:  # Ray down, app not deployable: try again next interval
                self.last[name] = exc.headline
                log.warning("serving of %s could not be reconciled to v%s: %s", name, desired.version, exc.headline)
                continue
            self.last[name] = result
            if result.action != "none":
                log.info("serving of %s reconciled to v%s: %s (%s)", name, desired.version, result.action,
                         result.detail)
                done.append(result)
        return done
