"""Plain Ray Tune, no streamtune: N trivial function trials of 5 reports each on 2 CPUs, timed.

Modes (one per process: Tune reads TUNE_DISABLE_AUTO_CALLBACK_LOGGERS when it is imported):
  default          Tuner defaults (Ray 2.60 starts a fresh actor per trial)
  reuse            TuneConfig(reuse_actors=True)
  reuse_nologgers  reuse_actors=True and no auto-attached logger callbacks

Usage: python benchmarks/baselines/plain_tune.py [N] [MODE]; prints one JSON line.
"""

import json
import os
import sys
import time

trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
mode = sys.argv[2] if len(sys.argv) > 2 else "default"
if mode not in ("default", "reuse", "reuse_nologgers"):
    raise SystemExit(f'Got "{mode}" for MODE; must be default, reuse or reuse_nologgers')
if mode == "reuse_nologgers":
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"

import ray  # noqa: E402
from ray import tune  # noqa: E402


def objective(config: dict) -> None:
    total = 0.0
    for step in range(5):
        total += config["x"] * step
        tune.report({"score": total})


started = time.time()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
ready = time.time()
tuner = tune.Tuner(objective, param_space={"x": tune.uniform(0.0, 1.0)},
                   tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="max",
                                               reuse_actors=mode != "default"))
tuner.fit()
done = time.time()
print(json.dumps({"mode": mode, "trials": trials, "ray_init_s": round(ready - started, 2),
                  "sweep_s": round(done - ready, 2), "per_trial_ms": round((done - ready) / trials * 1000)}))
