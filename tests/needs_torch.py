"""torch for the tests of jobs/torch_mlp.py: it is the ``torch`` extra, so a developer may not have it.

Where it is missing those tests are skipped, except under ``make test`` (and so CI), which installs the extra and
sets ``STREAMTUNE_REQUIRE_TORCH=1``: there a missing torch fails them, so the DDP tests never pass by being skipped.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest


def require_torch() -> ModuleType:
    """``import torch``; skip the module without it, unless ``STREAMTUNE_REQUIRE_TORCH=1`` (then fail)."""
    if os.environ.get("STREAMTUNE_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch", reason="the torch extra is not installed (pip install -e '.[torch]')")
