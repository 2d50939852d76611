"""Sweeps: Ray Tune with Optuna search and ASHA pruning, submitted as a Ray Job per run."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from streamtune.sweeps.schema import (
    ChampionRef,
    HoldoutScores,
    RefitSummary,
    SweepRequest,
    SweepResult,
    TrainingWindow,
    TrialSummary,
)

if TYPE_CHECKING:
    from streamtune.sweeps.jobs_api import RayJobRunner


def __getattr__(name: str) -> Any:
    """``RayJobRunner`` is imported on first use (Ray's job submission client), not by every trial's worker."""
    if name != "RayJobRunner":
        raise AttributeError(f"module 'streamtune.sweeps' has no attribute {name!r}")
    value = import_module("streamtune.sweeps.jobs_api").RayJobRunner
    globals()[name] = value
    return value


__all__ = [
    "ChampionRef",
    "HoldoutScores",
    "RayJobRunner",
    "RefitSummary",
    "SweepRequest",
    "SweepResult",
    "TrainingWindow",
    "TrialSummary",
]
