"""The restart phase: tests that stop and start Ray run after the shared-cluster tests, on a cluster of their own.

``make test`` runs them as a second pytest phase (``pytest -m restart tests/restart``); the first phase
deselects them (``-m "not restart"`` in pyproject's addopts), since one machine holds one Ray cluster.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/restart/" in str(item.path):
            item.add_marker(pytest.mark.restart)
