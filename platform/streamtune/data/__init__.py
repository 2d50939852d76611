"""Data: the Arrow snapshot behind a trigger window, the one URI check, and inline rows' schema checks."""

from streamtune.data.snapshot import Snapshot, Splits
from streamtune.data.uris import UriChecker, check_uri, platform_roots

__all__ = ["Snapshot", "Splits", "UriChecker", "check_uri", "platform_roots"]
