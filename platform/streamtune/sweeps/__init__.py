"""Sweeps: Ray Tune with Optuna search and ASHA pruning, submitted as a Ray Job per run."""

from streamtune.sweeps.jobs_api import RayJobRunner
from streamtune.sweeps.schema import (
    ChampionRef,
    HoldoutScores,
    RefitSummary,
    SweepRequest,
    SweepResult,
    TrainingWindow,
    TrialSummary,
)

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
