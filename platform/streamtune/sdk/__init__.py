"""The Python SDK."""

from streamtune.sdk.client import Client

__all__ = ["Client"]
