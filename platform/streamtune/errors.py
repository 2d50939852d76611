"""The streamtune error hierarchy.

Every error the platform raises on purpose derives from :class:`StreamtuneError`. Each carries a one-line
``headline`` (what went wrong, naming the field, the value and the rule where there is one) and an optional
``fix`` (what the user can do about it). The CLI prints those two for user errors, and a traceback only for
bugs.

Example:
    >>> from streamtune.errors import ConfigError
    >>> err = ConfigError('Got "ten" for trigger.max_wait; must be a duration like "10m"', fix="use 10m")
    >>> err.headline
    'Got "ten" for trigger.max_wait; must be a duration like "10m"'
"""

from __future__ import annotations


class StreamtuneError(Exception):
    """Root of every error streamtune raises on purpose.

    Args:
        headline: One line that says what went wrong.
        fix: Optional one line that says how to fix it.
    """

    def __init__(self, headline: str, *, fix: str | None = None) -> None:
        super().__init__(headline)
        self.headline = headline
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.headline}\n  fix: {self.fix}"
        return self.headline


class ConfigError(StreamtuneError):
    """A setting, JobSpec or YAML file is invalid."""


class EventError(StreamtuneError):
    """An event could not be decoded or does not match the DataArrival schema."""


class DataError(StreamtuneError):
    """A snapshot's files are missing, outside the allowed roots, or fail their checks."""


class SweepError(StreamtuneError):
    """A sweep could not be submitted, or it ended without a usable trial."""


class GateRejected(StreamtuneError):
    """The validation gate refused a challenger."""


class RegistryError(StreamtuneError):
    """The registry could not read or write a record."""


class NotFoundError(StreamtuneError):
    """A run, command, spec, model or version that was asked for does not exist."""


class AuthError(StreamtuneError):
    """The API refused the request: no token, or one it does not know (or that was revoked)."""


class FencedError(RegistryError):
    """A write came from a controller whose lease is no longer current (a stale leader); it was refused."""


class CommandFailed(StreamtuneError):
    """The controller carried out a command and it failed; the headline is the controller's reason."""


class SwapError(StreamtuneError):
    """A hot-swap did not complete on every replica."""


class ServiceError(StreamtuneError):
    """A local service (Kafka, Ray, Serve) could not be started or reached."""
