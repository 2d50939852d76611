"""Multi-worker trials: a Tune trial that is a Ray Train run (``sweep.resources.workers`` > 1).

The trial's Tune actor (it holds only :data:`~streamtune.sweeps.resources.DRIVER_CPU`) builds the trainer the job
asks for (:attr:`Job.distributed <streamtune.job.Job.distributed>`: ``TorchTrainer`` or ``LightGBMTrainer``) with
``ScalingConfig(num_workers=workers, use_gpu=gpu > 0, resources_per_worker={"CPU": cpu, "GPU": gpu})`` and runs
it inside the trial, as Ray Train V2 runs under Tune: ``trainer.fit()`` in a function trainable, with
``TuneReportCallback`` passing rank 0's reports on to Tune, so ASHA prunes a multi-worker trial like any other
(a stopped trial's actor dies, and its Train run with it). Each worker runs the job's ``train`` with a
:class:`WorkerContext`: the whole splits, its ``rank``/``world_size``, a report that every worker makes, and a
``save_model`` that only rank 0 carries out, to the trial's folder with a manifest, as a one-process trial saves.

A worker's error fails the trial at once (no Ray Train retries: ``FailureConfig(max_failures=0)``); Ray Train
keeps trying to place the workers while other trials hold the cluster.

Example:
    >>> from streamtune.config.jobspec import ResourcesSpec
    >>> scaling_kwargs(ResourcesSpec(cpu=1, gpu=0.5, workers=2))
    {'num_workers': 2, 'use_gpu': True, 'resources_per_worker': {'CPU': 1.0, 'GPU': 0.5}}
    >>> scaling_kwargs(ResourcesSpec(cpu=0.5, workers=2))
    {'num_workers': 2, 'use_gpu': False, 'resources_per_worker': {'CPU': 0.5}}
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import ResourcesSpec
from streamtune.errors import SweepError
from streamtune.job import DistributedBackend, TrainContext, load_job_class
from streamtune.registry.manifest import write_manifest

__all__ = ["WORKERS_KEY", "WorkerContext", "WorkerTask", "run_workers", "scaling_kwargs"]

WORKERS_KEY = "streamtune_workers"
"""The result key a multi-worker trial reports its worker count under; :class:`TrialSummary` keeps it as
``workers``."""

_TASK = "streamtune_task"


@dataclass(frozen=True)
class WorkerTask:
    """What every worker of one multi-worker trial is given."""

    entrypoint: str
    """The job class, ``module:Class``."""
    config: dict[str, Any]
    """The trial's config over ``job.params``."""
    train: pa.Table
    valid: pa.Table
    label: str
    features: list[str]
    uri: str
    """Where rank 0 saves the model: the trial's folder (``trial_uri``)."""
    node_key: str
    """The result key the node id goes under (the runner's ``NODE_KEY``)."""


class WorkerContext(TrainContext):
    """The :class:`TrainContext` of one Ray Train worker of a multi-worker trial."""

    def __init__(self, task: WorkerTask) -> None:
        import ray
        import ray.train

        self.train, self.valid, self.label, self.features = task.train, task.valid, task.label, task.features
        self.uri, self.node_key = task.uri, task.node_key
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.saved: str | None = None

    def report(self, metrics: dict[str, float]) -> None:
        """Report on every worker (Ray Train waits for all); Tune gets rank 0's, with its node and the worker count."""
        import ray.train

        ray.train.report({**metrics, self.node_key: self.node_id, WORKERS_KEY: self.world_size})

    def save_model(self, writer: Callable[[str], None]) -> None:
        """On rank 0: write the model with a manifest and upload it to the trial's folder. Elsewhere: nothing."""
        if self.rank != 0:
            return
        with tempfile.TemporaryDirectory(prefix="streamtune-trial-") as scratch:
            writer(scratch)
            write_manifest(scratch)
            self.saved = ArtifactStore(self.uri).upload_dir(scratch, self.uri)


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: the job's ``train`` with this worker's context."""
    task: WorkerTask = config[_TASK]
    load_job_class(task.entrypoint)().train(dict(task.config), WorkerContext(task))


def scaling_kwargs(resources: ResourcesSpec) -> dict[str, Any]:
    """The ``ScalingConfig`` of a trial's Ray Train run: ``workers`` workers with ``cpu``/``gpu`` each."""
    per_worker = {"CPU": float(resources.cpu), **({"GPU": float(resources.gpu)} if resources.gpu > 0 else {})}
    return {"num_workers": resources.workers, "use_gpu": resources.gpu > 0, "resources_per_worker": per_worker}


def _trainer_class(backend: DistributedBackend | None, entrypoint: str) -> Any:
    if backend == "torch":
        from ray.train.torch import TorchTrainer

        return TorchTrainer
    if backend == "lightgbm":
        from ray.train.lightgbm import LightGBMTrainer

        return LightGBMTrainer
    raise SweepError(f"Got {backend!r} for Job.distributed of job {entrypoint}; a multi-worker trial needs one of "
                     "'torch', 'lightgbm'", fix="set sweep.resources.workers: 1, or declare Job.distributed")


def run_workers(task: WorkerTask, resources: ResourcesSpec, storage_uri: str, trial_id: str) -> None:
    """Run one trial as a Ray Train run of ``resources.workers`` workers, from inside its Tune trial.

    ``storage_uri`` is where Ray Train keeps the run's state (``<storage_uri>/<trial_id>``); the model goes to
    ``task.uri``.

    Raises:
        SweepError: the job declares no backend Ray Train has.
        ray.train.TrainingFailedError: a worker raised (the trial fails with it).
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    job_cls = load_job_class(task.entrypoint)
    trainer_cls = _trainer_class(job_cls.distributed, task.entrypoint)
    callbacks: list[Any] = [TuneReportCallback()]  # Ray Train V2's callback; the stubs type RunConfig's as Tune's
    trainer = trainer_cls(
        _train_worker,
        train_loop_config={_TASK: task},
        scaling_config=ScalingConfig(**scaling_kwargs(resources)),
        run_config=RunConfig(name=trial_id, storage_path=storage_uri, callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=0)),
    )
    trainer.fit()
