"""The sweep's Ray Job entrypoint: ``python -m streamtune.sweeps.driver REQUEST_URI``.

It reads the request from the artifact store, reads the window's snapshot, checks that the cluster can place
one trial (else it fails at once, naming what is missing), runs the Tune sweep (``sweep.time_budget`` is Tune's
``time_budget_s``), scores the winner and the champion on the same holdout, and writes ``result.json`` beside the
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
from streamtune.sweeps.schema import HoldoutScores, SweepRequest, SweepResult
from streamtune.sweeps.space import run_seed
from streamtune.validation.metrics import get_metric

RESULT = "result.json"


def result_uri(out_uri: str) -> str:
    """Where a run's ``result.json`` lives in the artifact store.

    Example:
        >>> result_uri("s3://b/runs/r-1")
        's3://b/runs/r-1/result.json'
    """
    return f"{out_uri.rstrip('/')}/{RESULT}"


def score(entrypoint: str, artifact_uri: str, holdout: Any, label: str, metric: str) -> float:
    """Load a saved model from a private, verified copy and score it on ``holdout``."""
    with fetch_verified(artifact_uri) as folder:
        predictor = load_job_class(entrypoint)().load(folder)
        preds = predictor.predict(holdout)
    return get_metric(metric)(holdout[label].to_numpy(), list(preds))


def _holdout_scores(req: SweepRequest, spec: JobSpec, best_uri: str, holdout: Any) -> HoldoutScores:
    metric, label = spec.sweep.metric, spec.dataset.label
    out = HoldoutScores(metric=metric, challenger=None, rows=holdout.num_rows)
    try:
        out.challenger = score(spec.job.entrypoint, best_uri, holdout, label, metric)
    except Exception as exc:  # a model that cannot be scored must not reach traffic
        out.error = f"challenger: {type(exc).__name__}: {exc}"
        return out
    if req.champion is not None:
        out.champion_version = req.champion.version
        try:
            out.champion = score(spec.job.entrypoint, req.champion.artifact_uri, holdout, label, metric)
        except Exception as exc:
            out.error = f"champion v{req.champion.version} could not be scored: {exc}"
    return out


def run(req: SweepRequest) -> SweepResult:
    """Run one sweep request end to end and return its result."""
    spec = JobSpec.model_validate(req.spec)
    snap, t_snap = timed(lambda: Snapshot.from_parts(spec.dataset, req.uris, req.rows, trusted_roots=req.trusted_roots))
    splits = snap.split(spec.validation.holdout_fraction, spec.validation.valid_fraction)
    seed = run_seed(spec.sweep, req.run_id)
    check_trial_resources(spec.sweep.resources.cpu, spec.sweep.resources.gpu)
    trials, t_sweep = timed(
        lambda: run_tune(spec, splits.train, splits.valid, snap.features, req.out_uri, seed=seed)
    )

    best = pick_best(trials, spec.sweep.metric, spec.sweep.mode)
    best_uri = str(best.artifact_uri)  # pick_best only returns trials that saved a model
    holdout, t_eval = timed(lambda: _holdout_scores(req, spec, best_uri, splits.holdout))
    return SweepResult(
        run_id=req.run_id, best=best, trials=trials, holdout=holdout,
        snapshot={"fingerprint": snap.fingerprint, "num_rows": snap.num_rows, "uris": snap.uris,
                  "features": snap.features},
        timings={"snapshot_s": t_snap, "sweep_s": t_sweep, "holdout_eval_s": t_eval},
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
