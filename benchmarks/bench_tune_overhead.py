"""Per-trial overhead of a sweep: plain Ray Tune (``baselines/plain_tune.py``) vs streamtune's runner.

Each configuration runs in its own process (Tune reads TUNE_DISABLE_AUTO_CALLBACK_LOGGERS at import), one after
the other in the same run, on 2 CPUs, with N trivial trials of 5 reports each. streamtune's side is
``sweeps.runner.run_tune`` with OptunaSearch (TPE) and ASHA, a JobSpec, per-trial model saving and a manifest:
the real sweep path minus the Ray Job and the data. Prints JSON with ms per trial and the ratios.

Usage: python benchmarks/bench_tune_overhead.py [N] [OUT.json]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baselines" / "plain_tune.py"

OURS = r"""
import json, sys, tempfile, time
import pyarrow as pa
import ray
from streamtune.config import JobSpec
from streamtune.sweeps.runner import run_tune
n = int(sys.argv[1])
spec = JobSpec.parse({
    "name": "bench", "dataset": {"name": "d", "label": "y"},
    "job": {"entrypoint": "benchjobs.trivial:Trivial", "code": sys.argv[2]},
    "sweep": {"metric": "score", "mode": "max", "num_samples": n, "max_concurrent": 2, "max_t": 5, "scheduler": "fifo",
              "grace_period": 5, "resources": {"cpu": 1}, "space": {"x": {"type": "uniform", "low": 0, "high": 1}}},
    "serve": {"app": "bench"},
})
t0 = time.time()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"py_modules": [sys.argv[2]]})
t1 = time.time()
table = pa.table({"x": [0.0], "y": [0.0]})
trials = run_tune(spec, table, table, ["x"], tempfile.mkdtemp())
t2 = time.time()
assert sum(1 for t in trials if t.artifact_uri) == n, trials
print(json.dumps({"mode": "streamtune", "trials": n, "ray_init_s": round(t1 - t0, 2), "sweep_s": round(t2 - t1, 2),
                  "per_trial_ms": round((t2 - t1) / n * 1000)}))
"""


def run(cmd: list[str]) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.mkdtemp(), timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"mode"')]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{cmd} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    n = sys.argv[1] if len(sys.argv) > 1 else "20"
    py = sys.executable
    results = {
        "plain_default": run([py, str(BASELINE), n, "default"]),
        "plain_reuse_nologgers": run([py, str(BASELINE), n, "reuse_nologgers"]),
        "streamtune": run([py, "-c", OURS, n, str(HERE / "benchjobs" / "benchjobs")]),
    }
    ours = results["streamtune"]["per_trial_ms"]
    text = json.dumps({
        "benchmark": f"per-trial overhead, {n} trivial trials x 5 reports, 2 CPUs",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "when": time.strftime("%Y-%m-%d")},
        **results,
        "ratios": {
            "streamtune_vs_plain_reuse_nologgers": round(ours / results["plain_reuse_nologgers"]["per_trial_ms"], 2),
            "plain_default_vs_streamtune": round(results["plain_default"]["per_trial_ms"] / ours, 1),
        },
    }, indent=2)
    print(text)
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(text + "\n")


if __name__ == "__main__":
    main()
