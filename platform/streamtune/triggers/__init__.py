"""Triggers: per-spec windows that turn data-arrival events into runs."""

from streamtune.triggers.window import Window, WindowEvent, WindowTrigger

__all__ = ["Window", "WindowEvent", "WindowTrigger"]
