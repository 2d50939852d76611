"""A fast job for the sweeps of every sampler and scheduler (tests/integration/test_sweep_search_kinds.py).

Each trial reports ``steps`` times (``sleep_s`` apart) and saves the config it was given. It reports:

- ``rmse = (x - 0.5)**2 + y**2 + penalty * rank + 0.01 / step`` (``y`` is 0 when not in the config), to minimise;
- ``size = x``, a second objective to minimise, which conflicts with ``rmse`` for x below 0.5.

(``rmse`` is only named after a metric the platform scores, so the sweep job can score the winner on a holdout:
its model answers that number for every row.)

``rank`` is how many trials started before this one, counted with exclusive file creation in ``rank_dir`` (a
folder every node of the test cluster sees: they share one machine). With ``penalty`` above the spread of the
rest, every later trial is worse than every earlier one whatever the sampler proposed, so what a scheduler prunes
does not depend on the points drawn.

Example:
    >>> import json, tempfile
    >>> d = tempfile.mkdtemp()
    >>> SweepKinds._save(d, {"x": 0.2}, {"rmse": 0.09})
    >>> json.loads((Path(d) / "model.json").read_text())["config"], take_rank(d), take_rank(d)
    ({'x': 0.2}, 0, 1)
    >>> SweepKinds().load(d).predict(pa.table({"x": [1.0, 2.0]}))
    [0.09, 0.09]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamtune.job import Job, Predictor, TrainContext


def take_rank(folder: str) -> int:
    """The next free rank in ``folder``: the number of ranks taken before (atomic across processes)."""
    rank = 0
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"rank-{rank:04d}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return rank
        except FileExistsError:
            rank += 1


class ConstantPredictor(Predictor):
    """Answers the trial's last rmse for every row."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, batch: pa.Table) -> list[float]:
        return [self.value] * batch.num_rows


class SweepKinds(Job):
    """Reports rmse and size per step from the config; saves the config and the last metrics."""

    params = frozenset({"x", "y", "kind", "depth", "steps", "rank_dir", "penalty", "sleep_s"})
    metrics = {"rmse": "min", "size": "min"}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        rank = take_rank(str(config["rank_dir"])) if config.get("rank_dir") else 0
        x, y = float(config["x"]), float(config.get("y", 0.0))
        base = (x - 0.5) ** 2 + y**2 + float(config.get("penalty", 0.0)) * rank
        last: dict[str, float] = {}
        for step in range(1, int(config.get("steps", 3)) + 1):
            time.sleep(float(config.get("sleep_s", 0.0)))
            last = {"rmse": base + 0.01 / step, "size": x, "rank": float(rank)}
            ctx.report(last)
        ctx.save_model(lambda folder: self._save(folder, config, last))

    @staticmethod
    def _save(folder: str, config: dict[str, Any], metrics: dict[str, float]) -> None:
        (Path(folder) / "model.json").write_text(json.dumps({"config": config, "metrics": metrics}))

    def load(self, artifact_dir: str | Path) -> Predictor:
        saved = json.loads((Path(artifact_dir) / "model.json").read_text())
        return ConstantPredictor(float(saved["metrics"].get("rmse", 0.0)))
