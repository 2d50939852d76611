"""The sweep's Ray Job entrypoint: ``python -m streamtune.sweeps.driver REQUEST.json``.

It reads the window's snapshot, runs the Tune sweep, scores the winner and the champion on the same
holdout, and writes ``result.json`` beside the request. The controller reads that file; only the
controller writes run state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from streamtune.config.jobspec import JobSpec
from streamtune.data.snapshot import Snapshot
from streamtune.job import load_job_class
from streamtune.registry.manifest import verify_manifest
from streamtune.sweeps.runner import pick_best, run_tune, timed
from streamtune.sweeps.schema import HoldoutScores, SweepRequest, SweepResult
from streamtune.sweeps.space import run_seed
from streamtune.validation.metrics import get_metric

RESULT = "result.json"


def score(entrypoint: str, artifact_uri: str, holdout: Any, label: str, metric: str) -> float:
    """Load a saved model (manifest verified) and score it on ``holdout``."""
    verify_manifest(artifact_uri)
    predictor = load_job_class(entrypoint)().load(artifact_uri)
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
    trials, t_sweep = timed(
        lambda: run_tune(spec, splits.train, splits.valid, snap.features, req.out_dir, seed=seed)
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
    """Entry point of the Ray Job."""
    import ray

    path = Path(argv[0])
    req = SweepRequest.model_validate_json(path.read_text())
    ray.init(address="auto", log_to_driver=False)
    result = run(req)
    out = path.parent / RESULT
    tmp = out.with_suffix(".tmp")
    tmp.write_text(result.model_dump_json(indent=2))
    tmp.replace(out)
    print(json.dumps({"run_id": req.run_id, "best": result.best.params, "holdout": result.holdout.model_dump()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
