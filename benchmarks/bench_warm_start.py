"""Warm start: trials a sweep needs to reach the cold sweep's best metric, with and without warm start.

The demo's JobSpec (``configs/demo.yaml``: LightGBM, TPE + ASHA, 2 at a time; ``num_samples`` raised from 6 to
``--trials``, 12, so a sweep has room to find its best) runs through streamtune's ``sweeps.runner.run_tune``
in-process on a local 2-CPU Ray:

1. First window: the demo's first batch (``dev.synthetic.write_batch``: 4 files x 550 rows, drift 0.0), read and
   split as the sweep job does (``Snapshot.from_parts(...).split``). One sweep; its trials are stored as a
   promoted run in a SQLite registry and its winner registered as champion, as the controller does.
2. The warm-start points come from that registry the controller's way (``controller.warm.warm_start_points``:
   the champion's params, then the top 2 earlier trials).
3. Second window: the same generator at drift 0.2 (small: the first window's params are still good there). For
   each of 5 sampler seeds, a cold sweep and a warm sweep (the same seed, ``warm_start=points``).

"Trials to reach": trials in creation order (the counter in Tune's ``experiment_tag``), pruned ones included, up to
the first that saved a model with a final validation rmse at or below the cold sweep's best (the cold sweep's
winner, same seed); for the cold sweep that is its winner's position. A warm sweep that never gets there counts as
not reached.
Goal (issue 10): fewer trials with warm start.

Usage (hold the Ray lock): ``flock /tmp/streamtune-ray.lock .venv/bin/python benchmarks/bench_warm_start.py
benchmarks/results/warm-start-2core-vm.json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_info import load, machine

ROOT = Path(__file__).resolve().parents[1]
SECOND_DRIFT = 0.2


def demo_spec(trials: int) -> Any:
    from streamtune.config import JobSpec, load_jobspec

    data = load_jobspec(ROOT / "configs" / "demo.yaml").model_dump(mode="json", by_alias=True)
    data["sweep"]["num_samples"] = trials
    return JobSpec.parse(data)


def window(spec: Any, folder: Path, drift: float, seed: int) -> Any:
    """A demo batch written as Parquet, read and split as the sweep job reads and splits it."""
    from streamtune.data.snapshot import Snapshot
    from streamtune.dev.synthetic import write_batch

    uris = write_batch(folder, 4, 550, drift=drift, seed=seed)
    snap = Snapshot.from_parts(spec.dataset, uris, [], trusted_roots=[str(folder)], check=False)
    return snap.split(spec.validation.holdout_fraction, spec.validation.valid_fraction), snap.features


def ordered(trials: list[Any]) -> list[Any]:
    """Trials in the order the searcher made them. Not by trial id: with a searcher, Ray 2.60's trial ids are
    random hex (``Trial.generate_id``); the ``experiment_tag`` Tune adds to each result starts with the counter."""
    return sorted(trials, key=lambda t: int(str(t.metrics["experiment_tag"]).split("_", 1)[0]))


def final_rmse(trial: Any) -> float | None:
    """A trial's final validation rmse, if it ran to the end and saved a model."""
    value = trial.metrics.get("rmse")
    return float(value) if trial.artifact_uri and isinstance(value, (int, float)) else None


def trials_to_reach(trials: list[Any], target: float) -> int | None:
    for i, trial in enumerate(ordered(trials), 1):
        value = final_rmse(trial)
        if value is not None and value <= target + 1e-12:
            return i
    return None


def register_first(spec: Any, trials: list[Any], tmp: Path) -> list[dict[str, Any]]:
    """Store the first sweep as the controller does (a promoted run, its winner champion); the warm points."""
    from streamtune.controller.warm import warm_start_points
    from streamtune.registry import RunRecord, open_registry
    from streamtune.registry.records import RunStatus
    from streamtune.sweeps.runner import pick_best

    reg = open_registry(f"sqlite:///{tmp}/registry.db")
    reg.commit_window("g", {}, {}, [RunRecord(run_id="r-window1", spec_name=spec.name, dataset=spec.dataset.name,
                                              offsets={"t:0": [0, 3]})])
    reg.update_run("r-window1", status=RunStatus.PROMOTED,
                   sweep={"trials": [t.model_dump(mode="json") for t in trials]})
    best = pick_best(trials, spec.sweep.metric, spec.sweep.mode)
    mv = reg.register_model(spec.name, "r-window1", str(best.artifact_uri), best.params, dict(best.metrics), {})
    reg.set_alias(spec.name, "champion", mv.version)
    points = warm_start_points(reg, spec)
    reg.close()
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    import ray

    from streamtune.sweeps.runner import run_tune

    spec = demo_spec(args.trials)
    tmp = Path(tempfile.mkdtemp(prefix="warm-bench-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(ROOT / "jobs")]})
    (first, feats) = window(spec, tmp / "w1", 0.0, 1)
    t0 = time.perf_counter()
    first_trials = run_tune(spec, first.train, first.valid, feats, str(tmp / "r-window1"), seed=0)
    first_s = time.perf_counter() - t0
    points = register_first(spec, first_trials, tmp)
    (second, feats) = window(spec, tmp / "w2", SECOND_DRIFT, 2)
    seeds, runs = list(range(1, args.seeds + 1)), []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for kind, warm in (("cold", []), ("warm", points)):
            t0 = time.perf_counter()
            trials = run_tune(spec, second.train, second.valid, feats, str(tmp / f"{kind}-{seed}"), seed=seed,
                              warm_start=warm)
            finals = [final_rmse(t) for t in ordered(trials)]
            row[kind] = {"best_rmse": min(v for v in finals if v is not None),
                         "wall_s": round(time.perf_counter() - t0, 2),
                         "final_rmse_in_order": [None if v is None else round(v, 4) for v in finals],
                         "first_params": ordered(trials)[0].params, "_trials": trials}
            if warm:  # the searcher evaluates the warm points first: did they run to the end or get pruned?
                row[kind]["warm_points_final_rmse"] = row[kind]["final_rmse_in_order"][: len(warm)]
        target = row["cold"]["best_rmse"]
        row["target_rmse"] = target
        for kind in ("cold", "warm"):
            row[kind]["trials_to_reach"] = trials_to_reach(row[kind].pop("_trials"), target)
        row["load"] = load()
        print(json.dumps(row), file=sys.stderr)
        runs.append(row)
    ray.shutdown()
    cold = [r["cold"]["trials_to_reach"] for r in runs]
    warm = [r["warm"]["trials_to_reach"] for r in runs]
    reached = [w for w in warm if w is not None]
    report = {
        "benchmark": "warm start: trials to reach the cold sweep's best validation rmse on the second window",
        "setup": {"spec": f"configs/demo.yaml with num_samples {args.trials}", "first_window": "2,200 rows drift 0.0",
                  "second_window": f"2,200 rows drift {SECOND_DRIFT}", "seeds": seeds,
                  "first_sweep_s": round(first_s, 2), "warm_points": points},
        "summary": {
            "cold_trials_to_best": cold, "warm_trials_to_reach": warm,
            "cold_mean": statistics.mean(cold), "warm_mean": statistics.mean(reached) if reached else None,
            "warm_reached_in_seeds": len(reached),
            "warm_fewer_in_seeds": sum(1 for c, w in zip(cold, warm, strict=True) if w is not None and w < c),
            "warm_equal_in_seeds": sum(1 for c, w in zip(cold, warm, strict=True) if w is not None and w == c),
            "cold_best_rmse_mean": round(statistics.mean(r["cold"]["best_rmse"] for r in runs), 4),
            "warm_best_rmse_mean": round(statistics.mean(r["warm"]["best_rmse"] for r in runs), 4),
        },
        "runs": runs,
        "machine": machine(),
    }
    summary = report["summary"]
    report["goal"] = {"fewer_trials_with_warm_start": "mean trials to reach, warm < cold, reached in every seed",
                      "met": len(reached) == len(seeds) and summary["warm_mean"] < summary["cold_mean"]}
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
