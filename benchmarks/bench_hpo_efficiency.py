"""HPO efficiency: epochs to reach a target validation rmse, ASHA + TPE against random search at full budget.

Every arm runs streamtune's ``sweeps.runner.run_tune`` in-process on a local 2-CPU Ray, on the demo's synthetic
sales data (``dev.synthetic.make_sales``, drift 0.5: 3,000 train and 1,000 validation rows), with one of two jobs
(``--job``), each through a wrapper in ``benchmarks/benchjobs`` that appends every report to a trace file:

- ``gbdt`` (default): the LightGBM template (``jobs.tabular_gbdt`` via ``benchjobs.timed_gbdt``), an "epoch" is one
  report of ``REPORT_EVERY`` (15) boosting rounds;
- ``mlp``: the PyTorch MLP template (``jobs.torch_mlp`` via ``benchjobs.timed_mlp``), an epoch is a real epoch
  (one pass over the training rows, then a report): the iterative learner ASHA is designed for.

Arms (the same for both jobs):

- ``asha_tpe``: ``search: tpe``, ``scheduler: asha`` (grace period 1 report, Ray's reduction factor 4: rungs at
  1, 4 and 16 reports);
- ``asha_tpe_grace4``: the same with a grace period of 4 reports (rungs at 4 and 16);
- ``asha_random``: ``search: random`` with ASHA at grace 1: the random arm's own configs (same sampler, same seed:
  its first trials draw the random arm's configs in the same order), pruned; it separates ASHA's effect from TPE's;
- ``tpe_full``: ``search: tpe``, ``scheduler: fifo`` (what TPE alone does, every trial to the end);
- ``random_full``: ``search: random``, ``scheduler: fifo``: every trial runs all its reports.

Trials have at most ``MAX_T`` (20) reports and run 2 at a time, over the same sampler seeds (``--seeds``, 5). The
full-budget arms run ``--trials`` (24) trials, 480 epochs; the ASHA arms up to ``--asha-trials`` (96), since they
prune most trials after a few epochs: each arm gets a budget of epochs of the same order to reach the target in,
and what counts is how many it spent. An arm's epochs are counted over all its trials in the order their reports
arrived (the trace), pruned trials included; "epochs to target" is that count at the first report whose validation
rmse is at or below the target.

The target is the worst (highest) of the random arm's final best rmse over the seeds: the level full-budget
random search reached in every seed. A stricter one, the median of those bests, is reported too (an arm that
never reaches it in a seed counts as not reached there, and its whole spend is used as a lower bound in the means).
Goal (issue 10): ASHA + TPE needs at most 1/3 of random search's epochs to the target (and reaches it every seed).

What explains the result is in ``analysis``: how well each rung ranks the random arm's trials against their end
(Spearman), whether a rung (top quarter kept) would keep random's best trial, what ``asha_random`` did to random's
best config, and the learning rate of the trials each arm ran to the end.

Usage (hold the Ray lock): ``flock /tmp/streamtune-ray.lock .venv/bin/python benchmarks/bench_hpo_efficiency.py
benchmarks/results/hpo-efficiency-2core-vm.json`` (``--job mlp benchmarks/results/hpo-efficiency-mlp-2core-vm.json``)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_info import load, machine

ROOT = Path(__file__).resolve().parents[1]
BENCHJOBS = ROOT / "benchmarks" / "benchjobs" / "benchjobs"
MAX_T, REPORT_EVERY = 20, 15
RUNGS = (1, 4, 16)
JOBS: dict[str, dict[str, Any]] = {
    "gbdt": {
        "entrypoint": "benchjobs.timed_gbdt:Job",
        "params": {"objective": "regression", "num_boost_round": MAX_T * REPORT_EVERY, "report_every": REPORT_EVERY,
                   "num_threads": 1},
        "space": {"learning_rate": {"type": "loguniform", "low": 0.003, "high": 0.3},
                  "num_leaves": {"type": "int", "low": 4, "high": 128},
                  "min_data_in_leaf": {"type": "int", "low": 2, "high": 100},
                  "lambda_l2": {"type": "loguniform", "low": 0.001, "high": 10.0}},
        "lr": "learning_rate",
        "describe": f"jobs.tabular_gbdt, {MAX_T * REPORT_EVERY} rounds, a report (epoch) every {REPORT_EVERY}",
    },
    "mlp": {
        "entrypoint": "benchjobs.timed_mlp:Job",
        "params": {"objective": "regression", "epochs": MAX_T, "num_threads": 1},
        "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 3e-2},
                  "hidden": {"type": "int", "low": 8, "high": 128},
                  "layers": {"type": "int", "low": 1, "high": 3},
                  "weight_decay": {"type": "loguniform", "low": 1e-5, "high": 0.1},
                  "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
                  "batch_size": {"type": "choice", "values": [32, 64, 128, 256]}},
        "lr": "lr",
        "describe": f"jobs.torch_mlp (AdamW, CPU, 1 thread), {MAX_T} epochs, a report after each",
    },
}
ARMS = {"asha_tpe": {"search": "tpe", "scheduler": "asha", "grace_period": 1},
        "asha_tpe_grace4": {"search": "tpe", "scheduler": "asha", "grace_period": 4},
        "asha_random": {"search": "random", "scheduler": "asha", "grace_period": 1},
        "tpe_full": {"search": "tpe", "scheduler": "fifo", "grace_period": 1},
        "random_full": {"search": "random", "scheduler": "fifo", "grace_period": 1}}
PRUNING = ("asha_tpe", "asha_tpe_grace4", "asha_random")
"""Arms that stop trials early; they get ``--asha-trials`` trials, the others ``--trials``."""
GOAL_ARMS = ("asha_tpe", "asha_tpe_grace4")
"""The arms the goal is about (ASHA + TPE)."""


def spec_for(job: str, arm: str, trials: int, trace: str) -> Any:
    from streamtune.config import JobSpec

    setup = JOBS[job]
    return JobSpec.parse({
        "name": "hpo", "dataset": {"name": "sales", "label": "sales"},
        "job": {"entrypoint": setup["entrypoint"], "code": str(BENCHJOBS),
                "params": {**setup["params"], "trace_file": trace}},
        "sweep": {"metric": "rmse", "mode": "min", "num_samples": trials, "max_concurrent": 2, "max_t": MAX_T,
                  "resources": {"cpu": 1}, "space": setup["space"], **ARMS[arm]},
        "serve": {"app": "hpo"},
    })


def read_trace(path: str) -> list[dict[str, Any]]:
    """Every report of a sweep, in the order they were made."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["t"])


def epochs_to(trace: list[dict[str, Any]], target: float) -> int | None:
    """Reports made (over all trials) up to the first whose rmse is at or below ``target``; None if none is."""
    for i, row in enumerate(trace, 1):
        if row["rmse"] <= target:
            return i
    return None


def _ranks(values: list[float]) -> Any:
    import numpy as np

    return np.argsort(np.argsort(values))


def _curves(run: dict[str, Any]) -> dict[str, dict[int, float]]:
    """rmse by step, per trial of one run."""
    by_trial: dict[str, dict[int, float]] = {}
    for row in run["trace"]:
        by_trial.setdefault(row["trial"], {})[row["step"]] = row["rmse"]
    return by_trial


def rank_correlation(runs: list[dict[str, Any]], steps: tuple[int, ...] = RUNGS) -> dict[int, float]:
    """Spearman rank correlation, over the full-budget random trials, between a trial's rmse at ASHA's rungs and
    at its last report (mean over seeds): how well an early rung ranks the trials the way the end does.

    Example:
        >>> row = lambda t, s, v: {"trial": t, "step": s, "rmse": v}
        >>> rank_correlation([{"arm": "random_full", "trace": [row("a", 1, 1.0), row("a", MAX_T, 1.0),
        ...     row("b", 1, 2.0), row("b", MAX_T, 2.0), row("c", 1, 3.0), row("c", MAX_T, 0.5)]}], (1,))
        {1: -0.5}
    """
    import numpy as np

    out: dict[int, list[float]] = {step: [] for step in steps}
    for run in runs:
        if run["arm"] != "random_full":
            continue
        curves = _curves(run)
        for step in steps:
            pairs = [(v[step], v[MAX_T]) for v in curves.values() if step in v and MAX_T in v]
            if len(pairs) > 2:
                out[step].append(float(np.corrcoef(_ranks([a for a, _ in pairs]), _ranks([b for _, b in pairs]))[0, 1]))
    return {step: round(sum(v) / len(v), 3) for step, v in out.items() if v}


def rung_keeps(runs: list[dict[str, Any]], steps: tuple[int, ...] = RUNGS) -> dict[int, dict[str, float]]:
    """Over the full-budget random trials of each seed: would a rung at ``step`` that keeps the top quarter (ASHA's
    reduction factor 4, all trials seen at once) keep the trial with the best rmse at ``MAX_T`` (share of seeds),
    and what share of the top quarter at ``MAX_T`` would it keep (mean over seeds).

    Example:
        >>> row = lambda t, s, v: {"trial": t, "step": s, "rmse": v}
        >>> trace = [row(t, s, v) for t, (a, z) in {"a": (1.0, 3.0), "b": (2.0, 2.0), "c": (3.0, 1.0),
        ...          "d": (4.0, 4.0)}.items() for s, v in ((1, a), (MAX_T, z))]
        >>> rung_keeps([{"arm": "random_full", "trace": trace}], (1,))
        {1: {'best_kept_share_of_seeds': 0.0, 'top_quarter_kept': 0.0}}
    """
    out: dict[int, dict[str, list[float]]] = {step: {"best": [], "top": []} for step in steps}
    for run in runs:
        if run["arm"] != "random_full":
            continue
        full = {t: c for t, c in _curves(run).items() if MAX_T in c}
        final = sorted(full, key=lambda t: full[t][MAX_T])
        quarter = max(1, len(full) // 4)
        for step in steps:
            kept = set(sorted(full, key=lambda t: full[t][step])[:quarter])
            out[step]["best"].append(float(final[0] in kept))
            out[step]["top"].append(len(kept & set(final[:quarter])) / quarter)
    return {step: {"best_kept_share_of_seeds": round(statistics.mean(v["best"]), 2),
                   "top_quarter_kept": round(statistics.mean(v["top"]), 2)} for step, v in out.items() if v["best"]}


def random_best_under_asha(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed: random search's best config, and how many epochs ``asha_random`` (same sampler and seed, so the
    same configs in the same order) let it run (``MAX_T``: kept to the end; None: not drawn there)."""
    out = []
    for run in runs:
        if run["arm"] != "random_full":
            continue
        paired = [r for r in runs if r["arm"] == "asha_random" and r["seed"] == run["seed"]]
        if not paired:
            continue
        best = min(run["trials_detail"], key=lambda t: t["best_rmse"])
        same = [t for t in paired[0]["trials_detail"] if t["params"] == best["params"]]
        out.append({"seed": run["seed"], "random_best_rmse": round(best["best_rmse"], 4),
                    "epochs_under_asha_random": same[0]["epochs"] if same else None,
                    "asha_random_best_rmse": round(paired[0]["best_rmse"], 4)})
    return out


def learning_rates(runs: list[dict[str, Any]], lr: str, arms: list[str]) -> dict[str, dict[str, float]]:
    """Median learning rate per arm (all seeds): of every trial, of those that ran all ``MAX_T`` epochs, and of the
    trial that gave the arm's best rmse."""
    out = {}
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        every = [t["params"][lr] for r in mine for t in r["trials_detail"]]
        full = [t["params"][lr] for r in mine for t in r["trials_detail"] if t["epochs"] >= MAX_T]
        best = [min(r["trials_detail"], key=lambda t: t["best_rmse"])["params"][lr] for r in mine]
        out[arm] = {"all_trials": round(statistics.median(every), 4),
                    "trials_run_to_the_end": round(statistics.median(full), 4) if full else None,
                    "best_trial": round(statistics.median(best), 4)}
    return out


def to_target(runs: list[dict[str, Any]], seeds: list[int], target: float, arms: list[str]) -> dict[str, Any]:
    """Epochs each arm spent to reach ``target``, per seed; means count an arm that never got there at its whole
    spend (a lower bound), and say in how many seeds it got there."""
    per_seed = []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for r in runs:
            if r["seed"] == seed:
                got = epochs_to(r["trace"], target)
                row[r["arm"]] = got if got is not None else f">{r['epochs']}"
        per_seed.append(row)

    def spent(value: Any) -> int:
        return value if isinstance(value, int) else int(str(value)[1:])

    means = {arm: round(statistics.mean(spent(p[arm]) for p in per_seed), 1) for arm in arms}
    return {
        "target_rmse": target, "per_seed": per_seed,
        "seeds_reached": {arm: sum(1 for p in per_seed if isinstance(p[arm], int)) for arm in arms},
        "mean_epochs": means, "vs_random": {arm: round(means[arm] / means["random_full"], 3) for arm in arms},
    }


def run_arm(job: str, arm: str, seed: int, trials: int, data: Any, tmp: Path) -> dict[str, Any]:
    from streamtune.sweeps.runner import run_tune

    trace = str(tmp / f"{arm}-{seed}.jsonl")
    spec = spec_for(job, arm, trials, trace)
    train, valid, features = data
    t0 = time.perf_counter()
    summaries = run_tune(spec, train, valid, features, str(tmp / f"{arm}-{seed}"), seed=seed)
    wall = time.perf_counter() - t0
    rows = read_trace(trace)
    best = min(r["rmse"] for r in rows)
    curves = {}
    for row in rows:
        curves.setdefault(row["trial"], []).append(row["rmse"])
    winner = min((s for s in summaries if s.artifact_uri), key=lambda s: float(s.metrics["rmse"]))
    out = {"arm": arm, "seed": seed, "trials": len(summaries), "epochs": len(rows),
           "epochs_per_trial": {s.trial_id: s.iterations for s in summaries}, "best_rmse": best,
           "winner_rmse": round(min(float(s.metrics["rmse"]) for s in summaries if s.artifact_uri), 4),
           "winner_params": winner.params,
           "trials_detail": [{"params": s.params, "epochs": s.iterations,
                              "best_rmse": min(curves.get(s.trial_id, [math.inf]))} for s in summaries],
           "wall_s": round(wall, 2), "load": load(), "trace": rows}
    print(json.dumps({k: v for k, v in out.items() if k not in ("trace", "epochs_per_trial", "trials_detail")}),
          file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--job", choices=list(JOBS), default="gbdt", help="the learner the arms tune")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=24,
                        help="trials of the full-budget arms (each runs MAX_T epochs)")
    parser.add_argument("--asha-trials", type=int, default=96,
                        help="most trials of the ASHA arms (most are pruned early, so they need more to spend "
                             "a budget of epochs like the full-budget arms')")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS),
                        help="arms to run (random_full is always run: it sets the target)")
    args = parser.parse_args()
    arms = [a for a in ARMS if a in args.arms or a == "random_full"]
    import ray

    from streamtune.dev.synthetic import FEATURES, make_sales

    data = (make_sales(3000, drift=0.5, seed=11), make_sales(1000, drift=0.5, seed=12), FEATURES)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(ROOT / "jobs"), str(BENCHJOBS)]})
    tmp = Path(tempfile.mkdtemp(prefix="hpo-bench-"))
    seeds = list(range(1, args.seeds + 1))
    trials = {arm: args.asha_trials if arm in PRUNING else args.trials for arm in arms}
    runs = [run_arm(args.job, arm, seed, trials[arm], data, tmp) for seed in seeds for arm in arms]
    ray.shutdown()
    random_bests = [r["best_rmse"] for r in runs if r["arm"] == "random_full"]
    targets = {"worst_random_best": max(random_bests), "median_random_best": statistics.median(random_bests)}
    results = {name: to_target(runs, seeds, target, arms) for name, target in targets.items()}
    main_target = results["worst_random_best"]
    goal = {arm: {"ratio_of_mean_epochs_vs_random": main_target["vs_random"][arm],
                  "seeds_reached": main_target["seeds_reached"][arm],
                  "met": main_target["seeds_reached"][arm] == len(seeds)
                  and main_target["vs_random"][arm] <= 1 / 3} for arm in GOAL_ARMS if arm in arms}
    setup = JOBS[args.job]
    report = {
        "benchmark": "HPO efficiency: epochs to a target validation rmse, ASHA + TPE vs full-budget random search",
        "setup": {"data": "dev.synthetic.make_sales drift 0.5: 3,000 train / 1,000 validation rows",
                  "job": setup["describe"], "job_params": setup["params"],
                  "trials_per_arm": trials, "max_concurrent": 2, "seeds": seeds, "space": setup["space"],
                  "arms": {a: ARMS[a] for a in arms},
                  "target": "worst_random_best: the highest of random search's final best rmse over the seeds; "
                            "median_random_best: their median"},
        "results": results,
        "rung_rank_correlation_random_trials": rank_correlation(runs),
        "analysis": {
            "rung_keeps_random_trials": rung_keeps(runs),
            "random_best_under_asha_random": random_best_under_asha(runs),
            "median_learning_rate": learning_rates(runs, setup["lr"], arms),
            "trials_run_to_the_end": {arm: round(statistics.mean(sum(1 for t in r["trials_detail"]
                                                                     if t["epochs"] >= MAX_T) for r in runs
                                                                 if r["arm"] == arm), 1) for arm in arms},
        },
        "goal": {"rule": "ASHA + TPE: mean epochs to the worst_random_best target <= 1/3 of random search's, "
                         "reached in every seed", **goal},
        "totals": {arm: {"mean_epochs": round(statistics.mean(r["epochs"] for r in runs if r["arm"] == arm), 1),
                         "mean_trials": round(statistics.mean(r["trials"] for r in runs if r["arm"] == arm), 1),
                         "mean_wall_s": round(statistics.mean(r["wall_s"] for r in runs if r["arm"] == arm), 2),
                         "mean_best_rmse": round(statistics.mean(r["best_rmse"] for r in runs if r["arm"] == arm), 4)}
                   for arm in arms},
        "runs": [{k: v for k, v in r.items() if k not in ("trace", "trials_detail")} for r in runs],
        "machine": machine(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
