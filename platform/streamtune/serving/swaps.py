"""Driving a swap from the driver: typed board calls, the wait for all-loaded and all-acked, the canary.

:class:`BoardClient` wraps one board actor handle with blocking, typed calls and turns the board's refusals
into streamtune errors. :func:`run_swap` runs one swap (or rollback) to its end and returns a SwapReport.

Example:
    >>> client = BoardClient(ray.get_actor("streamtune-board-sales", namespace="streamtune"), "sales")
    ... # doctest: +SKIP
    >>> run_swap(client, ModelRef(version=2, uri="/a/2"), kind="swap", rollout=None).version  # doctest: +SKIP
    2
"""

from __future__ import annotations

import time
from typing import Any, Literal

import ray

from streamtune.config.jobspec import RolloutSpec
from streamtune.errors import SwapError
from streamtune.serving.records import (
    AccessPolicy,
    BoardSnapshot,
    CanaryReport,
    ModelRef,
    RequestCounts,
    StaleFenceError,
    SwapKind,
    SwapRecord,
    SwapReport,
    Version,
)

_POLL_S = 0.01


class BoardClient:
    """Blocking, typed calls to one app's VersionBoard; writers carry ``fence``.

    Args:
        handle: The board's actor handle.
        app: The Serve application (for messages).
        fence: The writer's fence token; a board that has seen a higher one refuses the writes.
    """

    def __init__(self, handle: Any, app: str, fence: int = 0) -> None:
        self.handle = handle
        self.app = app
        self.fence = fence

    def snapshot(self) -> BoardSnapshot:
        """Everything the board knows."""
        return self._get(self.handle.snapshot.remote())

    def record(self, generation: int) -> SwapRecord | None:
        """One swap's timeline, or None once the board forgot it."""
        return self._get(self.handle.record.remote(generation))

    def set_target(self, model: ModelRef, *, auto_flip: bool = True, kind: SwapKind = "swap") -> int:
        """Start a swap to ``model``; returns its generation."""
        return self._get(self.handle.set_target.remote(model, auto_flip, kind, fence=self.fence))

    def set_canary(self, generation: int, percent: float) -> int:
        """Send ``percent`` % of requests to the loaded target; returns the epoch."""
        return self._get(self.handle.set_canary.remote(generation, percent, fence=self.fence))

    def promote(self, generation: int) -> int:
        """Flip to the canary's target; returns the flip epoch."""
        return self._get(self.handle.promote.remote(generation, fence=self.fence))

    def abort(self, generation: int, reason: str) -> int:
        """Drop the pending target; returns the epoch."""
        return self._get(self.handle.abort.remote(generation, reason, fence=self.fence))

    def set_policy(self, policy: AccessPolicy) -> int:
        """Make every replica enforce ``policy``; returns the epoch that carries it."""
        return self._get(self.handle.set_policy.remote(policy, fence=self.fence))

    def claim(self) -> int:
        """Check (and remember) this writer's fence before it changes the Serve app."""
        return self._get(self.handle.claim.remote(self.fence))

    def get_deployed(self) -> str | None:
        """The fingerprint of the app's last deploy that the board knows, or None."""
        return self._get(self.handle.get_deployed.remote())

    def set_deployed(self, fingerprint: str) -> None:
        """Remember the fingerprint of the app's deploy."""
        self._get(self.handle.set_deployed.remote(fingerprint))

    def _get(self, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except StaleFenceError as exc:  # Ray wraps it; raise the board's own error, message intact
            cause = getattr(exc, "cause", exc)
            raise StaleFenceError(cause.app, cause.fence, cause.seen) from None


def run_swap(
    client: BoardClient,
    model: ModelRef,
    *,
    kind: SwapKind,
    rollout: RolloutSpec | None,
    timeout_s: float = 120,
) -> SwapReport:
    """Swap ``model`` in: every live replica loads it, then all flip at once; a canary first if asked.

    A canary runs only with ``rollout.canary_percent > 0`` and a version already active.

    Raises:
        SwapError: a replica could not load it, the canary failed (``err.report`` holds the numbers), the
            swap was superseded or timed out. The old version keeps serving in each case.
        StaleFenceError: the board has seen a newer writer.
    """
    started = time.monotonic()
    canary = rollout is not None and rollout.canary_percent > 0 and client.snapshot().active is not None
    generation = client.set_target(model, auto_flip=not canary, kind=kind)
    deadline = started + timeout_s
    _wait(client, generation, "loaded", deadline, timeout_s)
    canary_report = None
    if canary:
        assert rollout is not None
        canary_report = _canary(client, generation, rollout, deadline, started)
        client.promote(generation)
    record = _wait(client, generation, "acked", deadline, timeout_s)
    return _report(record, started, canary_report, rolled_back=kind == "rollback")


def wait_swap(client: BoardClient, generation: int, timeout_s: float) -> SwapRecord:
    """Wait until swap ``generation`` is loaded, flipped and acknowledged; SwapError if it fails."""
    deadline = time.monotonic() + timeout_s
    _wait(client, generation, "loaded", deadline, timeout_s)
    return _wait(client, generation, "acked", deadline, timeout_s)


def _wait(
    client: BoardClient, generation: int, stage: Literal["loaded", "acked"], deadline: float, timeout_s: float
) -> SwapRecord:
    """Poll the swap's record until ``stage`` is reached; raise SwapError on failure, abort or timeout."""
    while True:
        record = client.record(generation)
        if record is None:
            raise SwapError(f"Swap {generation} of app {client.app} is no longer known to its board")
        if (record.loaded_at if stage == "loaded" else record.acked_at) is not None:
            return record
        if record.failure is not None or record.aborted is not None:
            raise refused(client.app, record)
        if time.monotonic() > deadline:
            if stage == "loaded":
                client.abort(generation, "timed out")
            raise SwapError(
                f"Swap of app {client.app} to version {record.version} timed out after {timeout_s:.0f}s "
                f"waiting for every replica to {'load' if stage == 'loaded' else 'acknowledge'} it",
                fix=f"check the replicas in ModelService.status(); raise timeout_s above {timeout_s:.0f}",
            )
        time.sleep(_POLL_S)


def _canary(
    client: BoardClient, generation: int, rollout: RolloutSpec, deadline: float, started: float
) -> CanaryReport:
    """Send the canary share to the candidate, watch it, and withdraw it if it errs too often."""
    record = client.record(generation)
    assert record is not None
    _wait_applied(client, client.set_canary(generation, rollout.canary_percent), deadline)
    report = _observe(client, record.version, rollout)
    if report.error_rate <= rollout.max_error_rate:
        return report
    _wait_applied(client, client.abort(generation, "canary failed"), deadline)
    err = SwapError(
        f"Canary of version {record.version} on app {client.app} failed: error rate "
        f"{report.error_rate:.1%} over {report.requests} requests exceeds rollout.max_error_rate "
        f"{rollout.max_error_rate:.1%}; version {record.previous} keeps serving",
        fix="check the candidate's predict on live rows; its errors are in the replica logs",
    )
    # SwapError has no report field; the canary's numbers ride along as an attribute.
    final = client.record(generation) or record
    err.report = _report(final, started, report, rolled_back=True)  # type: ignore[attr-defined]
    raise err


def _wait_applied(client: BoardClient, epoch: int, deadline: float) -> None:
    while client.snapshot().min_applied_epoch < epoch:
        if time.monotonic() > deadline:
            raise SwapError(f"Replicas of app {client.app} did not apply board epoch {epoch} in time")
        time.sleep(_POLL_S)


def _observe(client: BoardClient, version: Version, rollout: RolloutSpec) -> CanaryReport:
    """Watch the candidate's request and error counts for ``rollout.observe`` seconds."""
    before = _counts(client, version)
    observe_until = time.monotonic() + rollout.observe
    while True:
        seen = _counts(client, version) - before
        # Stop early once enough requests show the rate is over the limit: every extra second hurts users.
        if (seen.error_rate > rollout.max_error_rate and seen.requests >= 10) or time.monotonic() >= observe_until:
            break
        time.sleep(0.1)
    return CanaryReport(
        percent=rollout.canary_percent,
        observe_s=rollout.observe,
        requests=seen.requests,
        errors=seen.errors,
        error_rate=seen.error_rate,
        max_error_rate=rollout.max_error_rate,
    )


def _counts(client: BoardClient, version: Version) -> RequestCounts:
    return client.snapshot().counters.get(version, RequestCounts())


def _report(record: SwapRecord, started: float, canary: CanaryReport | None, rolled_back: bool) -> SwapReport:
    loaded_at, flipped_at, acked_at = record.loaded_at, record.flipped_at, record.acked_at
    return SwapReport(
        version=record.version,
        previous=record.previous,
        load_s=round(loaded_at - record.started, 4) if loaded_at else 0.0,
        flip_s=round(acked_at - flipped_at, 4) if acked_at and flipped_at else 0.0,
        total_s=round(time.monotonic() - started, 4),
        replicas=record.replicas,
        canary=canary,
        rolled_back=rolled_back,
    )


def refused(app: str, record: SwapRecord) -> SwapError:
    """The SwapError for a swap that a replica refused or that was aborted.

    Example:
        >>> rec = SwapRecord(generation=1, kind="swap", version=2, uri="/a/2", previous=1, started=0.0,
        ...                  aborted="superseded by a newer swap")
        >>> refused("sales", rec).headline
        'Swap of app sales to version 2 was superseded by a newer swap; version 1 keeps serving'
    """
    failure = record.failure
    keeps = f"version {record.previous} keeps serving" if record.previous is not None else "nothing serves yet"
    if failure is not None:
        return SwapError(
            f"Replica {failure.replica} of app {app} could not load version {record.version} from "
            f"{record.uri}: {failure.reason}; {keeps}",
            fix="check the artifact (its manifest is verified before loading) and the job's load()",
        )
    return SwapError(f"Swap of app {app} to version {record.version} was {record.aborted}; {keeps}")
