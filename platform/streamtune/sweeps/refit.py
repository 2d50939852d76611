"""Refit: train the sweep's winner again, with its params, on train + validation rows (``validation.refit``).

Trials learn from the training rows only; the validation rows are there to rank them. Once the winner is
known, the validation rows can teach too. The refit runs the job's :meth:`~streamtune.job.Job.train` once more,
with ``ctx.train`` = train + validation rows and ``ctx.valid`` = the
validation rows (what it reports there is in-sample and only kept for the record). A CPU winner is refit in the
sweep driver's own process, which has imported the job already and is idle once the trials are done (their CPUs
are free then): no worker process to start, no import, no copy of the rows through the object store; a GPU
winner is refit in a Ray task with one trial's resources, so it gets its card. A multi-worker winner
(``sweep.resources.workers`` > 1) is refit in one process too, with one worker's ``cpu``/``gpu`` (``ctx.world_size``
is 1): no second Ray Train run to place, and the train + validation rows of one window fit one process. Its model
goes to ``<run>/refit`` with a manifest, like a trial's; the holdout stays untouched, so the gate's comparison
against the champion is as fair as before.

Example:
    >>> refit_uri("s3://b/runs/r-1")
    's3://b/runs/r-1/refit'
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.errors import SweepError
from streamtune.job import TrainContext, load_job_class
from streamtune.registry.manifest import MANIFEST, manifest_digest, write_manifest

__all__ = ["RefitContext", "refit", "refit_uri"]


def refit_uri(out_uri: str) -> str:
    """Where the refit model goes in the run's folder."""
    return f"{out_uri.rstrip('/')}/refit"


class RefitContext(TrainContext):
    """The :class:`TrainContext` of the refit: reports are kept in memory, the model goes to ``uri``."""

    def __init__(self, train: pa.Table, valid: pa.Table, label: str, features: list[str], uri: str) -> None:
        self.train, self.valid, self.label, self.features = train, valid, label, features
        self.uri = uri
        self.reports: list[dict[str, float]] = []
        self.saved: str | None = None

    def report(self, metrics: dict[str, float]) -> None:
        """Keep the metrics (in-sample on the validation rows, so they rank nothing)."""
        self.reports.append(dict(metrics))

    def save_model(self, writer: Callable[[str], None]) -> None:
        """Write the model with a manifest into a scratch folder and upload it to ``uri``."""
        with tempfile.TemporaryDirectory(prefix="streamtune-refit-") as scratch:
            writer(scratch)
            write_manifest(scratch)
            self.saved = ArtifactStore(self.uri).upload_dir(scratch, self.uri)


def _refit_task(entrypoint: str, config: dict[str, Any], train: pa.Table, valid: pa.Table, label: str,
                features: list[str], uri: str) -> tuple[str | None, float]:
    start = time.perf_counter()
    ctx = RefitContext(pa.concat_tables([train, valid], promote_options="default"), valid, label, features, uri)
    load_job_class(entrypoint)().train(config, ctx)
    return ctx.saved, time.perf_counter() - start


def refit(spec: JobSpec, params: dict[str, Any], train: pa.Table, valid: pa.Table, features: list[str],
          out_uri: str) -> tuple[str, str, float]:
    """Train ``params`` (over ``job.params``) on train + valid; return (uri, manifest sha256, s).

    In this process when the trials use no GPU, else in a Ray task with one trial's ``cpu`` and ``gpu``.

    Raises:
        SweepError: the job raised, or saved no model.
    """
    import ray

    res = spec.sweep.resources
    uri = refit_uri(out_uri)
    args = (spec.job.entrypoint, {**spec.job.params, **params}, train, valid, spec.dataset.label, features, uri)
    try:
        if res.gpu == 0:
            saved, seconds = _refit_task(*args)
        else:
            task = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_retries=0)(_refit_task)
            saved, seconds = ray.get(task.remote(*args))
    except Exception as exc:
        cause = getattr(exc, "cause", None) or exc
        raise SweepError(f"the refit of the winner on train + validation rows raised {type(cause).__name__}: "
                         f"{cause}", fix="set validation.refit: false to gate the winning trial's own model") from None
    if saved is None:
        raise SweepError("the refit of the winner saved no model (its train() never called ctx.save_model)")
    digest = manifest_digest(ArtifactStore(uri).get_bytes(f"{uri}/{MANIFEST}"))
    return uri, digest, seconds
