"""streamtune: event-driven training on Kafka, Ray Tune + Optuna, and Ray Serve with in-place hot-swap.

Example:
    >>> import streamtune
    >>> client = streamtune.Client.local()                  # doctest: +SKIP
    >>> client.submit("configs/demo.yaml").status.value     # doctest: +SKIP
    'succeeded'
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from streamtune.config import JobSpec, Settings, load_jobspec
    from streamtune.control import ControlPlane, ControlStatus, Prediction, PublishedEvent, SpecStatus
    from streamtune.events.schema import DataArrival
    from streamtune.job import Job, Predictor, TrainContext
    from streamtune.registry.commands import CommandOutcome, CommandRecord, CommandStatus
    from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
    from streamtune.sdk.client import Client
    from streamtune.serving.records import SwapReport

_LAZY = {
    "streamtune.config": ("JobSpec", "Settings", "load_jobspec"),
    "streamtune.control": ("ControlPlane", "ControlStatus", "Prediction", "PublishedEvent", "SpecStatus"),
    "streamtune.events.schema": ("DataArrival",),
    "streamtune.job": ("Job", "Predictor", "TrainContext"),
    "streamtune.registry.commands": ("CommandOutcome", "CommandRecord", "CommandStatus"),
    "streamtune.registry.records": ("AliasEvent", "ModelVersion", "RunRecord", "RunStatus", "SpecRecord"),
    "streamtune.sdk.client": ("Client",),
    "streamtune.serving.records": ("SwapReport",),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import the public names on first use: a trial's worker that imports ``streamtune.sweeps`` or a job's
    ``streamtune.job`` does not pay for the SDK, the controller and the registry (about 1 s per process)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'streamtune' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


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
