"""What the controller hands a sweep job, and what the job hands back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChampionRef(BaseModel):
    """The model currently serving, scored on the challenger's holdout."""

    version: int = Field(description="Registry version of the champion.")
    artifact_uri: str = Field(description="Where the champion's files are.")


class SweepRequest(BaseModel):
    """Input of one sweep job; written as JSON next to its outputs."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="Run id; also the Ray Job submission_id of its first attempt.")
    submission_id: str | None = Field(
        None, description="The Ray Job id of this attempt (run_id, then <run_id>-a<N>); written into error.json."
    )
    spec: dict[str, Any] = Field(description="The JobSpec, as a mapping.")
    uris: list[str] = Field(default_factory=list, description="Parquet files of the window.")
    rows: list[dict[str, Any]] = Field(default_factory=list, description="Inline rows of the window.")
    trusted_roots: list[str] = Field(
        default_factory=list, description="Artifact-store roots exempt from uri_roots (streamtune's own inline files)."
    )
    event_ids: list[str] = Field(default_factory=list, description="Events of the window, for lineage.")
    champion: ChampionRef | None = Field(None, description="Current champion, if any.")
    out_uri: str = Field(description="Artifact-store URI of the run's folder: trial models, Tune state, result.json.")


class TrialSummary(BaseModel):
    """One trial of the sweep."""

    trial_id: str = Field(description="Tune trial id.")
    params: dict[str, Any] = Field(description="The trial's config.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Last reported metrics.")
    iterations: int = Field(0, description="Report steps the trial made before it ended or was pruned.")
    artifact_uri: str | None = Field(None, description="Saved model, if the trial finished.")
    error: str | None = Field(None, description="Why the trial failed, if it did.")
    node_id: str | None = Field(
        None, description="Ray node the trial ran on: as of its last report, else the node its error names "
        "(a trial lost with its node); None if unknown."
    )


class HoldoutScores(BaseModel):
    """Champion and challenger scored on the same holdout."""

    metric: str = Field(description="Metric name.")
    challenger: float | None = Field(description="Challenger's score; None if it could not be scored.")
    champion: float | None = Field(None, description="Champion's score; None without a champion.")
    champion_version: int | None = Field(None, description="Which champion was scored.")
    rows: int = Field(description="Holdout rows.")
    error: str | None = Field(None, description="Why scoring failed, if it did.")


class SweepResult(BaseModel):
    """Output of one sweep job."""

    run_id: str = Field(description="Run id.")
    best: TrialSummary = Field(description="The winning trial.")
    trials: list[TrialSummary] = Field(description="Every trial.")
    holdout: HoldoutScores = Field(description="Gate evidence.")
    snapshot: dict[str, Any] = Field(description="fingerprint, num_rows, uris of the snapshot.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per step.")
