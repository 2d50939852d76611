"""What a run trains on, measured on the demo's data: window vs expanding training data, with and without refit.

The demo publishes a first batch of synthetic sales (drift 0.0) and then a drifted one (drift 1.0), 2,200 rows
each. This script runs the real sweep job (``streamtune.sweeps.driver.run``: the demo's JobSpec, Tune with TPE
and ASHA, the holdout scoring) in-process on a local 2-CPU Ray, for the second window, under:

- ``window``: the run trains on its own (drifted) window only;
- ``expanding``: it trains on both windows;

each with ``validation.refit`` on and off, over 3 seeds (run ids). It reports two numbers per configuration:

- ``holdout_rmse``: the gate's number, the run's own holdout (a random 20 % of what the run read, so the
  holdouts of the two policies differ);
- ``future_rmse``: the registered model on 2,000 fresh drifted rows that no configuration saw (the same rows
  for all), which compares the policies on equal terms.

It is a measurement, not a test. Usage, holding the Ray lock: ``flock /tmp/streamtune-ray.lock .venv/bin/python
benchmarks/training_policy.py benchmarks/results/training-policy-2core-vm.json``
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ("r-policybench00001", "r-policybench00002", "r-policybench00003")


def _spec(policy: str, refit: bool):  # noqa: ANN202
    from streamtune.config import JobSpec, load_jobspec

    data = load_jobspec(ROOT / "configs" / "demo.yaml").model_dump(mode="json", by_alias=True)
    data["dataset"]["training"] = {"policy": policy}
    data["validation"]["refit"] = refit
    return JobSpec.parse(data)


def main(out: str | None) -> dict:
    import ray

    from streamtune.dev.synthetic import make_sales, write_batch
    from streamtune.sweeps import SweepRequest, TrainingWindow, TrialSummary
    from streamtune.sweeps.driver import run
    from streamtune.sweeps.scoring import score_holdout

    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"  # jobs/ for the trials
    sys.path.insert(0, str(ROOT))  # and for the scoring in this process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tmp = Path(tempfile.mkdtemp(prefix="policy-bench-"))
    first = write_batch(tmp / "w1", 4, 550, drift=0.0, seed=1)   # the demo's batches: 4 files x 550 rows
    second = write_batch(tmp / "w2", 4, 550, drift=1.0, seed=2)
    future = make_sales(2000, drift=1.0, seed=99)
    history = [TrainingWindow(run_id="r-window1", uris=first, num_rows=2200, created_at=1.0)]
    results = []
    for policy in ("window", "expanding"):
        for refit in (False, True):
            spec = _spec(policy, refit)
            for seed in SEEDS:
                run_id = f"{seed}-{policy[0]}{int(refit)}"
                out_uri = str(tmp / run_id)
                req = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json", by_alias=True), uris=second,
                                   history=history if policy == "expanding" else [], out_uri=out_uri,
                                   trusted_roots=[str(tmp)])
                t0 = time.perf_counter()
                result = run(req)
                seconds = time.perf_counter() - t0
                if result.holdout.challenger is None:
                    raise SystemExit(f"{run_id}: the winner could not be scored: {result.holdout.error}")
                best: TrialSummary = result.best
                alone = req.model_copy(update={"out_uri": f"{out_uri}/future"})
                future_rmse = score_holdout(alone, spec, best, future).challenger
                results.append({"policy": policy, "refit": refit, "run_id": run_id,
                                "rows_read": result.snapshot["num_rows"], "holdout_rows": result.holdout.rows,
                                "holdout_rmse": result.holdout.challenger, "future_rmse": future_rmse,
                                "trial_holdout_rmse": result.refit.trial_holdout if result.refit else None,
                                "seconds": round(seconds, 2)})
                print(json.dumps(results[-1]), file=sys.stderr)
    ray.shutdown()
    summary = {}
    for policy in ("window", "expanding"):
        for refit in (False, True):
            rows = [r for r in results if r["policy"] == policy and r["refit"] == refit]
            summary[f"{policy}{'+refit' if refit else ''}"] = {
                "holdout_rmse_mean": round(statistics.mean(r["holdout_rmse"] for r in rows), 4),
                "future_rmse_mean": round(statistics.mean(r["future_rmse"] for r in rows), 4),
                "rows_read": rows[0]["rows_read"],
            }
    base = summary["window"]["future_rmse_mean"]
    report = {
        "benchmark": "training_policy", "data": "demo batches: 2,200 rows at drift 0.0, then 2,200 at drift 1.0",
        "future_rows": 2000, "seeds": len(SEEDS), "summary": summary,
        "future_rmse_ratio_vs_window": {k: round(v["future_rmse_mean"] / base, 4) for k, v in summary.items()},
        "runs": results,
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "ray": ray.__version__, "date": time.strftime("%Y-%m-%d")},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
