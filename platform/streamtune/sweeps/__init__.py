"""Sweeps: Ray Tune with Optuna search and ASHA pruning, submitted as a Ray Job per run."""

from streamtune.sweeps.jobs_api import RayJobRunner
from streamtune.sweeps.schema import ChampionRef, HoldoutScores, SweepRequest, SweepResult, TrialSummary

__all__ = ["ChampionRef", "HoldoutScores", "RayJobRunner", "SweepRequest", "SweepResult", "TrialSummary"]
