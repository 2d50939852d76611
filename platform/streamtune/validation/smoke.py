"""The smoke test: the winning model is loaded exactly as a serving replica loads it, in a Ray worker of its own,
and predicts on a sample of the holdout. A crash, a hang, a wrong count, NaN or inf fails the gate.

Example:
    >>> prediction_problem([0.5, 1.0], rows=2) is None
    True
    >>> prediction_problem([0.5, float("nan")], rows=2)
    'prediction 1 of 2 is nan; predictions must be finite numbers'
    >>> prediction_problem(["churned", "stayed"], rows=2) is None, prediction_problem([3, 7], rows=2) is None
    (True, True)
    >>> prediction_problem(["churned", None], rows=2)
    'prediction 1 of 2 is null; predictions must be finite numbers'
"""

from __future__ import annotations

import math
import time
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SMOKE_ROWS", "SmokeReport", "prediction_problem", "smoke_test", "start_smoke_worker"]

SMOKE_ROWS = 64
"""How many holdout rows the smoke test predicts on."""


class SmokeReport(BaseModel):
    """What the smoke test found."""

    model_config = ConfigDict(extra="forbid")

    passed: bool = Field(description="Whether the model loaded as serving loads it and predicted finite values.")
    reason: str = Field(description="One line: what was tried and what came of it.")
    rows: int = Field(ge=0, description="Rows predicted on.")
    seconds: float = Field(ge=0, description="Wall time of the test, worker start included.")


def prediction_problem(predictions: Any, rows: int) -> str | None:
    """Why ``predictions`` cannot be served for ``rows`` rows (a wrong count, NaN, inf, None); None if fine.

    A prediction is a number, a list of numbers, or a classifier's class label (a string or an int).
    """
    values = _plain(predictions)
    if len(values) != rows:
        return f"predictor returned {len(values)} predictions for {rows} rows"
    for i, value in enumerate(values):
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                return f"prediction {i} of {rows} is null; predictions must be finite numbers"
            if isinstance(item, float) and not math.isfinite(item):
                return f"prediction {i} of {rows} is {item}; predictions must be finite numbers"
    return None


def _plain(predictions: Any) -> list[Any]:
    if hasattr(predictions, "to_pylist"):
        return list(predictions.to_pylist())
    if hasattr(predictions, "tolist"):
        return list(predictions.tolist())
    return [p.tolist() if hasattr(p, "tolist") else p for p in predictions]


def _smoke(entrypoint: str, artifact_uri: str, sample: pa.Table, manifest_sha256: str | None) -> str | None:
    """Body of the Ray task: None when the model loads and predicts finite values, else why not."""
    import shutil

    from streamtune.job import load_for_serving

    predictor, folder = load_for_serving(entrypoint, artifact_uri, manifest_sha256=manifest_sha256,
                                         what="the sweep's winner (smoke test)")
    try:
        return prediction_problem(predictor.predict(sample), sample.num_rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _SmokeWorker:
    """The smoke test's own Ray worker, started before the sweep: it imports the job while the trials run."""

    def __init__(self, entrypoint: str) -> None:
        from streamtune.job import load_job_class

        try:
            load_job_class(entrypoint)
        except Exception:  # noqa: BLE001 -- the smoke test itself reports a job that cannot be loaded
            pass

    def smoke(self, entrypoint: str, artifact_uri: str, sample: pa.Table, manifest_sha256: str | None) -> str | None:
        return _smoke(entrypoint, artifact_uri, sample, manifest_sha256)


def start_smoke_worker(entrypoint: str) -> Any:
    """Start the smoke test's worker now (a Ray actor that holds no CPU and imports the job), for
    :func:`smoke_test` to use later: its process start and imports then overlap the sweep instead of following
    it. The smoke test ends it; an unused one ends with the driver.

    Example:
        >>> worker = start_smoke_worker("jobs.tabular_gbdt:Job")  # doctest: +SKIP
    """
    import ray

    return ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(_SmokeWorker).remote(entrypoint)


def smoke_test(entrypoint: str, artifact_uri: str, holdout: pa.Table, *, label: str, rows: int = SMOKE_ROWS,
               timeout_s: float = 120.0, manifest_sha256: str | None = None, worker: Any = None) -> SmokeReport:
    """Load ``artifact_uri`` as serving does in a separate Ray worker (``worker`` from :func:`start_smoke_worker`,
    else a task; either inherits the job's runtime_env) and predict on the first ``rows`` holdout rows, without
    the label. Never raises for a bad model; a worker it was given is ended after.

    Example:
        >>> smoke_test("jobs.tabular_gbdt:Job", best_uri, holdout, label="y").passed  # doctest: +SKIP
        True
    """
    import ray

    sample = holdout.slice(0, min(rows, holdout.num_rows))
    if label in sample.column_names:
        sample = sample.drop_columns([label])
    start = time.perf_counter()
    if worker is not None:
        ref = worker.smoke.remote(entrypoint, artifact_uri, sample, manifest_sha256)
    else:
        ref = ray.remote(num_cpus=0, max_retries=0)(_smoke).remote(entrypoint, artifact_uri, sample, manifest_sha256)
    try:
        problem = ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        if worker is None:
            ray.cancel(ref, force=True)
        problem = f"load and predict took over {timeout_s:g} s"
    except ray.exceptions.RayTaskError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        problem = f"crashed: {lines[-1][:300] if lines else type(exc).__name__}"
    except Exception as exc:  # the worker died (segfault, OOM kill)
        problem = f"crashed: {type(exc).__name__}: {str(exc)[:300]}"
    if worker is not None:
        ray.kill(worker)
    seconds = round(time.perf_counter() - start, 3)
    n = sample.num_rows
    if problem is None:
        return SmokeReport(passed=True, rows=n, seconds=seconds,
                           reason=f"smoke test: loaded as serving does and predicted {n} holdout rows, all finite")
    return SmokeReport(passed=False, rows=n, seconds=seconds, reason=f"smoke test failed: {problem}")
