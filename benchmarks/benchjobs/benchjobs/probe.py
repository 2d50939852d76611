"""A GPU probe job for the device check: each step runs matmuls on the trial's GPU and reports what it saw."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from streamtune.job import Job, Predictor, TrainContext


class ProbePredictor(Predictor):
    def predict(self, batch: Any) -> list[float]:
        return [0.0] * batch.num_rows


class Probe(Job):
    """Reports loss, whether CUDA ran, how many GPU ids Ray gave the trial, and wall times."""

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        import ray
        import torch

        cuda = torch.cuda.is_available()
        device = "cuda" if cuda else "cpu"
        x = torch.randn(int(config.get("n", 2048)), int(config.get("n", 2048)), device=device)
        start = time.time()
        for step in range(int(config.get("steps", 5))):
            for _ in range(int(config.get("matmuls", 40))):
                x = torch.tanh(x @ x / x.shape[0] ** 0.5)
            if cuda:
                torch.cuda.synchronize()
            ctx.report({"loss": float(config["lr"]) / (step + 1), "cuda": float(cuda),
                        "gpu_ids": float(len(ray.get_gpu_ids())), "start": start, "now": time.time(),
                        "visible": float(len(os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")))})
        ctx.save_model(lambda d: Path(d, "probe.txt").write_text("ok"))

    def load(self, artifact_dir: str | Path) -> ProbePredictor:
        return ProbePredictor()
