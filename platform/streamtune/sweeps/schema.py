"""What the controller hands a sweep job, and what the job hands back."""

from __future__ import annotations

from typing import Any, Literal

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
    attempt: int = Field(
        1, ge=1, description="Which attempt of the run this is (1, then 2... for retries); names the driver's kill "
        "points' scope (a<N>, streamtune.faults) and each trial's TrialSummary.attempt."
    )
    resume: bool = Field(
        False, description="Resume the Tune experiment in out_uri, searcher state included: set by the controller "
        "when the previous attempt's driver died without writing error.json (killed, its node or the Ray head "
        "lost). False: the sweep starts afresh."
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
    params: dict[str, Any] = Field(
        description="The trial's config: under PBT its last one (mutated at its last exploit), the config its "
        "saved model was trained with since copied_at (before that, the configs of the trials it copied)."
    )
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
    workers: int = Field(
        1, ge=1, description="Ray Train workers the trial trained on, as its reports say (sweep.resources.workers; "
        "1: one process, or no report); node_id is then rank 0's node."
    )
    attempt: int = Field(
        1, ge=1, description="The run attempt whose sweep driver saw the trial end: lower than the result's for a "
        "trial kept from an attempt whose driver died (its results restored with Tune's state, not run again)."
    )
    reruns: int = Field(
        0, ge=0, description="Times the trial started again, with the same params, because the attempt running "
        "it died before it ended: from scratch, or from its last checkpoint where it kept one (PBT)."
    )
    copied_from: str | None = Field(
        None, description="PBT: the other trial whose checkpoint this trial last copied (an exploit), so its model "
        "went on from that trial's weights; None: it never copied one (its own checkpoints, after a pause, are not "
        "copies)."
    )
    copied_at: int | None = Field(
        None, ge=0, description="The report step of that checkpoint: the trial went on from the next step, with "
        "params mutated from that trial's."
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


StopReason = Literal["completed", "time_budget", "cpu_hours", "gpu_hours"]
"""Why a sweep ended: it ran its trials (``completed``), or the budget it names ran out first."""


class SweepSpend(BaseModel):
    """What a sweep spent, and which limit ended it (sweep.num_samples, time_budget, cpu_hours, gpu_hours).

    Example:
        >>> SweepSpend(trials_planned=4, trials_started=3, trials_completed=2, trials_stopped=1, wall_s=9.5,
        ...            cpu_hours=0.01, stopped_by="cpu_hours", cpu_hours_budget=0.01).stopped_by
        'cpu_hours'
    """

    trials_planned: int = Field(ge=0, description="Trials the sweep would have run without a budget "
                                "(sweep.num_samples, capped to the grid's size with search grid).")
    trials_started: int = Field(ge=0, description="Trials Tune started.")
    trials_completed: int = Field(0, ge=0, description="Trials that ran to their end and saved a model.")
    trials_pruned: int = Field(0, ge=0, description="Trials the scheduler stopped early (or that ended without "
                               "saving a model).")
    trials_failed: int = Field(0, ge=0, description="Trials that raised.")
    trials_stopped: int = Field(0, ge=0, description="Trials running when a budget ran out, stopped with it.")
    wall_s: float = Field(ge=0, description="Wall seconds of the sweep (Tune's run, not the refit or the gate).")
    cpu_hours: float = Field(0.0, ge=0, description="CPU-hours the trials held: each trial's CPUs times the "
                             "seconds from its start to its end, summed.")
    gpu_hours: float = Field(0.0, ge=0, description="GPU-hours the trials held, counted the same way.")
    stopped_by: StopReason = Field(description="completed: the sweep ran every trial it planned; otherwise the "
                                   "budget that stopped it before that (the winner is the best trial so far).")
    time_budget_s: float | None = Field(None, description="The wall-clock limit it ran under (sweep.time_budget).")
    cpu_hours_budget: float | None = Field(None, description="The CPU-hours limit (sweep.cpu_hours).")
    gpu_hours_budget: float | None = Field(None, description="The GPU-hours limit (sweep.gpu_hours).")


class SweepResume(BaseModel):
    """How a retried attempt resumed the sweep an earlier attempt left when its driver died: Tune's experiment
    state, the searcher's included, restored from the run's folder (``sweeps/resume.py``).

    Example:
        >>> SweepResume(attempt=2, from_attempts=[1], kept_trials=["t_00000", "t_00001"],
        ...             rerun_trials=["t_00002"]).kept_trials
        ['t_00000', 't_00001']
    """

    attempt: int = Field(ge=2, description="The attempt that resumed (the one that wrote this result).")
    from_attempts: list[int] = Field(
        default_factory=list, description="Earlier attempts whose ended trials were kept."
    )
    kept_trials: list[str] = Field(
        default_factory=list, description="Trials that had ended (finished, pruned or failed) in an earlier "
        "attempt: kept with their results and models, not run again."
    )
    rerun_trials: list[str] = Field(
        default_factory=list, description="Trials that were running or waiting when the earlier attempt died: "
        "run again from scratch by this one with the params the searcher had given them."
    )


class SweepResult(BaseModel):
    """Output of one sweep job."""

    run_id: str = Field(description="Run id.")
    submission_id: str | None = Field(
        None, description="The Ray Job id of the attempt that wrote this result (SweepRequest.submission_id): the "
        "controller gates a result as soon as it is there, before the job has exited, only for its own attempt."
    )
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
    resume: SweepResume | None = Field(
        None, description="Set when this attempt resumed the Tune experiment of an earlier attempt whose driver "
        "died: which trials it kept and which it ran again; None for a sweep run in one attempt."
    )
    smoke: SmokeReport | None = Field(
        None, description="The winner loaded as serving loads it and run on a holdout sample; failed fails the gate."
    )
    spent: SweepSpend | None = Field(
        None, description="What the sweep spent (trials, wall time, CPU- and GPU-hours) and what stopped it: "
        "completed, or the budget that ran out first; None in results written before it was recorded."
    )
    warnings: list[str] = Field(
        default_factory=list, description="What the sweep changed from the spec and why, e.g. a GPU request on a "
        "cluster without a GPU that trained on CPU instead (sweep.resources.gpu; require_gpu refuses that)."
    )
