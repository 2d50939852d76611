"""Where streamtune's per-trial time goes: plain Tune, then streamtune's sweep parts added one at a time.

Each step runs N trivial trials (5 reports of ``x * i``) on a local 2-CPU Ray, reuse_actors on and Tune's logger
callbacks off (plain Tune's best mode), in a process of its own, and adds one part of
``sweeps.runner.run_tune`` to the step before it, using streamtune's own code for that part:

====================  ==========================================================================================
``plain``             ``Tuner(fn, param_space={"x": uniform})``: Tune's BasicVariantGenerator, Tune's defaults
``optuna_random``     + ``OptunaSearch`` over ``DefineByRun`` with Optuna's RandomSampler (the searcher plumbing)
``optuna_tpe``        the same with TPESampler (what TPE's suggestions cost on top)
``limiter``           + ``ConcurrencyLimiter(max_concurrent=2)``: exactly ``space.make_searcher``
``with_parameters``   + ``tune.with_parameters`` (train/valid tables) and ``tune.with_resources({"cpu": 1})``
``callbacks``         + the ``_Collector`` callback feeding ``ProgressWriter``, storage under the run's folder,
                      ``verbose=0``
``job``               + the trial is ``runner._named_trial``: the job class imported per trial, ``TuneContext``
                      (node id per report); the job saves nothing (``TrivialNoSave``)
``save``              + ``ctx.save_model``: temp folder, sha256 ``MANIFEST.json``, copy to the artifact store
``run_tune``          the real ``run_tune``: + a ``TrialSummary`` per trial (reads each manifest back)
``run_tune_random``   ``run_tune`` with ``search: random`` (no TPE)
====================  ==========================================================================================

Per step: wall ms per trial, and CPU ms per trial of the driver process and of the Ray processes (workers, raylet,
GCS; sampled every 0.2 s, so workers that start and end during the sweep count) and how many worker processes
started: on 2 cores, the driver's CPU and the trial actors' CPU compete for the same cores.
Each step runs ``--repeats`` times (3), interleaved, and the medians are reported. ``--cprofile N`` adds the
driver's cProfile (top functions by own and by cumulative time) of one ``run_tune`` of N trials.

Usage (hold the Ray lock): ``flock /tmp/streamtune-ray.lock .venv/bin/python benchmarks/profile_tune_overhead.py
--out benchmarks/results/tune-overhead-profile-2core-vm.json --trials 200 --cprofile 2000``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_info import load, machine

HERE = Path(__file__).resolve().parent
STEPS = ["plain", "optuna_random", "optuna_tpe", "limiter", "with_parameters", "callbacks", "job", "save",
         "run_tune", "run_tune_random"]

CHILD = r"""
import cProfile, io, json, os, pstats, sys, tempfile, threading, time
os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
import psutil
import pyarrow as pa
import ray
from ray import tune
from streamtune.config import JobSpec
from streamtune.sweeps import runner
from streamtune.sweeps.progress import ProgressWriter
from streamtune.sweeps.space import DefineByRun, make_sampler, make_searcher

step, n, code, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
order = STEPS_LIST
at = order.index(step)
search = "random" if step in ("run_tune_random", "optuna_random") else "tpe"
spec = JobSpec.parse({
    "name": "bench", "dataset": {"name": "d", "label": "y"},
    "job": {"entrypoint": "benchjobs.trivial:" + ("TrivialNoSave" if step == "job" else "Trivial"), "code": code},
    "sweep": {"metric": "score", "mode": "max", "num_samples": n, "max_concurrent": 2, "max_t": 5, "scheduler": "fifo",
              "search": search, "grace_period": 5, "resources": {"cpu": 1},
              "space": {"x": {"type": "uniform", "low": 0, "high": 1}}},
    "serve": {"app": "bench"},
})
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"py_modules": [code]})
table = pa.table({"x": [0.0], "y": [0.0]})
out = tempfile.mkdtemp()

def objective(config, **kwargs):
    total = 0.0
    for i in range(5):
        total += config["x"] * i
        tune.report({"score": total})

def tuner():
    from ray.tune.search.optuna import OptunaSearch
    sweep = spec.sweep
    if step == "plain":
        return tune.Tuner(objective, param_space={"x": tune.uniform(0.0, 1.0)},
                          tune_config=tune.TuneConfig(num_samples=n, metric="score", mode="max", reuse_actors=True))
    if step in ("optuna_random", "optuna_tpe"):
        searcher = OptunaSearch(space=DefineByRun(sweep.space), metric="score", mode="max",
                                sampler=make_sampler(sweep, 0))
    else:
        searcher = make_searcher(sweep, 0)
    trainable = objective
    if at >= order.index("with_parameters"):
        if at >= order.index("job"):
            trainable = tune.with_parameters(runner._named_trial(out), entrypoint=spec.job.entrypoint, fixed={},
                                             train=table, valid=table, label="y", features=["x"], out_uri=out)
        else:
            trainable = tune.with_parameters(objective, train=table, valid=table)
        trainable = tune.with_resources(trainable, {"cpu": 1, "gpu": 0})
    run_config = None
    if at >= order.index("callbacks"):
        run_config = tune.RunConfig(name="tune", storage_path=out, verbose=0,
                                    callbacks=[runner._Collector(ProgressWriter(out, metric="score", mode="max",
                                                                                 planned=n, max_t=5))])
    return tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=n, metric="score", mode="max",
                      search_alg=searcher, reuse_actors=True), run_config=run_config)

class Sampler:
    # Samples the CPU time of every process under this one (Ray's workers, raylet, GCS) every 0.2 s, so workers
    # that start and end during the sweep count too; a process's last sample stands for its total.

    def __init__(self):
        self.seen, self.workers, self.stop = {}, set(), threading.Event()
        self.sample()
        self.start_cpu = dict(self.seen)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self):
        for p in psutil.Process().children(recursive=True):
            try:
                t = p.cpu_times()
                name = " ".join(p.cmdline()[:1]) + p.name()
            except psutil.Error:
                continue
            self.seen[p.pid] = t.user + t.system
            if "ray::" in name or "default_worker" in name:
                self.workers.add(p.pid)

    def run(self):
        while not self.stop.wait(0.2):
            self.sample()

    def finish(self):
        self.stop.set()
        self.thread.join()
        self.sample()
        out = {"ray_workers": 0.0, "ray_system": 0.0}
        for pid, total in self.seen.items():
            out["ray_workers" if pid in self.workers else "ray_system"] += total - self.start_cpu.get(pid, 0.0)
        return out, len([p for p in self.workers if p not in self.start_cpu])

me = psutil.Process()
sampler = Sampler()
d0 = sum(me.cpu_times()[:2])
prof = cProfile.Profile() if profile else None
t0 = time.time()
if prof: prof.enable()
if step.startswith("run_tune"):
    trials = runner.run_tune(spec, table, table, ["x"], out)
    assert sum(1 for t in trials if t.artifact_uri) == n
else:
    tuner().fit()
if prof: prof.disable()
t1 = time.time()
cpu, new_workers = sampler.finish()
d1 = sum(me.cpu_times()[:2])
res = {"step": step, "trials": n, "sweep_s": round(t1 - t0, 2), "per_trial_ms": round((t1 - t0) / n * 1000, 1),
       "driver_cpu_ms_per_trial": round((d1 - d0) / n * 1000, 1),
       "worker_processes_started": new_workers,
       **{k + "_cpu_ms_per_trial": round(v / n * 1000, 1) for k, v in cpu.items()}}
if prof:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
    res["cprofile_tottime"] = [ln.rstrip() for ln in s.getvalue().splitlines() if ln.strip()][:45]
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
    res["cprofile_cumulative"] = [ln.rstrip() for ln in s.getvalue().splitlines() if ln.strip()][:60]
print("RESULT " + json.dumps(res))
"""


def run_step(step: str, n: int, profile: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    before = load()
    script = CHILD.replace("STEPS_LIST", repr(STEPS))
    code = str(HERE / "benchjobs" / "benchjobs")
    out = subprocess.run([sys.executable, "-c", script, step, str(n), code, "1" if profile else "0"],
                         capture_output=True, text=True, env=env, cwd=tempfile.mkdtemp(), timeout=1200)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{step} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    result["load_before"] = before
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("cprofile")}), file=sys.stderr)
    return result


def median_step(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One step's repeats: the median of each number, and every repeat's wall ms per trial."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and k != "trials"]
    out: dict[str, Any] = {"step": runs[0]["step"], "trials": runs[0]["trials"]}
    out.update({k: statistics.median(r[k] for r in runs) for k in keys})
    out["per_trial_ms_each"] = [r["per_trial_ms"] for r in runs]
    out["load_before_each"] = [r["load_before"] for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each step, interleaved; medians reported")
    parser.add_argument("--steps", nargs="*", default=STEPS, choices=STEPS)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also profile the driver (cProfile) in one run_tune step of N trials")
    parser.add_argument("--out")
    args = parser.parse_args()

    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.steps}
    for _ in range(args.repeats):  # interleaved, so a busy spell on the shared cores hits every step alike
        for s in args.steps:
            runs[s].append(run_step(s, args.trials, False))
    steps = [median_step(runs[s]) for s in args.steps]
    profiled = run_step("run_tune", args.cprofile, True) if args.cprofile else None
    ladder = []
    for prev, cur in zip([None, *steps[:-1]], steps, strict=True):
        added = None if prev is None or cur["step"] == "run_tune_random" else round(
            cur["per_trial_ms"] - prev["per_trial_ms"], 1)
        ladder.append({"step": cur["step"], "per_trial_ms": cur["per_trial_ms"], "added_ms": added,
                       "driver_cpu_ms_per_trial": cur["driver_cpu_ms_per_trial"],
                       "ray_workers_cpu_ms_per_trial": cur["ray_workers_cpu_ms_per_trial"]})
    report = {
        "benchmark": f"per-trial cost of streamtune's sweep parts, {args.trials} trivial trials x 5 reports, "
                     f"local Ray with 2 CPUs, reuse_actors, no Tune loggers; median of {args.repeats} interleaved runs",
        "machine": machine(),
        "ladder": ladder, "steps": steps, "run_tune_cprofile": profiled,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
