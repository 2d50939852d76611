"""The trivial job of the Tune-overhead benchmark: the same arithmetic as the plain-Tune baseline's trainable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamtune.job import Job, Predictor, TrainContext


class _Zero(Predictor):
    def predict(self, batch: Any) -> list[float]:
        return [0.0] * batch.num_rows


class Trivial(Job):
    """Five reports of ``x * i`` and a one-line model file, like ``plain_tune_cpu.py``'s trainable."""

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        s = 0.0
        for i in range(5):
            s += config["x"] * i
            ctx.report({"score": s})
        ctx.save_model(lambda d: Path(d, "score.txt").write_text(str(s)))

    def load(self, artifact_dir: str | Path) -> Predictor:
        return _Zero()


class TrivialNoSave(Trivial):
    """:class:`Trivial` without the model file: the overhead profile's step before the per-trial save."""

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        s = 0.0
        for i in range(5):
            s += config["x"] * i
            ctx.report({"score": s})
