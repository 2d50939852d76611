"""Score the champion on labelled rows that arrived after it was promoted (the degradation trigger's number).

The controller must not import user code, so :class:`RayChampionScorer` scores in one short-lived Ray task
with the spec's runtime_env (``py_modules = [job.code_uri]``): it loads the champion from a verified copy (its
registered manifest digest checked), predicts the rows with :meth:`~streamtune.job.Predictor.predict_scores`,
and returns the spec's metric, with the label encoded by the model's own classes. :func:`score_rows` is the
task's body; it runs anywhere the job's code is importable.

Example:
    >>> scorer = RayChampionScorer(connect=lambda: None)  # doctest: +SKIP
    >>> scorer(spec, registry.get_alias(spec.name, "champion"), labelled_rows)  # doctest: +SKIP
    4.71
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from streamtune.config.jobspec import JobSpec
from streamtune.errors import ServiceError
from streamtune.registry.records import ModelVersion
from streamtune.sweeps.scoring import predict_holdout
from streamtune.validation.metrics import get_metric

__all__ = ["RayChampionScorer", "score_rows"]


def score_rows(entrypoint: str, artifact_uri: str, manifest_sha256: str | None, rows: pa.Table, label: str,
               metric: str) -> float:
    """The metric of the model at ``artifact_uri`` on ``rows`` (which hold the label column)."""
    preds = predict_holdout(entrypoint, artifact_uri, rows, manifest_sha256=manifest_sha256)
    return float(get_metric(metric)(preds.truth(rows[label]), preds.values))


class RayChampionScorer:
    """Scores a champion on rows in a Ray task with the job's code (see the module docstring).

    Args:
        connect: Joins the Ray cluster (called before each task; cheap once joined).
        timeout_s: How long one scoring may take, runtime_env setup included.
    """

    def __init__(self, connect: Callable[[], None], *, timeout_s: float = 120.0) -> None:
        self.connect = connect
        self.timeout_s = timeout_s

    def __call__(self, spec: JobSpec, champion: ModelVersion, rows: pa.Table) -> float:
        """The spec's metric of ``champion`` on ``rows``.

        Raises:
            ServiceError: the task failed or took longer than ``timeout_s``.
        """
        import ray

        self.connect()
        env: dict[str, Any] = {"py_modules": [spec.job.code_uri]} if spec.job.code_uri else {}
        task = ray.remote(num_cpus=0, max_retries=0, runtime_env=env)(score_rows)
        ref = task.remote(spec.job.entrypoint, champion.artifact_uri, champion.manifest_sha256, rows,
                          spec.dataset.label, spec.sweep.metric)
        try:
            return float(ray.get(ref, timeout=self.timeout_s))
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise ServiceError(f"scoring champion v{champion.version} of {spec.name} took over "
                               f"{self.timeout_s:g} s") from None
        except Exception as exc:
            raise ServiceError(f"scoring champion v{champion.version} of {spec.name} failed: "
                               f"{type(exc).__name__}: {exc}") from None
