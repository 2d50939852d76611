"""What the controller hands a sweep job, and what the job hands back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streamtune.validation.data_gate import DataGateReport
from streamtune.validation.smoke import SmokeReport


class ChampionRef(BaseModel):
    """The model currently serving, scored on the challenger's holdout."""

    version: int = Field(description="Registry version of the champion.")
    artifact_uri: str = Field(description="Where the champion's files are.")
    manifest_sha256: str | None = Field(
        None, description="The registry's sha256 of the champion's MANIFEST.json; scoring checks it first."
    )


class TrainingWindow(BaseModel):
    """One earlier window a run trains on beside its own (``dataset.training``), as lineage records it."""

    run_id: str = Field(description="The run whose window this is.")
    uris: list[str] = Field(description="The window's data files.")
    offsets: dict[str, list[int]] = Field(
        default_factory=dict, description='Kafka offsets of the window: "topic:partition" -> [first, last].'
    )
    num_rows: int = Field(0, ge=0, description="Rows the window's events claimed.")
    created_at: float = Field(description="Unix time the window's run was stored.")


class RefitSummary(BaseModel):
    """The winner trained again with its params on train + validation rows (``validation.refit``)."""

    trial_id: str = Field(description="The winning trial whose params were refit.")
    trial_artifact_uri: str = Field(description="The winning trial's own model, kept for comparison.")
    trial_holdout: float | None = Field(
        None, description="The winning trial's own model on the same holdout (the refit's score is holdout.challenger)."
    )
    artifact_uri: str = Field(description="The refit model: what the gate scored and the registry records.")
    manifest_sha256: str = Field(description="sha256 of the refit model's MANIFEST.json.")
    rows: int = Field(description="Rows the refit trained on (train + validation).")
    seconds: float = Field(description="Time the refit took, in its Ray task.")


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
    warm_start: list[dict[str, Any]] = Field(
        default_factory=list, description="Points the searcher evaluates first (sweep.warm_start): the champion's "
        "params, then the best earlier trials, each cut to the current search space."
    )
    history: list[TrainingWindow] = Field(
        default_factory=list, description="Earlier windows read with this one (dataset.training), oldest first."
    )
    champion: ChampionRef | None = Field(None, description="Current champion, if any.")
    claimed_rows: int | None = Field(
        None, ge=0, description="Rows the window's events claimed (sum of their num_rows); the data gate checks it "
        "against the rows read. None: not checked."
    )
    out_uri: str = Field(description="Artifact-store URI of the run's folder: trial models, Tune state, result.json.")


class TrialSummary(BaseModel):
    """One trial of the sweep."""

    trial_id: str = Field(description="Tune trial id.")
    params: dict[str, Any] = Field(description="The trial's config.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Last reported metrics.")
    iterations: int = Field(0, description="Report steps the trial made before it ended or was pruned.")
    artifact_uri: str | None = Field(None, description="Saved model, if the trial finished.")
    manifest_sha256: str | None = Field(
        None, description="sha256 of the saved model's MANIFEST.json as the sweep read it; the winner is scored "
        "against it, and the controller registers it only if the stored manifest still has it.",
    )
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
    champion_error: str | None = Field(
        None, description="Why the champion could not be scored on this holdout (missing column, deleted or "
        "tampered artifact, load error); the gate rejects the challenger then, unless on_champion_error: promote."
    )
    scores_uri: str | None = Field(
        None, description="holdout_scores.parquet beside result.json: the label, each model's scores, its encoded "
        "label and (for metrics that are a mean of per-row terms) per-row metric terms, and the slice columns "
        "(streamtune.validation.holdout)."
    )
    predict_ms_p50: float | None = Field(None, description="Challenger's median one-row predict latency, in ms.")
    predict_ms_p99: float | None = Field(None, description="Challenger's p99 one-row predict latency, in ms.")
    predict_batch_ms: float | None = Field(None, description="Challenger's predict over the whole holdout, in ms.")
    latency_rows: int | None = Field(None, description="Holdout rows predicted one at a time for the latencies.")
    artifact_bytes: int | None = Field(None, description="Size of the challenger's artifact folder, in bytes.")


class SweepResult(BaseModel):
    """Output of one sweep job."""

    run_id: str = Field(description="Run id.")
    best: TrialSummary = Field(description="The winning trial.")
    trials: list[TrialSummary] = Field(description="Every trial.")
    pareto: list[str] = Field(
        default_factory=list, description="search nsga2: trial ids of the Pareto front, the trials that saved a model "
        "and that no other such trial dominates by their last reported objective values (sweep.objectives); the "
        "winner is the best of them by sweep.metric. Empty for single-objective sweeps."
    )
    holdout: HoldoutScores = Field(description="Gate evidence.")
    snapshot: dict[str, Any] = Field(description="fingerprint, num_rows, uris of the snapshot.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per step.")
    data_gate: DataGateReport | None = Field(None, description="The data gate's report on the snapshot (passed).")
    reference_uri: str | None = Field(
        None, description="reference.json beside result.json: per-feature statistics of the training rows "
        "(streamtune.data.stats), the drift trigger's reference once this model is champion."
    )
    refit: RefitSummary | None = Field(
        None, description="The refit of the winner (validation.refit); then `best` points at the refit model."
    )
    smoke: SmokeReport | None = Field(
        None, description="The winner loaded as serving loads it and run on a holdout sample; failed fails the gate."
    )
