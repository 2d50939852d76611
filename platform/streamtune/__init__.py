"""streamtune: event-driven training on Kafka, Ray Tune + Optuna, and Ray Serve with in-place hot-swap.

Example:
    >>> import streamtune
    >>> client = streamtune.Client.local()                  # doctest: +SKIP
    >>> client.submit("configs/demo.yaml").status.value     # doctest: +SKIP
    'succeeded'
"""

from streamtune.config import JobSpec, Settings, load_jobspec
from streamtune.control import ControlPlane, ControlStatus, Prediction, PublishedEvent, SpecStatus
from streamtune.errors import (
    CommandFailed,
    ConfigError,
    DataError,
    EventError,
    FencedError,
    GateRejected,
    NotFoundError,
    RegistryError,
    ServiceError,
    StreamtuneError,
    SwapError,
    SweepError,
)
from streamtune.events.schema import DataArrival
from streamtune.job import Job, Predictor, TrainContext
from streamtune.registry.commands import CommandOutcome, CommandRecord, CommandStatus
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
from streamtune.sdk.client import Client
from streamtune.serving.records import SwapReport

__version__ = "0.1.0"

__all__ = [
    "AliasEvent",
    "Client",
    "CommandFailed",
    "CommandOutcome",
    "CommandRecord",
    "CommandStatus",
    "ConfigError",
    "ControlPlane",
    "ControlStatus",
    "DataArrival",
    "DataError",
    "EventError",
    "FencedError",
    "GateRejected",
    "Job",
    "JobSpec",
    "ModelVersion",
    "NotFoundError",
    "Prediction",
    "Predictor",
    "PublishedEvent",
    "RegistryError",
    "RunRecord",
    "RunStatus",
    "ServiceError",
    "Settings",
    "SpecRecord",
    "SpecStatus",
    "StreamtuneError",
    "SwapError",
    "SwapReport",
    "SweepError",
    "TrainContext",
    "load_jobspec",
    "__version__",
]
