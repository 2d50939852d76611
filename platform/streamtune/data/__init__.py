"""Data: the Arrow snapshot behind a trigger window."""

from streamtune.data.snapshot import Snapshot, Splits

__all__ = ["Snapshot", "Splits"]
