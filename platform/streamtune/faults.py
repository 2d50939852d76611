"""Named kill points for fault tests: a process dies at a chosen line, not at a random moment.

Set ``STREAMTUNE_KILL_AT=name`` (or ``name:N`` to die at the N-th time the point is reached) before the
process starts; when :func:`kill_point` is called with that name, the process kills itself with SIGKILL,
exactly as ``kill -9`` would. Unset, a kill point costs one dictionary lookup.

Example:
    >>> import os
    >>> os.environ.pop("STREAMTUNE_KILL_AT", None) and None
    >>> kill_point("ingest.after_commit")  # not armed: returns
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
)
"""The kill points the code has; tests name one of these."""

_hits: dict[str, int] = {}
log = logging.getLogger(__name__)


def kill_point(name: str) -> None:
    """SIGKILL this process if ``STREAMTUNE_KILL_AT`` names this point (at its N-th hit)."""
    armed = os.environ.get(ENV)
    if not armed:
        return
    point, _, nth = armed.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        log.warning("kill point %s reached (hit %d): SIGKILL", name, _hits[name])
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
