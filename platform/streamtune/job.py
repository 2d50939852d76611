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

    Example:
        >>> class One(TrainContext):
        ...     def report(self, metrics): ...
        ...     def save_model(self, writer): ...
        >>> ctx = One()
        >>> ctx.rank, ctx.world_size, list(range(5)[ctx.shard()])
        (0, 1, [0, 1, 2, 3, 4])
        >>> ctx.rank, ctx.world_size = 1, 2
        >>> list(range(5)[ctx.shard()])
        [1, 3]
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
    - ``checkpoints``: whether a trial saves Tune checkpoints it can resume from. ``scheduler: pbt`` needs it
      (PBT copies a top trial's checkpoint into a bottom one) and is refused at submit otherwise. No template
      checkpoints yet, and :class:`TrainContext` has no checkpoint call yet, so keep it ``False``.
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
        >>> sorted(Tiny.params), Tiny.metrics_for({}), Tiny.checkpoints, Tiny.distributed
        (['lr'], {'rmse': 'min'}, False, None)
    """

    params: ClassVar[frozenset[str] | None] = None
    metrics: ClassVar[Mapping[str, Literal["min", "max"]] | None] = None
    checkpoints: ClassVar[bool] = False
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
