"""Device check: streamtune's Tune runner with whole and fractional GPU trials on a real GPU.

Runs the same 8-trial sweep of a GPU probe job at 1, 0.5 and 0.25 GPU per trial and prints JSON: whether each
trial saw CUDA and a Ray GPU id, how many trials overlapped, and the sweep's wall time at each fraction.
Usage (GPU machine): python benchmarks/gpu_sweep_check.py [OUT.json]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402

from streamtune.config import JobSpec  # noqa: E402
from streamtune.sweeps.runner import run_tune  # noqa: E402


def spec(gpu: float) -> JobSpec:
    return JobSpec.parse({
        "name": "gpu-check", "dataset": {"name": "d", "label": "y"},
        "job": {"entrypoint": "benchjobs.probe:Probe", "code": str(ROOT / "benchjobs" / "benchjobs"),
                "params": {"steps": 5, "matmuls": 300, "n": 3072}},
        "sweep": {"metric": "loss", "mode": "min", "num_samples": 8, "max_concurrent": 8, "max_t": 5,
                  "grace_period": 5, "scheduler": "fifo", "resources": {"cpu": 1, "gpu": gpu},
                  "space": {"lr": {"type": "uniform", "low": 0.1, "high": 1.0}}},
        "serve": {"app": "x"},
    })


def max_overlap(trials: list) -> int:
    spans = [(t.metrics["start"], t.metrics["now"]) for t in trials if "start" in t.metrics]
    return max(sum(1 for s, e in spans if s <= point < e) for point, _ in spans) if spans else 0


def main() -> None:
    table = pa.table({"x": [1.0, 2.0], "y": [0.0, 1.0]})
    ray.init(num_cpus=8, log_to_driver=False, runtime_env={"py_modules": [str(ROOT / "benchjobs" / "benchjobs")]})
    out: dict = {"gpus": ray.cluster_resources().get("GPU"), "runs": {}}
    for gpu in (1.0, 0.5, 0.25):
        t0 = time.perf_counter()
        trials = run_tune(spec(gpu), table, table, ["x"], tempfile.mkdtemp())
        out["runs"][str(gpu)] = {
            "wall_s": round(time.perf_counter() - t0, 2), "trials": len(trials),
            "finished": sum(1 for t in trials if t.artifact_uri),
            "all_saw_cuda": all(t.metrics.get("cuda") == 1.0 for t in trials),
            "gpu_ids_per_trial": sorted({t.metrics.get("gpu_ids") for t in trials}),
            "max_concurrent_trials": max_overlap(trials),
        }
    base = out["runs"]["1.0"]["wall_s"]
    out["speedup_vs_1_gpu"] = {k: round(base / v["wall_s"], 2) for k, v in out["runs"].items()}
    text = json.dumps(out, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)


if __name__ == "__main__":
    main()
