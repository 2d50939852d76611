"""Configuration: :class:`Settings` from ``STREAMTUNE_*`` variables, and the :class:`JobSpec` YAML contract."""

from streamtune.config.jobspec import (
    DatasetSpec,
    JobEntry,
    JobSpec,
    ObjectiveSpec,
    ParamSpec,
    ResourcesSpec,
    RolloutSpec,
    ServeSpec,
    SliceSpec,
    SweepSpec,
    TrainingDataSpec,
    TriggerSpec,
    ValidationSpec,
    load_jobspec,
)
from streamtune.config.settings import Settings

__all__ = [
    "DatasetSpec",
    "JobEntry",
    "JobSpec",
    "ObjectiveSpec",
    "ParamSpec",
    "ResourcesSpec",
    "RolloutSpec",
    "ServeSpec",
    "Settings",
    "SliceSpec",
    "SweepSpec",
    "TrainingDataSpec",
    "TriggerSpec",
    "ValidationSpec",
    "load_jobspec",
]
