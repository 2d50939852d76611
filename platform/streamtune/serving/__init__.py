"""Serving: a Ray Serve app per model whose replicas hot-swap versions in place.

Example:
    >>> from streamtune.serving import ModelService, SwapReport, VersionBoard
"""

from streamtune.serving.board import VersionBoard
from streamtune.serving.service import ModelService, SwapReport

__all__ = ["ModelService", "SwapReport", "VersionBoard"]
