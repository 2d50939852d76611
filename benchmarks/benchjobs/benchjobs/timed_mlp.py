"""The PyTorch MLP template (``jobs.torch_mlp``) with its reports on record, for the benchmarks.

Training is the template's, unchanged; like ``timed_gbdt``, every report carries ``trial_started_at`` and
``reported_at``, and with ``trace_file`` in the config each report (one per epoch) is appended to that JSONL file as
``{"trial", "step", "t", <metrics>}``, so a sweep's trace holds every epoch of every trial, pruned ones included.
Reports with a checkpoint writer (``report_checkpoint``) are traced and reported without a checkpoint: the
benchmarks that use this job run ASHA or FIFO, which keep none.
"""

from __future__ import annotations

from typing import Any

from jobs.torch_mlp import Job as MlpJob

from streamtune.job import TrainContext

from .timed_gbdt import _Timed


class Job(MlpJob):
    """``jobs.torch_mlp.Job`` with timed reports (and ``trace_file``)."""

    params = MlpJob.params | {"trace_file"}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        trace = config.get("trace_file")
        super().train({k: v for k, v in config.items() if k != "trace_file"}, _Timed(ctx, trace))
