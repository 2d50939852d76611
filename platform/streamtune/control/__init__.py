"""The control-plane interface: one typed API for the SDK, the CLI and (later) the HTTP API.

:class:`ControlPlane` says what a caller can do; :class:`LocalControlPlane` does it beside the registry.
Reads come from the registry; every change is a command appended for the active controller to carry out.
"""

from streamtune.control.base import ControlPlane
from streamtune.control.local import LocalControlPlane
from streamtune.control.records import (
    ControllerStatus,
    ControlStatus,
    Prediction,
    PublishedEvent,
    RunLogs,
    SpecStatus,
)

__all__ = [
    "ControlPlane",
    "ControlStatus",
    "ControllerStatus",
    "LocalControlPlane",
    "Prediction",
    "PublishedEvent",
    "RunLogs",
    "SpecStatus",
]
