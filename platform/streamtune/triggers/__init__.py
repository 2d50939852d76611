"""Triggers: per-spec windows that turn data-arrival events into runs."""

from streamtune.triggers.window import TriggerStage, Window, WindowEvent, WindowTrigger, event_keys

__all__ = ["TriggerStage", "Window", "WindowEvent", "WindowTrigger", "event_keys"]
