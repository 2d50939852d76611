"""Controller: the loop that runs the flow and is the only writer of run state."""

from streamtune.controller.loop import Controller, ServeHub

__all__ = ["Controller", "ServeHub"]
