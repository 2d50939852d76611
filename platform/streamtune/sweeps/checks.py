"""Checks at submit: does the spec fit its job? Run in a short-lived Ray task, never in the controller.

The controller must not import user code (a job module may do anything at import), so :class:`RaySpecChecker`
launches one Ray task with the spec's runtime_env (``py_modules = [job.code_uri]``, the same code the sweep and
the replicas get), which imports the entrypoint there and runs :func:`contract_problems`. The controller only
waits for the answer, with a timeout. Before that it refuses a spec with ``sweep.resources.require_gpu`` on a
cluster without a GPU (:func:`check_gpu_request`). The pure parts (:func:`metric_direction`,
:func:`contract_problems`) need no Ray.

Example:
    >>> metric_direction("rmse"), metric_direction("auc"), metric_direction("made_up") is None
    ('min', 'max', True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from streamtune.config.jobspec import JobSpec
from streamtune.errors import ConfigError
from streamtune.validation.metrics import DIRECTIONS

__all__ = ["METRIC_DIRECTIONS", "RaySpecChecker", "SpecChecks", "check_gpu_request", "check_job_contract",
           "contract_problems", "metric_direction"]

METRIC_DIRECTIONS: dict[str, Literal["min", "max"]] = {
    "rmse": "min", "mse": "min", "mae": "min", "mape": "min", "logloss": "min", "loss": "min",
    "error": "min", "brier": "min",
    "accuracy": "max", "auc": "max", "roc_auc": "max", "r2": "max", "f1": "max", "precision": "max",
    "recall": "max", "ndcg": "max", "map": "max",
    **DIRECTIONS,  # every metric the platform itself scores (validation/metrics.py)
}
"""Metrics whose better direction is known whatever the job: lower is better (min) or higher (max)."""


def metric_direction(name: str, declared: Mapping[str, str] | None = None) -> str | None:
    """The better direction of metric ``name``: the job's declaration first, then :data:`METRIC_DIRECTIONS`.

    Example:
        >>> metric_direction("score", {"score": "max"}), metric_direction("r2")
        ('max', 'max')
    """
    if declared and name in declared:
        return declared[name]
    return METRIC_DIRECTIONS.get(name)


def contract_problems(spec: JobSpec, job_cls: type) -> list[str]:
    """What is wrong between ``spec`` and the job class it names; [] when nothing is.

    Checked: ``sweep.metric`` (and each of ``sweep.objectives``) is one the job reports (when it declares its
    metrics) and its direction matches its mode; every ``job.params`` key and ``sweep.space`` dimension is a param
    the job declares; ``scheduler: pbt`` only for a job that checkpoints (``Job.checkpoints``) and over dimensions
    it can change mid-trial (``Job.mutable_params``);
    ``sweep.resources.workers`` > 1 only for a job that trains on several workers (``Job.distributed``).

    Example:
        >>> from streamtune.job import Job
        >>> class J(Job):
        ...     params = frozenset({"lr"})
        ...     metrics = {"rmse": "min"}
        ...     def train(self, config, ctx): ...
        ...     def load(self, artifact_dir): ...
        >>> spec = JobSpec.model_validate({"name": "x", "dataset": {"name": "d", "label": "y"},
        ...     "job": {"entrypoint": "m:J", "params": {"lrr": 1}}, "serve": {"app": "x"},
        ...     "sweep": {"metric": "rmse", "mode": "max", "space": {"lr": {"type": "uniform", "low": 0, "high": 1}}}})
        >>> for line in contract_problems(spec, J):
        ...     print(line)
        Got "max" for sweep.mode; metric rmse is better when lower, so mode must be min
        Got "lrr" for a key of job.params; job m:J takes only ['lr']
        >>> pbt = spec.model_copy(update={"sweep": spec.sweep.model_copy(update={"scheduler": "pbt", "mode": "min"}),
        ...                               "job": spec.job.model_copy(update={"params": {}})})
        >>> contract_problems(pbt, J)  # doctest: +ELLIPSIS
        ['Got "pbt" for sweep.scheduler; job m:J does not checkpoint (Job.checkpoints is False), ...']
    """
    problems: list[str] = []
    sweep, entry = spec.sweep, spec.job
    metrics_for = getattr(job_cls, "metrics_for", None)
    declared = metrics_for(dict(entry.params)) if callable(metrics_for) else None
    targets = [(sweep.metric, sweep.mode, "sweep.metric", "sweep.mode")]
    targets += [(o.metric, o.mode, f"sweep.objectives[{i}].metric", f"sweep.objectives[{i}].mode")
                for i, o in enumerate(sweep.objectives) if o.metric != sweep.metric]
    for metric, mode, metric_field, mode_field in targets:
        if declared is not None and metric not in declared:
            problems.append(f'Got "{metric}" for {metric_field}; job {entry.entrypoint} reports only '
                            f"{sorted(declared)}")
            continue
        direction = metric_direction(metric, declared)
        if direction is None:
            problems.append(f'Got "{metric}" for {metric_field}; its direction is unknown: job '
                            f"{entry.entrypoint} declares no metrics and it is none of {sorted(METRIC_DIRECTIONS)}")
        elif direction != mode:
            word = "lower" if direction == "min" else "higher"
            problems.append(f'Got "{mode}" for {mode_field}; metric {metric} is better when {word}, '
                            f"so mode must be {direction}")
    if sweep.scheduler == "pbt" and not getattr(job_cls, "checkpoints", False):
        problems.append(f'Got "pbt" for sweep.scheduler; job {entry.entrypoint} does not checkpoint '
                        "(Job.checkpoints is False), and PBT resumes trials from copies of other trials' checkpoints: "
                        "use asha, hyperband, median or none")
    mutable = getattr(job_cls, "mutable_params", None)
    if sweep.scheduler == "pbt" and getattr(job_cls, "checkpoints", False) and mutable is not None:
        problems += [f'Got "{name}" for a dimension of sweep.space with scheduler pbt; job {entry.entrypoint} cannot '
                     f"change it when a trial resumes from a checkpoint, and PBT mutates every dimension: it can "
                     f"change only {sorted(mutable)} (Job.mutable_params), so fix {name} in job.params or use "
                     "another scheduler" for name in sweep.space if name not in mutable]
    workers = sweep.resources.workers
    if workers > 1 and getattr(job_cls, "distributed", None) is None:
        problems.append(f'Got "{workers}" for sweep.resources.workers; job {entry.entrypoint} trains in one process '
                        "(Job.distributed is None), so it cannot run as a Ray Train run of several workers: set "
                        "workers: 1, or use a job that declares Job.distributed (torch, lightgbm)")
    params = getattr(job_cls, "params", None)
    if params is not None:
        known = sorted(params)
        for where, names in (("a key of job.params", entry.params), ("a dimension of sweep.space", sweep.space)):
            for name in names:
                if name not in params:
                    problems.append(f'Got "{name}" for {where}; job {entry.entrypoint} takes only {known}')
    return problems


def check_job_contract(spec: JobSpec) -> None:
    """Import the spec's job (here: call it inside the Ray task) and raise on any :func:`contract_problems`.

    Raises:
        ConfigError: the module or class cannot be found, or the spec does not fit the job.
    """
    from streamtune.job import load_job_class

    problems = contract_problems(spec, load_job_class(spec.job.entrypoint))
    if problems:
        raise ConfigError(f"spec {spec.name} does not fit its job: " + "; ".join(problems),
                          fix="fix the JobSpec (sweep.metric, sweep.mode, sweep.objectives, sweep.scheduler, "
                              "job.params, sweep.space) and submit again")


def _remote_check(spec_json: str) -> tuple[str, str | None] | None:
    """Body of the Ray task: None when the spec fits its job, else the error's headline and fix."""
    from streamtune.errors import StreamtuneError

    spec = JobSpec.model_validate_json(spec_json)
    try:
        check_job_contract(spec)
    except StreamtuneError as exc:
        return exc.headline, exc.fix
    except Exception as exc:  # the job module raised on import
        return f"job {spec.job.entrypoint} cannot be loaded: {type(exc).__name__}: {exc}", None
    return None


def check_gpu_request(spec: JobSpec) -> None:
    """At submit, on the connected cluster: refuse a spec with ``sweep.resources.require_gpu`` when no node has a
    GPU (:func:`~streamtune.sweeps.resources.plan_resources`). Without ``require_gpu`` such a spec is stored; its
    sweeps train on CPU and say so in their result's warnings.

    Raises:
        ConfigError: ``require_gpu`` is set and no alive node has a GPU.
    """
    from streamtune.sweeps.failures import alive_nodes
    from streamtune.sweeps.resources import GpuRequired, plan_resources

    try:
        plan_resources(spec.sweep.resources, alive_nodes())
    except GpuRequired as exc:
        raise ConfigError(f"spec {spec.name} cannot run on this cluster: {exc.headline}", fix=exc.fix) from None


class SpecChecks(Protocol):
    """The controller's port for checks at submit."""

    def check(self, spec: JobSpec) -> None:
        """Raise :class:`ConfigError` naming what does not fit; return when the spec fits its job."""


class RaySpecChecker:
    """Checks a spec against its job in one short-lived Ray task with the spec's runtime_env.

    The task asks for no CPU (it must not wait behind trials), is not retried, and is given ``timeout_s``; a
    spec whose code cannot even be set up (a broken zip) fails the submit with that reason.

    Args:
        connect: Joins this process to Ray (the controller's ``join_ray``); called before each check.
        timeout_s: How long a check may take, runtime_env setup included.

    Example:
        >>> RaySpecChecker(connect=lambda: None).check(spec)  # doctest: +SKIP
        Traceback (most recent call last):
        streamtune.errors.ConfigError: spec ctr does not fit its job: Got "auc" for sweep.metric; ...
    """

    def __init__(self, connect: Callable[[], None], *, timeout_s: float = 120.0) -> None:
        self.connect = connect
        self.timeout_s = timeout_s

    def check(self, spec: JobSpec) -> None:
        """Run the check task and raise what it found."""
        import ray

        from streamtune.artifacts.store import ray_uri

        if spec.job.code_uri is None:
            raise ConfigError(f"spec {spec.name} has no job.code_uri to check its job with")
        self.connect()
        check_gpu_request(spec)
        env: dict[str, Any] = {"py_modules": [ray_uri(spec.job.code_uri)]}
        if os.environ.get("AWS_ENDPOINT_URL"):
            env["env_vars"] = {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}
        task = ray.remote(num_cpus=0, max_retries=0, runtime_env=env)(_remote_check)
        ref = task.remote(spec.model_dump_json())
        try:
            problem = ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise ConfigError(f"the check of spec {spec.name} against job {spec.job.entrypoint} took over "
                              f"{self.timeout_s:g} s (its runtime_env or import hangs)") from None
        except Exception as exc:  # runtime_env setup failed, or the worker died
            raise ConfigError(f"job code of spec {spec.name} ({spec.job.code_uri}) cannot be set up in a Ray "
                              f"worker: {type(exc).__name__}: {str(exc)[:300]}") from None
        if problem is not None:
            raise ConfigError(problem[0], fix=problem[1])
