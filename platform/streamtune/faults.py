"""Named kill points for fault tests: a process dies at a chosen line, not at a random moment.

Set ``STREAMTUNE_KILL_AT=name`` (or ``name:N`` to die at the N-th time the point is reached) before the
process starts; when :func:`kill_point` is called with that name, the process kills itself with SIGKILL,
exactly as ``kill -9`` would. Unset, a kill point costs one dictionary lookup.

A point may be called with a ``scope`` (the sweep driver passes its run attempt, ``a1``, ``a2``...); then
``name@scope`` (``name@scope:N``) arms it in that scope only, and a bare ``name`` in every scope. The sweep
driver runs as a Ray Job: :class:`~streamtune.sweeps.jobs_api.RayJobRunner` passes the submitting process's
``STREAMTUNE_KILL_AT`` into the job's ``runtime_env``, so a test arms the driver's points through the controller's
environment, and ``sweep.after_trial@a1:2`` kills the first attempt's driver once its second trial's end is
saved in Tune's experiment state, while the retried attempt (``a2``) runs on.

Example:
    >>> import os
    >>> os.environ.pop("STREAMTUNE_KILL_AT", None) and None
    >>> kill_point("ingest.after_commit")  # not armed: returns
    >>> os.environ["STREAMTUNE_KILL_AT"] = "sweep.after_trial@a1:2"
    >>> armed("sweep.after_trial", scope="a1"), armed("sweep.after_trial", scope="a2"), armed("ingest.after_commit")
    (True, False, False)
    >>> kill_point("sweep.after_trial", scope="a2")  # armed for attempt 1 only: returns
    >>> del os.environ["STREAMTUNE_KILL_AT"]
"""

from __future__ import annotations

import logging
import os
import signal

ENV = "STREAMTUNE_KILL_AT"
POINTS = (
    "ingest.after_parquet",  # a closed window's inline rows written to the store, nothing else done
    "ingest.after_dead_letter",  # refused records acknowledged by the dead-letter topic, offsets not stored
    "ingest.before_commit",  # events polled and windows updated in memory, nothing stored yet
    "ingest.after_commit",  # offsets, windows and new runs stored, Kafka's hint not committed yet
    "runs.after_submit",  # the Ray Job is submitted, the run not yet marked submitted
    "promote.after_swap",  # serving flipped to the new version, the champion alias not yet moved
    "command.after_start",  # a command is marked running, nothing done yet
    "sweep.after_trial",  # sweep driver (scope: its attempt): a trial ended and Tune's saved state holds that
)
"""The kill points the code has; tests name one of these."""

_hits: dict[str, int] = {}
log = logging.getLogger(__name__)


def _armed_count(name: str, scope: str | None) -> int | None:
    """At which hit the point dies (1 for ``name``, N for ``name:N``), or None if it is not armed here."""
    value = os.environ.get(ENV)
    if not value:
        return None
    point, _, nth = value.partition(":")
    point, _, armed_scope = point.partition("@")
    if point != name or (armed_scope and armed_scope != scope):
        return None
    return int(nth or 1)


def armed(name: str, *, scope: str | None = None) -> bool:
    """Whether ``STREAMTUNE_KILL_AT`` arms this point (in this scope): for a point whose call needs work first."""
    return _armed_count(name, scope) is not None


def kill_point(name: str, *, scope: str | None = None) -> None:
    """SIGKILL this process if ``STREAMTUNE_KILL_AT`` names this point (in this scope), at its N-th hit."""
    nth = _armed_count(name, scope)
    if nth is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= nth:
        log.warning("kill point %s reached (hit %d): SIGKILL", name, _hits[name])
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
