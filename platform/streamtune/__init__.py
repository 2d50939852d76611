"""streamtune: event-driven training on Kafka, Ray Tune + Optuna, and Ray Serve with in-place hot-swap.

Example:
    >>> import streamtune
    >>> client = streamtune.Client.local()          # doctest: +SKIP
    >>> client.submit("configs/demo.yaml")          # doctest: +SKIP
"""

from streamtune.config import JobSpec, Settings, load_jobspec
from streamtune.errors import (
    ConfigError,
    DataError,
    EventError,
    GateRejected,
    RegistryError,
    ServiceError,
    StreamtuneError,
    SwapError,
    SweepError,
)
from streamtune.events.schema import DataArrival
from streamtune.job import Job, Predictor, TrainContext
from streamtune.sdk.client import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "DataArrival",
    "DataError",
    "EventError",
    "GateRejected",
    "Job",
    "JobSpec",
    "Predictor",
    "RegistryError",
    "ServiceError",
    "Settings",
    "StreamtuneError",
    "SwapError",
    "SweepError",
    "TrainContext",
    "load_jobspec",
    "__version__",
]
