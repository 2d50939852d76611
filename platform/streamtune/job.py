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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamtune.errors import ConfigError


class Predictor(ABC):
    """A loaded model that serving calls."""

    @abstractmethod
    def predict(self, batch: pa.Table) -> Sequence[Any]:
        """Return one prediction per row of ``batch``."""


class TrainContext(ABC):
    """What a trial hands to :meth:`Job.train`."""

    train: pa.Table
    valid: pa.Table
    label: str
    features: list[str]

    @abstractmethod
    def report(self, metrics: dict[str, float]) -> None:
        """Report one step's metrics (the sweep's metric among them), so the scheduler can prune."""

    @abstractmethod
    def save_model(self, writer: Callable[[str], None]) -> None:
        """Call ``writer(folder)`` to write the model's files; a sha256 manifest is added after."""


class Job(ABC):
    """The training code of one model family. Implementations live in ``jobs/``."""

    @abstractmethod
    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        """Train one trial with ``config``, reporting per step and saving the model at the end."""

    @abstractmethod
    def load(self, artifact_dir: str | Path) -> Predictor:
        """Load a model that :meth:`train` saved."""


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
