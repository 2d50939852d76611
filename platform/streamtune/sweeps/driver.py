"""The sweep's Ray Job entrypoint: ``python -m streamtune.sweeps.driver REQUEST_URI``.

It reads the request from the artifact store, reads the window's snapshot, runs the data gate on it (a failure
ends the job before any trial, not retried, with the report in ``error.json``), checks that the cluster can place
one trial (else it fails at once, naming what is missing), runs the Tune sweep (``sweep.time_budget`` is Tune's
``time_budget_s``), scores the winner and the champion on the same holdout, smoke-tests the winner (loaded as
serving loads it, in a Ray task of its own), and writes ``result.json`` beside the
request. If anything raises, it writes ``error.json`` there instead (type, message, traceback) and exits 1. The
controller reads those; only the controller writes run state. Nothing it is handed names a local path of the
controller.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from streamtune.artifacts.store import ArtifactStore
from streamtune.artifacts.verified import fetch_verified
from streamtune.config.jobspec import JobSpec
from streamtune.data.snapshot import Snapshot
from streamtune.job import load_job_class
from streamtune.sweeps.failures import JobFailure, check_trial_resources, error_uri
from streamtune.sweeps.runner import pick_best, run_tune, timed
from streamtune.sweeps.schema import HoldoutScores, SweepRequest, SweepResult, TrialSummary
from streamtune.sweeps.scoring import score_holdout
from streamtune.sweeps.space import run_seed
from streamtune.validation.data_gate import DataGateFailed, check_data
from streamtune.validation.metrics import get_metric
from streamtune.validation.smoke import smoke_test

RESULT = "result.json"


def result_uri(out_uri: str) -> str:
    """Where a run's ``result.json`` lives in the artifact store.

    Example:
        >>> result_uri("s3://b/runs/r-1")
        's3://b/runs/r-1/result.json'
    """
    return f"{out_uri.rstrip('/')}/{RESULT}"


def score(entrypoint: str, artifact_uri: str, holdout: Any, label: str, metric: str,
          manifest_sha256: str | None = None) -> float:
    """Load a saved model from a private, verified copy (its manifest checked against ``manifest_sha256`` when
    given) and score it on ``holdout``."""
    with fetch_verified(artifact_uri, manifest_sha256=manifest_sha256) as folder:
        predictor = load_job_class(entrypoint)().load(folder)
        preds = predictor.predict(holdout)
    return get_metric(metric)(holdout[label].to_numpy(), list(preds))


def _holdout_scores(req: SweepRequest, spec: JobSpec, best: TrialSummary, holdout: Any) -> HoldoutScores:
    """Both models on the same holdout rows, per-row scores beside result.json (:mod:`streamtune.sweeps.scoring`);
    a champion that cannot be scored is kept in ``champion_error`` for the gate."""
    return score_holdout(req, spec, best, holdout)


def run(req: SweepRequest) -> SweepResult:
    """Run one sweep request end to end and return its result."""
    spec = JobSpec.model_validate(req.spec)
    snap, t_snap = timed(lambda: Snapshot.from_parts(spec.dataset, req.uris, req.rows, trusted_roots=req.trusted_roots,
                                                     check=False))
    data_gate = check_data(snap.table, spec.dataset, spec.validation, claimed_rows=req.claimed_rows)
    if not data_gate.passed:  # before any trial or worker: the report goes into error.json, not retried
        raise DataGateFailed(data_gate)
    snap.check_columns()
    splits = snap.split(spec.validation.holdout_fraction, spec.validation.valid_fraction)
    seed = run_seed(spec.sweep, req.run_id)
    check_trial_resources(spec.sweep.resources.cpu, spec.sweep.resources.gpu)
    trials, t_sweep = timed(
        lambda: run_tune(spec, splits.train, splits.valid, snap.features, req.out_uri, seed=seed)
    )

    best = pick_best(trials, spec.sweep.metric, spec.sweep.mode)
    holdout, t_eval = timed(lambda: _holdout_scores(req, spec, best, splits.holdout))
    smoke = smoke_test(spec.job.entrypoint, str(best.artifact_uri), splits.holdout, label=spec.dataset.label,
                       manifest_sha256=best.manifest_sha256)
    return SweepResult(
        run_id=req.run_id, best=best, trials=trials, holdout=holdout,
        snapshot={"fingerprint": snap.fingerprint, "num_rows": snap.num_rows, "uris": snap.uris,
                  "features": snap.features},
        timings={"snapshot_s": t_snap, "sweep_s": t_sweep, "holdout_eval_s": t_eval, "smoke_s": smoke.seconds},
        data_gate=data_gate, smoke=smoke,
    )


def main(argv: list[str]) -> int:
    """Entry point of the Ray Job: 0 with ``result.json`` written, 1 with ``error.json`` written."""
    import ray

    store = ArtifactStore(argv[0])
    req = SweepRequest.model_validate_json(store.get_text(argv[0]))
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
