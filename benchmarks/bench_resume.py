"""What resumable sweeps cost: Tune's experiment state saved at streamtune's period, after every step, and at
Tune's default period; and the restore of an experiment whose driver died.

For each trial count N, in one run, each configuration in its own process on a local 2-CPU Ray, N trivial trials
of 5 reports (``benchjobs.trivial:Trivial``, as ``bench_tune_overhead.py``) through ``sweeps.runner.run_tune``:

- ``tune_default``: ``TUNE_GLOBAL_CHECKPOINT_S=auto``, Tune's default (the baseline: at least 10 s between saves,
  so a driver killed within 10 s of a trial's end runs that trial again);
- ``streamtune``: the variable unset, so ``run_tune`` sets ``sweeps.resume.checkpoint_period_s(N)`` (2 ms per
  planned trial, at most 10 s);
- ``every_step``: ``TUNE_GLOBAL_CHECKPOINT_S=0``, a save after every step of Tune's loop (``--modes`` leaves it
  out at large N, where it grows with N squared);
- ``resume``: ``run_tune(..., resume=True, attempt=2)`` on the last ``streamtune`` run's folder in a new process
  and a new Ray: ``Tuner.restore`` of N ended trials, searcher state included, and the summaries (none runs again).

The sweep modes alternate ``--repeat`` times; ``per_trial_ms`` is the sweep's wall time (Ray already up) over N,
and each mode's overhead is the ratio of its median to ``tune_default``'s. ``state_bytes`` is the size of the
experiment folder's state files (experiment state, searcher, callbacks) at the end.

Usage (hold the Ray lock): ``flock /tmp/streamtune-ray.lock .venv/bin/python benchmarks/bench_resume.py
--out benchmarks/results/resume-2core-vm.json 20 200``, then ``... --repeat 1 --modes tune_default,streamtune
2000`` (counts already in OUT.json are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SWEEP = r"""
import glob, json, os, sys, time
import pyarrow as pa
import ray
from streamtune.config import JobSpec
from streamtune.sweeps.runner import run_tune
n, code, out, resume = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
spec = JobSpec.parse({
    "name": "bench", "dataset": {"name": "d", "label": "y"},
    "job": {"entrypoint": "benchjobs.trivial:Trivial", "code": code},
    "sweep": {"metric": "score", "mode": "max", "num_samples": n, "max_concurrent": 2, "max_t": 5, "scheduler": "fifo",
              "grace_period": 5, "resources": {"cpu": 1}, "seed": 3,
              "space": {"x": {"type": "uniform", "low": 0, "high": 1}}},
    "serve": {"app": "bench"},
})
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"py_modules": [code]})
table = pa.table({"x": [0.0], "y": [0.0]})
t0 = time.time()
trials = run_tune(spec, table, table, ["x"], out, seed=3, attempt=2 if resume else 1, resume=resume)
t1 = time.time()
assert len(trials) == n and all(t.artifact_uri for t in trials), len(trials)
kept = sum(t.attempt == 1 for t in trials)
state = sum(os.path.getsize(p) for p in glob.glob(f"{out}/tune/*") if os.path.isfile(p) and not p.endswith("tuner.pkl"))
print(json.dumps({"period": os.environ["TUNE_GLOBAL_CHECKPOINT_S"], "resume": resume, "trials": n,
                  "sweep_s": round(t1 - t0, 3), "per_trial_ms": round((t1 - t0) / n * 1000, 1),
                  "kept_trials": kept, "state_bytes": state}))
"""


def load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (2 shared cores: other work shows here)."""
    return [round(x, 2) for x in os.getloadavg()]


MODES = {"tune_default": "auto", "streamtune": None, "every_step": "0"}
"""Each sweep mode's TUNE_GLOBAL_CHECKPOINT_S (None: unset, streamtune chooses)."""


def run(n: int, out: str, *, period: str | None, resume: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    env.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    if period is not None:
        env["TUNE_GLOBAL_CHECKPOINT_S"] = period
    before = load()
    cmd = [sys.executable, "-c", SWEEP, str(n), str(HERE / "benchjobs" / "benchjobs"), out,
           "resume" if resume else "new"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.mkdtemp(), timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"period"')]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{cmd[3:]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(load_before=before, load_after=load())
    print(json.dumps(result), file=sys.stderr)
    return result


def measure(n: int, repeat: int, modes: list[str]) -> dict[str, Any]:
    """The sweep modes, alternating, then a resume of the last streamtune run."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    last = ""
    for _ in range(repeat):
        for mode in modes:
            out = tempfile.mkdtemp(prefix="bench-resume-")
            runs[mode].append(run(n, out, period=MODES[mode]))
            last = out if mode == "streamtune" else last
    resumed = run(n, last, period=None, resume=True)
    median = {mode: statistics.median(r["per_trial_ms"] for r in rs) for mode, rs in runs.items()}
    return {
        **runs, "resume": resumed,
        "median_per_trial_ms": median,
        "vs_tune_default": {m: round(median[m] / median["tune_default"], 3) for m in modes if m != "tune_default"},
        "resume_s": resumed["sweep_s"], "resume_kept_trials": resumed["kept_trials"],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[20, 200], help="trial counts N")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each sweep mode per count, alternating")
    parser.add_argument("--modes", default="tune_default,streamtune,every_step",
                        help="sweep modes to run, comma-separated (tune_default is the baseline and required)")
    parser.add_argument("--out", help="JSON to write; counts already in it are kept unless measured again")
    args = parser.parse_args()
    import ray

    report: dict[str, Any] = {}
    if args.out and Path(args.out).is_file():
        report = json.loads(Path(args.out).read_text())
    counts = dict(report.get("counts", {}))
    for n in args.counts:
        counts[str(n)] = measure(n, args.repeat, args.modes.split(","))
    report = {
        "benchmark": "Tune experiment state saved at streamtune's period, every step and Tune's default period; "
                     "restore of a dead driver's experiment; N trivial trials x 5 reports, local Ray with 2 CPUs",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "ray": ray.__version__, "when": time.strftime("%Y-%m-%d")},
        "counts": {n: counts[n] for n in sorted(counts, key=int)},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
