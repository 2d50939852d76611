"""The LightGBM template (``jobs.tabular_gbdt``) with its time and reports on record, for the benchmarks.

Training is the template's, unchanged. Every report also carries ``trial_started_at`` (when ``train()`` was
entered) and ``reported_at`` (Unix seconds), so a trial's last result says when it ran; with ``trace_file`` in the
config, each report is also appended to that JSONL file as ``{"trial", "step", "t", <metrics>}`` (one short line
per write, O_APPEND), which gives the order of every report of a sweep, pruned trials' included.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from streamtune.job import TrainContext

try:  # shipped in one package with a copy of the template (bench_data_to_serving.py)
    from .tabular_gbdt import Job as GbdtJob
except ImportError:  # as benchjobs.timed_gbdt, with jobs/ importable
    from jobs.tabular_gbdt import Job as GbdtJob


def _trial_id() -> str | None:
    try:
        from ray import tune

        return str(tune.get_context().get_trial_id())
    except Exception:  # outside a Tune trial (the refit, the smoke test)
        return None


class _Timed(TrainContext):
    def __init__(self, inner: TrainContext, trace_file: str | None) -> None:
        self.inner, self.trace_file = inner, trace_file
        self.train, self.valid, self.label, self.features = inner.train, inner.valid, inner.label, inner.features
        self.started, self.step, self.trial = time.time(), 0, _trial_id()

    def report(self, metrics: dict[str, float]) -> None:
        now = time.time()
        self.step += 1
        if self.trace_file:
            line = json.dumps({"trial": self.trial, "step": self.step, "t": now, **metrics}) + "\n"
            fd = os.open(self.trace_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        self.inner.report({**metrics, "trial_started_at": self.started, "reported_at": now})

    def save_model(self, writer: Callable[[str], None]) -> None:
        self.inner.save_model(writer)


class Job(GbdtJob):
    """``jobs.tabular_gbdt.Job`` with timed reports (and ``trace_file``)."""

    params = GbdtJob.params | {"trace_file"}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        trace = config.get("trace_file")
        super().train({k: v for k, v in config.items() if k != "trace_file"}, _Timed(ctx, trace))
