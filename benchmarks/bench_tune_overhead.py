"""Per-trial overhead of a sweep: plain Ray Tune (``baselines/plain_tune.py``) vs streamtune's runner.

For each trial count N, four configurations run one after the other in the same run, each in its own process
(Tune reads TUNE_DISABLE_AUTO_CALLBACK_LOGGERS at import), on a local 2-CPU Ray, with N trivial trials of 5
reports each:

- ``plain_default``: Tuner defaults (a fresh actor per trial, CSV/JSON/TensorBoard loggers); only for N <= 200,
  as the issue asks (at ~1 s a trial, 2,000 would take half an hour);
- ``plain_reuse``: ``reuse_actors=True`` (with Tune's loggers: always slower than the next; N <= 200 only, which
  keeps the 2,000-trial call near 10 minutes);
- ``plain_reuse_nologgers``: ``reuse_actors=True`` and no logger callbacks (plain Tune's best mode);
- ``streamtune``: ``sweeps.runner.run_tune``, the real sweep path minus the Ray Job and the data: OptunaSearch
  (TPE) behind a ConcurrencyLimiter of 2, FIFO, the job loaded per trial, a model saved per trial with its
  sha256 manifest, ``progress.json``, and a :class:`~streamtune.sweeps.schema.TrialSummary` per trial (the
  lineage the registry records: params, metrics, artifact, manifest digest, node). It checks every trial has it.

``per_trial_ms`` is the sweep's wall time (``Tuner.fit`` / ``run_tune``, Ray already up) over N. Results are
merged into OUT.json by N, so the 2,000-trial count can run as a call of its own (each call stays < 10 min);
every count keeps its own baseline, machine load and date.

Both sides import ``ray.tune`` before their clocks start (the baseline at its top, streamtune's script likewise).

Usage (hold the Ray lock): ``flock /tmp/streamtune-ray.lock .venv/bin/python benchmarks/bench_tune_overhead.py
--out benchmarks/results/tune-overhead-2core-vm.json 20 200``, then ``... --out ... 2000``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_info import load, machine

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baselines" / "plain_tune.py"
DEFAULT_MAX_N = 200
"""Largest N that plain Tune's default and reuse (with loggers) modes run at."""

OURS = r"""
import json, sys, tempfile, time
import pyarrow as pa
import ray
from pydantic import TypeAdapter
from streamtune.config import JobSpec
from ray import tune  # noqa: F401 -- imported before the clock starts, as the plain baseline does
from streamtune.sweeps.runner import run_tune
from streamtune.sweeps.schema import TrialSummary
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
lineage = [t for t in trials if t.artifact_uri and t.manifest_sha256 and t.node_id and "score" in t.metrics]
assert len(lineage) == n, (len(lineage), n)
blob = TypeAdapter(list[TrialSummary]).dump_json(trials)
t3 = time.time()
print(json.dumps({"mode": "streamtune", "trials": n, "ray_init_s": round(t1 - t0, 2), "sweep_s": round(t2 - t1, 2),
                  "per_trial_ms": round((t2 - t1) / n * 1000), "trials_with_lineage": len(lineage),
                  "lineage_json_bytes": len(blob), "lineage_json_s": round(t3 - t2, 3)}))
"""


def run(cmd: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
    before = load()
    started = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.mkdtemp(), timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"mode"')]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{cmd} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result.update(load_before=before, load_after=load(), process_s=round(time.time() - started, 1))
    print(json.dumps(result), file=sys.stderr)
    return result


def measure(n: int) -> dict[str, Any]:
    """Every configuration at N trials, one after the other."""
    py = sys.executable
    modes = ["default", "reuse", "reuse_nologgers"] if n <= DEFAULT_MAX_N else ["reuse_nologgers"]
    results = {f"plain_{m}": run([py, str(BASELINE), str(n), m]) for m in modes}
    results["streamtune"] = run([py, "-c", OURS, str(n), str(HERE / "benchjobs" / "benchjobs")])
    ours = results["streamtune"]["per_trial_ms"]
    best_name = min((k for k in results if k.startswith("plain_reuse")), key=lambda k: results[k]["per_trial_ms"])
    ratios: dict[str, Any] = {
        "best_plain_mode": best_name,
        "streamtune_vs_best_plain": round(ours / results[best_name]["per_trial_ms"], 2),
        "streamtune_vs_plain_reuse_nologgers": round(ours / results["plain_reuse_nologgers"]["per_trial_ms"], 2),
    }
    if "plain_default" in results:
        ratios["plain_default_vs_streamtune"] = round(results["plain_default"]["per_trial_ms"] / ours, 1)
    return {**results, "ratios": ratios, "date": time.strftime("%Y-%m-%d %H:%M")}


def goals(counts: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals over every count measured so far."""
    ns = sorted(counts, key=int)
    per_trial = {n: counts[n]["streamtune"]["per_trial_ms"] for n in ns}
    vs_best = {n: counts[n]["ratios"]["streamtune_vs_best_plain"] for n in ns}
    vs_default = {n: counts[n]["ratios"]["plain_default_vs_streamtune"] for n in ns
                  if "plain_default_vs_streamtune" in counts[n]["ratios"]}
    flat = round(per_trial[ns[-1]] / per_trial[ns[0]], 2) if len(ns) > 1 else None
    return {
        "at_most_1x_best_plain": {"goal": "<= 1.0", "measured": vs_best,
                                  "met": all(v <= 1.0 for v in vs_best.values())},
        "at_least_10x_better_than_default": {"goal": ">= 10", "measured": vs_default,
                                             "met": bool(vs_default) and all(v >= 10 for v in vs_default.values())},
        "flat_per_trial_ms": {"goal": f"per-trial ms at {ns[-1]} about that at {ns[0]} (ratio <= 1.2)",
                              "measured": per_trial, "ratio_last_vs_first": flat,
                              "met": flat is not None and flat <= 1.2},
        "lineage_recorded": {n: counts[n]["streamtune"]["trials_with_lineage"] == int(n) for n in ns},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[20, 200], help="trial counts N")
    parser.add_argument("--out", help="JSON to write; counts already in it are kept unless measured again")
    args = parser.parse_args()

    report: dict[str, Any] = {}
    if args.out and Path(args.out).is_file():
        report = json.loads(Path(args.out).read_text())
    counts = dict(report.get("counts", {}))
    for n in args.counts:
        counts[str(n)] = measure(n)
    report = {
        "benchmark": "per-trial overhead, N trivial trials x 5 reports, local Ray with 2 CPUs",
        "machine": machine(),
        "counts": {n: counts[n] for n in sorted(counts, key=int)},
        "goals": goals(counts),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
