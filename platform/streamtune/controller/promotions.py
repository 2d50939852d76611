"""Swaps off the controller loop: each spec's promotion swap (canary observation included) runs in a thread.

:class:`PromotionWorker` runs ``Serving.swap`` in a daemon thread of its own, one at a time per spec, and hands
the outcome back as a :class:`PromotionOutcome` when the loop asks for it. The worker never writes to the
registry: the loop thread records the outcome (champion alias, run status), so the registry keeps one writer
thread and its fence. An outcome from an older lease term (the fence token changed since the swap started) is
dropped: the new term promotes the run again.

Example:
    >>> from types import SimpleNamespace as NS
    >>> class Quick:
    ...     fence = 1
    ...     def swap(self, spec, ref, rollout=None):
    ...         return NS(load_s=0.1, flip_s=0.0, total_s=0.1)
    >>> worker = PromotionWorker(Quick())
    >>> worker.start("ctr", "r-1", lambda: worker.services.swap(None, None))
    True
    >>> worker.wait("ctr", 5).run_id
    'r-1'
    >>> worker.take("ctr").report.load_s, worker.busy("ctr")
    (0.1, False)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["COMMAND_PREFIX", "PromotionOutcome", "PromotionWorker"]

COMMAND_PREFIX = "command:"
"""The key of a promote or rollback command's swap in the worker (``command:<id>``); other keys are run ids."""


@dataclass
class PromotionOutcome:
    """What became of one promotion swap: its report, or the exception it raised."""

    spec: str
    run_id: str
    fence: int
    started_at: float
    report: Any = None
    error: BaseException | None = None
    ended_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


class PromotionWorker:
    """Runs promotion swaps outside the controller loop, at most one per spec at a time.

    Args:
        services: The serving port; its ``fence`` is recorded with each swap, so an outcome from an older lease
            term is dropped by :meth:`take`.
    """

    def __init__(self, services: Any) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._jobs: dict[str, PromotionOutcome] = {}

    def busy(self, spec: str) -> bool:
        """True while spec ``spec`` has a swap in progress."""
        with self._lock:
            job = self._jobs.get(spec)
        return job is not None and not job.done.is_set()

    def running(self, spec: str) -> str | None:
        """The run id whose promotion spec ``spec`` has started (in progress or done, not yet taken), or None."""
        with self._lock:
            job = self._jobs.get(spec)
        return job.run_id if job is not None else None

    def start(self, spec: str, run_id: str, swap: Callable[[], Any]) -> bool:
        """Start ``swap()`` for ``run_id`` in a thread of its own; False if the spec already has one."""
        with self._lock:
            if spec in self._jobs:
                return False
            job = PromotionOutcome(spec=spec, run_id=run_id, fence=int(getattr(self.services, "fence", 0)),
                                   started_at=time.time())
            self._jobs[spec] = job
        thread = threading.Thread(target=self._run, args=(job, swap), name=f"streamtune-promote-{spec}",
                                  daemon=True)
        thread.start()
        return True

    def _run(self, job: PromotionOutcome, swap: Callable[[], Any]) -> None:
        try:
            job.report = swap()
        except BaseException as exc:  # handed to the loop thread, which decides (FencedError included)
            job.error = exc
        finally:
            job.ended_at = time.time()
            job.done.set()

    def take(self, spec: str) -> PromotionOutcome | None:
        """The spec's finished promotion, removed from the worker; None while none is finished.

        An outcome from an older lease term is dropped (logged) and None returned.
        """
        with self._lock:
            job = self._jobs.get(spec)
            if job is None or not job.done.is_set():
                return None
            del self._jobs[spec]
        fence = int(getattr(self.services, "fence", 0))
        if job.fence != fence:
            log.warning("dropping the outcome of run %s's swap: it started under lease token %d, now %d",
                        job.run_id, job.fence, fence)
            return None
        return job

    def wait(self, spec: str, timeout_s: float) -> PromotionOutcome | None:
        """Block until the spec's swap finishes (for tests and shutdown); the outcome stays to be taken."""
        with self._lock:
            job = self._jobs.get(spec)
        if job is None:
            return None
        job.done.wait(timeout_s)
        return job if job.done.is_set() else None
