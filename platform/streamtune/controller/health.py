"""Per-spec isolation: one spec that cannot advance is marked ``error`` and backs off; the others keep flowing.

The controller advances every spec in its own guarded turn (:meth:`SpecGuard.turn`). A turn that raises (a
streamtune error or any other exception; never :class:`~streamtune.errors.FencedError`, which means this
controller lost the lease and must step down) is recorded with the spec through
:meth:`Registry.set_spec_health`: the reason (the exception's type and message), one more failure, and
``retry_at``, after an exponential backoff (:func:`backoff_s`: 1 s doubling up to 5 min). A spec in backoff is
skipped until ``retry_at``; its next successful turn clears the error. Kafka topics get the same treatment in
:class:`TopicBackoff`: a topic the controller cannot create or read is left out of the consumer, and the specs
on it are marked with the reason, while the other topics are consumed.

Example:
    >>> from streamtune.registry import open_registry
    >>> from streamtune.config.jobspec import JobSpec
    >>> reg = open_registry("sqlite:///:memory:")
    >>> spec = JobSpec.model_validate({"name": "ctr", "dataset": {"name": "clicks", "label": "y"},
    ...     "job": {"entrypoint": "jobs.x:Job"}, "serve": {"app": "ctr"}, "sweep": {"metric": "auc",
    ...     "mode": "max", "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
    >>> record = reg.put_spec(spec)
    >>> guard = SpecGuard(reg, clock=lambda: 1000.0)
    >>> def poison() -> None:
    ...     raise KeyError("boom")
    >>> guard.turn(record, poison)
    "KeyError: 'boom'"
    >>> stored = reg.get_spec("ctr"); (stored.state, stored.failures, stored.retry_at)
    ('error', 1, 1001.0)
    >>> guard.due(stored)
    False
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streamtune.errors import FencedError, RegistryError, StreamtuneError
from streamtune.registry.base import Registry
from streamtune.registry.records import SpecRecord

log = logging.getLogger(__name__)

__all__ = ["BACKOFF_FIRST_S", "BACKOFF_MAX_S", "SpecGuard", "TopicBackoff", "backoff_s", "describe_error"]

BACKOFF_FIRST_S = 1.0
"""The first retry of a failing spec or topic comes this many seconds after its first failure."""
BACKOFF_MAX_S = 300.0
"""The backoff doubles with each failure in a row up to this many seconds (5 min)."""


def backoff_s(failures: int, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``first_s`` doubling, capped at ``max_s``.

    Example:
        >>> [backoff_s(n) for n in (1, 2, 3, 10, 20)]
        [1.0, 2.0, 4.0, 300.0, 300.0]
    """
    return float(min(max_s, first_s * 2 ** min(max(failures - 1, 0), 30)))


def describe_error(exc: BaseException) -> str:
    """A readable reason: the exception's type and message (a streamtune error's headline).

    Example:
        >>> describe_error(ValueError("bad value"))
        'ValueError: bad value'
    """
    message = exc.headline if isinstance(exc, StreamtuneError) else str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class SpecGuard:
    """Runs one spec's turn so that its failure is recorded with it, and backs it off, instead of stopping the rest.

    Args:
        registry: The controller's (fenced) registry; spec health is written through it.
        clock: Wall clock (``retry_at`` is a Unix time, so that every client can show it).
        first_s: The first backoff.
        max_s: The longest backoff.
    """

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.registry = registry
        self.clock = clock
        self.first_s = first_s
        self.max_s = max_s

    def due(self, record: SpecRecord) -> bool:
        """False while the spec is backing off (``retry_at`` is still ahead)."""
        return record.retry_at is None or self.clock() >= record.retry_at

    def turn(self, record: SpecRecord, work: Callable[[], None]) -> str | None:
        """Run ``work`` for spec ``record``; return None if it went through, else the reason recorded.

        Success clears a recorded error. A :class:`~streamtune.errors.FencedError` propagates (the lease is
        lost); any other exception marks the spec ``error`` with a backoff.
        """
        try:
            work()
        except FencedError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure of one spec must leave the others running
            reason = describe_error(exc)
            if not isinstance(exc, StreamtuneError):
                log.exception("spec %s raised", record.name)
            self.fail(record, reason)
            return reason
        if record.error is not None:
            self._write(record.name, None, None)
            log.info("spec %s recovered after %d failure(s): %s", record.name, record.failures, record.error)
        return None

    def fail(self, record: SpecRecord, reason: str, *, retry_at: float | None = None) -> float:
        """Record ``reason`` with the spec and its next try; returns ``retry_at`` (the spec's backoff by default)."""
        failures = record.failures + 1
        retry_at = retry_at if retry_at is not None else self.clock() + backoff_s(failures, self.first_s, self.max_s)
        log.warning("spec %s failed (%d in a row, next try in %.0fs): %s", record.name, failures,
                    retry_at - self.clock(), reason)
        self._write(record.name, reason, retry_at)
        return retry_at

    def _write(self, name: str, error: str | None, retry_at: float | None) -> None:
        try:
            self.registry.set_spec_health(name, error=error, retry_at=retry_at)
        except FencedError:
            raise
        except RegistryError as exc:  # e.g. the spec was deleted meanwhile: nothing to mark
            log.warning("could not record the health of spec %s: %s", name, exc.headline)


@dataclass
class _TopicFailure:
    failures: int
    retry_at: float
    reason: str


class TopicBackoff:
    """Which Kafka topics failed (create or read), why, and when each is tried again.

    Example:
        >>> topics = TopicBackoff(clock=lambda: 50.0)
        >>> topics.fail("bad topic!", "ServiceError: invalid name")
        51.0
        >>> topics.usable(["good", "bad topic!"]), topics.reason("bad topic!")
        (['good'], 'ServiceError: invalid name')
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, first_s: float = BACKOFF_FIRST_S,
                 max_s: float = BACKOFF_MAX_S) -> None:
        self.clock = clock
        self.first_s = first_s
        self.max_s = max_s
        self._failed: dict[str, _TopicFailure] = {}

    def usable(self, topics: Iterable[str]) -> list[str]:
        """``topics`` less the ones backing off, sorted."""
        now = self.clock()
        return sorted(t for t in set(topics) if t not in self._failed or now >= self._failed[t].retry_at)

    def failing(self) -> set[str]:
        """Topics whose last try failed (backing off or due again)."""
        return set(self._failed)

    def reason(self, topic: str) -> str | None:
        """Why ``topic`` failed last, or None."""
        failure = self._failed.get(topic)
        return failure.reason if failure else None

    def fail(self, topic: str, reason: str) -> float:
        """Record a failure of ``topic``; returns when it is tried next (Unix time)."""
        failures = self._failed[topic].failures + 1 if topic in self._failed else 1
        retry_at = self.clock() + backoff_s(failures, self.first_s, self.max_s)
        self._failed[topic] = _TopicFailure(failures, retry_at, reason)
        return retry_at

    def ok(self, topic: str) -> None:
        """``topic`` works again."""
        self._failed.pop(topic, None)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the failures of topics no spec watches any more."""
        keep = set(keep)
        for topic in [t for t in self._failed if t not in keep]:
            del self._failed[topic]
