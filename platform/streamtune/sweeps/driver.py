"""The sweep's Ray Job entrypoint: ``python -m streamtune.sweeps.driver REQUEST_URI``.

It reads the request from the artifact store, reads the window's snapshot (with the earlier windows that
``dataset.training`` adds), runs the data gate on it (a failure ends the job before any trial, not retried, with
the report in ``error.json``), checks that the cluster can place one trial (else it fails at once, naming what is
missing; a GPU asked for on a cluster without one trains on CPU, with a warning in the result, unless
``sweep.resources.require_gpu``: :mod:`streamtune.sweeps.resources`), splits the rows (at random, or by time),
runs the Tune sweep under its budgets (``sweep.time_budget``, ``cpu_hours``, ``gpu_hours``:
:mod:`streamtune.sweeps.budget`; one that runs out stops the trials and the best so far wins, and the result's
``spent`` says what was spent), refits the winner on train + validation rows (``validation.refit``,
:mod:`streamtune.sweeps.refit`), scores it and the champion on the same holdout, smoke-tests it (loaded as serving
loads it, in a Ray worker of its own started with the driver), and writes ``result.json`` beside the request. If
anything raises, it writes ``error.json`` there instead (type, message, traceback) and exits 1. The controller
reads those; only the controller writes run state. Nothing it is handed names a local path of the controller.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pyarrow as pa

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.data.snapshot import Snapshot, Splits
from streamtune.data.stats import reference_stats
from streamtune.errors import SweepError
from streamtune.job import load_job_class
from streamtune.sweeps.budget import SweepBudget
from streamtune.sweeps.failures import JobFailure, error_uri
from streamtune.sweeps.refit import refit
from streamtune.sweeps.resources import plan_sweep_resources, with_resources
from streamtune.sweeps.resume import resume_summary
from streamtune.sweeps.runner import pick_winner, run_tune, timed
from streamtune.sweeps.schema import RefitSummary, SweepRequest, SweepResult, SweepSpend, TrialSummary
from streamtune.sweeps.scoring import score_holdout
from streamtune.sweeps.space import run_seed
from streamtune.validation.data_gate import DataGateFailed, check_data
from streamtune.validation.smoke import smoke_test, start_smoke_worker

RESULT = "result.json"
REFERENCE = "reference.json"


def result_uri(out_uri: str) -> str:
    """Where a run's ``result.json`` lives in the artifact store.

    Example:
        >>> result_uri("s3://b/runs/r-1")
        's3://b/runs/r-1/result.json'
    """
    return f"{out_uri.rstrip('/')}/{RESULT}"


def read_snapshot(req: SweepRequest, spec: JobSpec) -> Snapshot:
    """The run's window and the earlier windows it trains on (``req.history``), read as one Arrow dataset.

    Example:
        >>> snap = read_snapshot(req, spec)  # doctest: +SKIP
    """
    uris = [*req.uris, *(u for w in req.history for u in w.uris)]
    return Snapshot.from_parts(spec.dataset, uris, req.rows, trusted_roots=req.trusted_roots, check=False)


def _refit(req: SweepRequest, spec: JobSpec, best: TrialSummary, splits: Splits,
           features: list[str]) -> tuple[TrialSummary, RefitSummary]:
    """Refit the winner on train + valid; the returned winner points at the refit model."""
    uri, digest, seconds = refit(spec, best.params, splits.train, splits.valid, features, req.out_uri)
    summary = RefitSummary(trial_id=best.trial_id, trial_artifact_uri=str(best.artifact_uri), artifact_uri=uri,
                           manifest_sha256=digest, rows=splits.train.num_rows + splits.valid.num_rows,
                           seconds=round(seconds, 4))
    return best.model_copy(update={"artifact_uri": uri, "manifest_sha256": digest}), summary


def write_reference(out_uri: str, splits: Splits, features: list[str]) -> str:
    """Store the per-feature statistics of the training rows (train + valid) as ``reference.json``."""
    rows = pa.concat_tables([splits.train, splits.valid], promote_options="default")
    uri = f"{out_uri.rstrip('/')}/{REFERENCE}"
    return ArtifactStore(uri).put_text(uri, reference_stats(rows, features).model_dump_json())


def _trial_holdout(req: SweepRequest, spec: JobSpec, trial: TrialSummary, holdout: Any) -> float | None:
    """The winning trial's own model on the holdout, for the record beside its refit's score."""
    alone = req.model_copy(update={"champion": None, "out_uri": f"{req.out_uri.rstrip('/')}/trial-holdout"})
    return score_holdout(alone, spec, trial, holdout).challenger


def run(req: SweepRequest) -> SweepResult:
    """Run one sweep request end to end and return its result."""
    spec = JobSpec.model_validate(req.spec)
    smoke_worker = start_smoke_worker(spec.job.entrypoint)  # imports the job while the driver reads and sweeps
    snap, t_snap = timed(lambda: read_snapshot(req, spec))
    data_gate = check_data(snap.table, spec.dataset, spec.validation, claimed_rows=req.claimed_rows)
    if not data_gate.passed:  # before any trial or worker: the report goes into error.json, not retried
        raise DataGateFailed(data_gate)
    snap.check_columns()
    splits = snap.split(spec.validation.holdout_fraction, spec.validation.valid_fraction,
                        by_time=spec.validation.split == "time")
    seed = run_seed(spec.sweep, req.run_id)
    plan = plan_sweep_resources(spec.sweep.resources)  # a GPU asked for where none is: CPU, or require_gpu fails
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    spec = with_resources(spec, plan.resources)  # the trials and the refit ask for what the cluster has
    budget = SweepBudget.from_spec(spec.sweep, key=req.out_uri)
    trials, t_sweep = timed(
        lambda: run_tune(spec, splits.train, splits.valid, snap.features, req.out_uri, seed=seed,
                         warm_start=req.warm_start, budget=budget, attempt=req.attempt, resume=req.resume)
    )
    spent = budget.spent(trials)
    best, pareto = _pick_winner(trials, spec, spent)  # multi-objective: the best of the Pareto front
    refit_summary, t_refit = None, 0.0
    if spec.validation.refit:
        trial = best
        (best, refit_summary), t_refit = timed(lambda: _refit(req, spec, trial, splits, snap.features))
    reference = write_reference(req.out_uri, splits, snap.features)
    holdout, t_eval = timed(lambda: score_holdout(req, spec, best, splits.holdout))
    if refit_summary is not None:
        refit_summary.trial_holdout = _trial_holdout(req, spec, trial, splits.holdout)
    smoke = smoke_test(spec.job.entrypoint, str(best.artifact_uri), splits.holdout, label=spec.dataset.label,
                       manifest_sha256=best.manifest_sha256, worker=smoke_worker)
    return SweepResult(
        run_id=req.run_id, submission_id=req.submission_id, best=best, trials=trials, pareto=pareto,
        holdout=holdout, refit=refit_summary,
        reference_uri=reference,
        snapshot={"fingerprint": snap.fingerprint, "num_rows": snap.num_rows, "uris": snap.uris,
                  "features": snap.features, "split": spec.validation.split,
                  "rows": {"train": splits.train.num_rows, "valid": splits.valid.num_rows,
                           "holdout": splits.holdout.num_rows},
                  "windows": [w.model_dump(mode="json") for w in req.history]},
        timings={"snapshot_s": t_snap, "sweep_s": t_sweep, "refit_s": t_refit, "holdout_eval_s": t_eval,
                 "smoke_s": smoke.seconds},
        data_gate=data_gate, smoke=smoke, warnings=plan.warnings, spent=spent,
        resume=resume_summary(((t.trial_id, t.attempt, t.reruns) for t in trials), attempt=req.attempt),
    )


def _pick_winner(trials: list[TrialSummary], spec: JobSpec, spent: SweepSpend) -> tuple[TrialSummary, list[str]]:
    """:func:`pick_winner`; when a budget stopped the sweep before any trial saved a model, the error says which
    budget and what was spent."""
    try:
        return pick_winner(trials, spec.sweep)
    except SweepError as exc:
        if spent.stopped_by == "completed":
            raise
        raise SweepError(f"{budget_line(spent)} before any trial saved a model ({exc.headline})",
                         fix=f"raise sweep.{spent.stopped_by}, or lower sweep.max_t or the data so a trial "
                             "finishes within it") from exc


def budget_line(spent: SweepSpend) -> str:
    """Which budget stopped a sweep, and what it had spent.

    Example:
        >>> budget_line(SweepSpend(trials_planned=4, trials_started=2, trials_stopped=2, wall_s=61.0,
        ...                        cpu_hours=0.034, stopped_by="cpu_hours", cpu_hours_budget=0.03))
        'sweep.cpu_hours of 0.03 ran out (spent 0.034 CPU-hours, 0 GPU-hours in 61 s; 2 of 4 trials started)'
    """
    limit = {"time_budget": spent.time_budget_s, "cpu_hours": spent.cpu_hours_budget,
             "gpu_hours": spent.gpu_hours_budget}.get(spent.stopped_by)
    return (f"sweep.{spent.stopped_by} of {limit or 0:g} ran out (spent {spent.cpu_hours:g} CPU-hours, "
            f"{spent.gpu_hours:g} GPU-hours in {spent.wall_s:g} s; {spent.trials_started} of "
            f"{spent.trials_planned} trials started)")


def preimport_job(spec: dict[str, Any]) -> threading.Thread:
    """Import the job's module in a background thread while the driver connects to Ray and reads its data, so
    the refit, the holdout scoring and the smoke test find it loaded. An import that fails here is left for
    the real import to report (Python's import lock makes that wait for this one)."""
    entrypoint = str(spec.get("job", {}).get("entrypoint", ""))

    def load() -> None:
        try:
            load_job_class(entrypoint)
        except Exception:  # noqa: BLE001 -- reported, with its field, where the job is really loaded
            pass

    thread = threading.Thread(target=load, name="streamtune-preimport", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    """Entry point of the Ray Job: 0 with ``result.json`` written, 1 with ``error.json`` written."""
    import ray

    store = ArtifactStore(argv[0])
    req = SweepRequest.model_validate_json(store.get_text(argv[0]))
    preimport_job(req.spec)
    try:
        ray.init(address="auto", log_to_driver=False)
        result = run(req)
    except Exception as exc:
        failure = JobFailure.from_exception(exc, req.submission_id)
        print(failure.traceback, file=sys.stderr)
        store.put_text(error_uri(req.out_uri), failure.model_dump_json(indent=2))
        print(failure.headline, file=sys.stderr)  # the log's last line names the exception too
        return 1
    store.put_text(result_uri(req.out_uri), result.model_dump_json(indent=2))
    print(json.dumps({"run_id": req.run_id, "best": result.best.params, "holdout": result.holdout.model_dump()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
