"""The Job protocol: what a training file in ``jobs/`` implements.

A job trains one model per trial and loads a saved model for serving::

    class Job(streamtune.Job):
        def train(self, config, ctx):
            for step in range(config["rounds"]):
                ...
                ctx.report({"rmse": rmse})        # per step, so ASHA can prune
            ctx.save_model(lambda d: booster.save_model(f"{d}/model.txt"))

        def load(self, artifact_dir):
            return MyPredictor(...)               # has predict(batch) -> list

Example:
    >>> from streamtune.job import load_job_class
    >>> load_job_class("jobs.tabular_gbdt:Job").__name__  # doctest: +SKIP
    'Job'
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from streamtune.errors import ConfigError

DistributedBackend = Literal["torch", "lightgbm"]
"""The Ray Train backends a job can train on with several workers (:attr:`Job.distributed`)."""


class Predictor(ABC):
    """A loaded model that serving calls, and that the gate scores.

    Serving returns :meth:`predict`: a value per row for regression, a class label per row for a classifier.
    The gate and the sweep score :meth:`predict_scores` against the label, encoded by :attr:`classes`.

    Example:
        >>> import pyarrow as pa
        >>> class Coin(Predictor):
        ...     classes = ["no", "yes"]
        ...     def predict(self, batch): return ["yes"] * batch.num_rows
        ...     def predict_scores(self, batch): return np.full(batch.num_rows, 0.9)
        >>> t = pa.table({"x": [1.0, 2.0]})
        >>> Coin().predict(t), Coin().predict_scores(t).tolist()
        (['yes', 'yes'], [0.9, 0.9])
    """

    classes: Sequence[Any] | None = None
    """For a classifier, its class labels in the order of :meth:`predict_scores`' columns (binary: the score is
    the probability of ``classes[1]``); ``None`` for regression."""

    @abstractmethod
    def predict(self, batch: pa.Table) -> Sequence[Any]:
        """Return one prediction per row of ``batch``: a value (regression) or a class label (classifier)."""

    def predict_scores(self, batch: pa.Table) -> np.ndarray:
        """What the metrics score, one row per row of ``batch``: the value (regression), the probability of
        ``classes[1]`` (binary, shape ``(rows,)``), or one probability per class (multiclass, shape
        ``(rows, len(classes))``). Default: :meth:`predict` as floats."""
        return np.asarray(list(self.predict(batch)), dtype=float)


class TrainContext(ABC):
    """What a trial hands to :meth:`Job.train`.

    In a multi-worker trial (``sweep.resources.workers`` > 1, a job that declares :attr:`Job.distributed`) every
    worker gets its own context: ``train`` and ``valid`` are the whole splits on every worker, ``rank`` and
    ``world_size`` say which worker this is, and :meth:`shard` picks its part of the training rows. Every worker
    calls :meth:`report` the same number of times (Ray Train waits for all of them at each report) and Tune gets
    rank 0's metrics; every worker may call :meth:`save_model`, and only rank 0's writer runs.

    Checkpoints (a job with :attr:`Job.checkpoints`): report with :meth:`report_checkpoint` instead of
    :meth:`report`, handing a writer of the files the job resumes from; the context runs it only at the steps whose
    checkpoint the sweep's scheduler can use (PBT: every ``grace_period`` steps). At its start a trial asks
    :meth:`restored_checkpoint` for the folder it resumes from (None: a fresh start) and continues from the step
    after it, with this trial's config (PBT may have changed it). A context that cannot checkpoint (the refit, a
    multi-worker trial, a test's) keeps both defaults: report without checkpoint, and always a fresh start.

    Example:
        >>> class One(TrainContext):
        ...     def report(self, metrics): print(metrics)
        ...     def save_model(self, writer): ...
        >>> ctx = One()
        >>> ctx.rank, ctx.world_size, list(range(5)[ctx.shard()])
        (0, 1, [0, 1, 2, 3, 4])
        >>> ctx.rank, ctx.world_size = 1, 2
        >>> list(range(5)[ctx.shard()])
        [1, 3]
        >>> ctx.restored_checkpoint() is None
        True
        >>> ctx.report_checkpoint({"rmse": 1.5}, lambda folder: None)  # no checkpoint here: the writer never runs
        {'rmse': 1.5}
    """

    train: pa.Table
    valid: pa.Table
    label: str
    features: list[str]
    rank: int = 0
    """This worker's rank (0 on a one-process trial, the refit, and the worker whose reports reach Tune)."""
    world_size: int = 1
    """How many workers train this trial together."""

    @abstractmethod
    def report(self, metrics: dict[str, float]) -> None:
        """Report one step's metrics (the sweep's metric among them), so the scheduler can prune."""

    @abstractmethod
    def save_model(self, writer: Callable[[str], None]) -> None:
        """Call ``writer(folder)`` to write the model's files; a sha256 manifest is added after."""

    def report_checkpoint(self, metrics: dict[str, float], writer: Callable[[str], None]) -> None:
        """Report one step's metrics like :meth:`report`, with a checkpoint: ``writer(folder)`` writes what the job
        needs to resume after this step (weights, optimiser state, the step). The context calls it only when the
        sweep can use a checkpoint of this step, then keeps the folder as a Tune checkpoint. Default: no
        checkpoint, the writer is not called (:meth:`report` only)."""
        self.report(metrics)

    def restored_checkpoint(self) -> Path | None:
        """The local folder of the checkpoint this trial resumes from, with the files a :meth:`report_checkpoint`
        writer wrote (its own, or another trial's under PBT), or None on a fresh start. Call it once, before the
        first report. Default: None (the context never restores, e.g. the refit trains from scratch)."""
        return None

    def shard(self) -> slice:
        """This worker's rows: every ``world_size``-th row from ``rank`` (every row with one worker). Index a numpy
        array or ``DataFrame.iloc`` with it; the workers' shards differ in length by at most one row."""
        return slice(self.rank, None, self.world_size)


class Job(ABC):
    """The training code of one model family. Implementations live in ``jobs/``.

    A job may declare what it accepts and reports, so a spec is checked at submit (in a Ray task with the job's
    code, never in the controller) rather than failing, or silently tuning nothing, at run time:

    - ``params``: every config key :meth:`train` reads; a ``job.params`` key or ``sweep.space`` dimension
      outside it is refused. ``None`` (the default): not declared, not checked.
    - ``metrics``: metric name -> ``"min"`` or ``"max"`` (its better direction); ``sweep.metric`` must be one
      of them and ``sweep.mode`` must match. ``None``: only the platform's table of known metrics is checked.
    - ``checkpoints``: whether :meth:`train` reports checkpoints (:meth:`TrainContext.report_checkpoint`) and
      resumes from :meth:`TrainContext.restored_checkpoint`. ``scheduler: pbt`` needs it (PBT copies a top
      trial's checkpoint into a bottom one, which continues from there with mutated params) and is refused at
      submit otherwise. ``jobs/torch_mlp.py`` checkpoints; ``jobs/tabular_gbdt.py`` does not.
    - ``mutable_params``: the params a trial can change when it resumes from a checkpoint (those PBT may mutate:
      every ``sweep.space`` dimension of a pbt sweep must be one, checked at submit), e.g. the learning rate but
      not the layer sizes the checkpoint's weights have. ``None`` (the default): any of them.
    - ``distributed``: how :meth:`train` runs on several Ray Train workers (``sweep.resources.workers`` > 1):
      ``"torch"`` (a ``TorchTrainer``: torch.distributed is set up, gloo on CPU and nccl on GPU, so
      ``ray.train.torch.prepare_model`` wraps the model in DDP) or ``"lightgbm"`` (a ``LightGBMTrainer``:
      ``ray.train.lightgbm.get_network_params()`` gives LightGBM's network params). ``None`` (the default): the
      job trains in one process, and ``workers`` > 1 is refused at submit. See :class:`TrainContext` for what a
      worker sees.

    Example:
        >>> class Tiny(Job):
        ...     params = frozenset({"lr"})
        ...     metrics = {"rmse": "min"}
        ...     def train(self, config, ctx): ...
        ...     def load(self, artifact_dir): ...
        >>> sorted(Tiny.params), Tiny.metrics_for({}), Tiny.checkpoints, Tiny.mutable_params, Tiny.distributed
        (['lr'], {'rmse': 'min'}, False, None, None)
    """

    params: ClassVar[frozenset[str] | None] = None
    metrics: ClassVar[Mapping[str, Literal["min", "max"]] | None] = None
    checkpoints: ClassVar[bool] = False
    mutable_params: ClassVar[frozenset[str] | None] = None
    distributed: ClassVar[DistributedBackend | None] = None

    @classmethod
    def metrics_for(cls, params: Mapping[str, Any]) -> Mapping[str, Literal["min", "max"]] | None:
        """The metrics a trial reports under the fixed ``params`` (``job.params``); default: ``metrics``.

        Override when what is reported depends on a param (e.g. the objective).
        """
        return cls.metrics

    @abstractmethod
    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        """Train one trial with ``config``, reporting per step and saving the model at the end."""

    @abstractmethod
    def load(self, artifact_dir: str | Path) -> Predictor:
        """Load a model that :meth:`train` saved."""


def load_for_serving(entrypoint: str, artifact_uri: str, scratch: str | Path | None = None, *,
                     manifest_sha256: str | None = None, what: str | None = None) -> tuple[Predictor, Path]:
    """Load a model exactly as a serving replica does: verify a private copy, then the job's :meth:`Job.load`.

    The artifact folder at ``artifact_uri`` is copied into a fresh folder under ``scratch`` (default: the
    system's temp folder), its manifest is checked there, and the job loads from that copy, so the loaded
    bytes are the verified bytes; with ``manifest_sha256`` (the registry's digest) the manifest itself is
    checked first. The caller removes the returned folder when it drops the model. Serving
    replicas and the gate's smoke test both call this.

    Example:
        >>> predictor, folder = load_for_serving("jobs.tabular_gbdt:Job", "s3://b/m/trials/t1")  # doctest: +SKIP
    """
    import tempfile

    from streamtune.artifacts.verified import fetch_verified_to

    folder = fetch_verified_to(artifact_uri, tempfile.mkdtemp(prefix="model-", dir=scratch),
                               manifest_sha256=manifest_sha256, what=what)
    return load_job_class(entrypoint)().load(folder), folder


def load_job_class(entrypoint: str) -> type[Job]:
    """Import ``module:Class`` and check it implements :class:`Job`.

    Raises:
        ConfigError: the module or class cannot be found, or is not a Job.
    """
    module_name, _, attr = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f'Got "{entrypoint}" for job.entrypoint; module {module_name} cannot be imported ({exc})',
            fix="check job.code points at the folder holding the package",
        ) from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise ConfigError(f'Got "{entrypoint}" for job.entrypoint; {attr} must be a subclass of streamtune.Job')
    return cls
