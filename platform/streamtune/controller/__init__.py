"""Controller: the one active writer that runs the flow, under a lease, with standbys waiting to take over."""

from streamtune.controller.loop import Controller

__all__ = ["Controller"]
