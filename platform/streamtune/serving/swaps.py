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
    WatchReport,
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

    def set_canary(self, generation: int, percent: float, shadow_percent: float = 0.0) -> int:
        """Send ``percent`` % of requests to the loaded target and mirror ``shadow_percent`` %; returns the epoch."""
        return self._get(self.handle.set_canary.remote(generation, percent, shadow_percent, fence=self.fence))

    def set_watch(self, generation: int, seconds: float) -> None:
        """Mark the flipped swap as under its post-promotion watch for ``seconds`` (0 ends it)."""
        self._get(self.handle.set_watch.remote(generation, seconds, fence=self.fence))

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
    timeout_s: float | None = None,
) -> SwapReport:
    """Swap ``model`` in: every live replica loads it, then all flip at once; an observation first if asked.

    Each phase has its own deadline: loading ``timeout_s`` (default ``rollout.load_timeout``), the observation
    (canary and shadow) ``rollout.observe``, each ack ``rollout.ack_timeout``, then the post-promotion watch
    ``rollout.watch``. An observation runs only with ``canary_percent`` or ``shadow_percent`` > 0 and a version
    already active. Once the flip happened, a failure (ack timeout, a breach seen by the watch) flips back to
    the previous version, which every replica still holds.

    Returns:
        The report of a swap whose version now serves.

    Raises:
        SwapError: a replica could not load it, the observation failed, the swap was superseded or timed out, or
            it was rolled back after the flip. ``err.report`` (when set) is a SwapReport whose ``version`` is
            what serves now and ``rolled_back`` True; the old version serves in each case.
        StaleFenceError: the board has seen a newer writer.
    """
    started = time.monotonic()
    phases = rollout or RolloutSpec()
    load_timeout = phases.load_timeout if timeout_s is None else timeout_s
    active = client.snapshot().active
    trial = (
        rollout is not None and (rollout.canary_percent > 0 or rollout.shadow_percent > 0) and active is not None
    )
    generation = client.set_target(model, auto_flip=not trial, kind=kind)
    record = _wait(client, generation, "loaded", time.monotonic() + load_timeout, load_timeout, "load")
    canary_report = None
    if trial:
        assert rollout is not None
        canary_report = _canary(client, generation, rollout, started)
        client.promote(generation)
    try:
        record = _wait(client, generation, "acked", time.monotonic() + phases.ack_timeout, phases.ack_timeout, "ack")
    except StaleFenceError:
        raise
    except SwapError as exc:
        if record.flipped_at is None and (now := client.record(generation)) is not None and now.flipped_at is None:
            raise
        raise _rolled_back(client, record, started, canary_report, f"the flip failed: {exc.headline}") from None
    report = _report(record, started, canary_report, rolled_back=kind == "rollback")
    if rollout is not None and rollout.watch > 0 and record.previous is not None and kind != "rollback":
        watch = _watch(client, record, rollout)
        if watch.rolled_back:
            assert watch.reason is not None
            raise _rolled_back(client, record, started, canary_report, watch.reason, watch)
        report = _report(record, started, canary_report, rolled_back=False, watch=watch)
    return report


def wait_swap(client: BoardClient, generation: int, timeout_s: float) -> SwapRecord:
    """Wait until swap ``generation`` is loaded, flipped and acknowledged; SwapError if it fails."""
    deadline = time.monotonic() + timeout_s
    _wait(client, generation, "loaded", deadline, timeout_s, "load")
    return _wait(client, generation, "acked", deadline, timeout_s, "ack")


def _wait(
    client: BoardClient,
    generation: int,
    stage: Literal["loaded", "acked"],
    deadline: float,
    timeout_s: float,
    phase: str,
) -> SwapRecord:
    """Poll the swap's record until ``stage`` is reached; raise SwapError on failure, abort or timeout.

    A load that times out is aborted; if the board flipped meanwhile (the last replica loaded in time after
    all), the record is returned as loaded.
    """
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
                after = client.record(generation)
                if after is not None and after.loaded_at is not None and after.aborted is None:
                    return after
            raise SwapError(
                f"Swap of app {client.app} to version {record.version} timed out after {timeout_s:g}s "
                f"waiting for every replica to {'load' if stage == 'loaded' else 'acknowledge'} it "
                f"(rollout.{phase}_timeout is {timeout_s:g}s)",
                fix=f"check the replicas in ModelService.status(); raise rollout.{phase}_timeout above {timeout_s:g}s",
            )
        time.sleep(_POLL_S)


def _canary(client: BoardClient, generation: int, rollout: RolloutSpec, started: float) -> CanaryReport:
    """Send the canary share to the candidate and mirror the shadow share; withdraw it unless it passes."""
    record = client.record(generation)
    assert record is not None
    before = _counts(client, record.version)
    epoch = client.set_canary(generation, rollout.canary_percent, rollout.shadow_percent)
    _wait_applied(client, epoch, time.monotonic() + rollout.ack_timeout)
    report = _observe(client, record.version, rollout, before)
    if report.passed:
        return report
    _wait_applied(client, client.abort(generation, "canary failed"), time.monotonic() + rollout.ack_timeout)
    what = "Canary" if rollout.canary_percent > 0 else "Shadow observation"
    err = SwapError(
        f"{what} of version {record.version} on app {client.app} failed: {report.reason}; "
        f"version {record.previous} keeps serving",
        fix="check the candidate's predict on live rows (its errors are in the replica logs), or the rollout's "
        "limits (serve.rollout: min_requests, max_error_rate, max_p99_ms)",
    )
    # SwapError has no report field; the numbers ride along as an attribute.
    final = client.record(generation) or record
    err.report = _report(  # type: ignore[attr-defined]
        final, started, report, rolled_back=True, serving=record.previous, reason=report.reason
    )
    raise err


def _wait_applied(client: BoardClient, epoch: int, deadline: float) -> None:
    while client.snapshot().min_applied_epoch < epoch:
        if time.monotonic() > deadline:
            raise SwapError(f"Replicas of app {client.app} did not apply board epoch {epoch} in time")
        time.sleep(_POLL_S)


def _breach(seen: RequestCounts, rollout: RolloutSpec) -> str | None:
    """Which limit ``seen`` is past, once it has at least ``rollout.min_requests`` requests; None if none.

    Example:
        >>> _breach(RequestCounts.timed([5.0] * 20, errors=2), RolloutSpec(max_error_rate=0.05))
        'model error rate 10.0% over 20 requests exceeds rollout.max_error_rate 5.0%'
        >>> _breach(RequestCounts.timed([400.0] * 20), RolloutSpec(max_p99_ms=100)) is not None
        True
    """
    if seen.requests < max(1, rollout.min_requests):
        return None
    if seen.error_rate > rollout.max_error_rate:
        return (
            f"model error rate {seen.error_rate:.1%} over {seen.requests} requests exceeds "
            f"rollout.max_error_rate {rollout.max_error_rate:.1%}"
        )
    p99 = seen.p99_ms
    if rollout.max_p99_ms is not None and p99 is not None and p99 > rollout.max_p99_ms:
        return f"p99 latency {p99:g} ms over {seen.requests} requests exceeds rollout.max_p99_ms {rollout.max_p99_ms:g}"
    return None


def _observe(
    client: BoardClient, version: Version, rollout: RolloutSpec, before: RequestCounts
) -> CanaryReport:
    """Watch the candidate's figures (canary and shadow requests) for ``rollout.observe`` seconds and judge."""
    observe_until = time.monotonic() + rollout.observe
    while True:
        seen = _counts(client, version) - before
        breach = _breach(seen, rollout)
        # Stop early once enough requests show a limit is passed: every extra second hurts users.
        if breach is not None or time.monotonic() >= observe_until:
            break
        time.sleep(0.1)
    if breach is None and seen.requests < rollout.min_requests:
        breach = (
            f"only {seen.requests} requests during the canary; rollout.min_requests is {rollout.min_requests}"
        )
    return CanaryReport(
        percent=rollout.canary_percent,
        shadow_percent=rollout.shadow_percent,
        observe_s=rollout.observe,
        requests=seen.requests,
        errors=seen.errors,
        error_rate=seen.error_rate,
        max_error_rate=rollout.max_error_rate,
        p99_ms=seen.p99_ms,
        max_p99_ms=rollout.max_p99_ms,
        min_requests=rollout.min_requests,
        passed=breach is None,
        reason=breach,
    )


def _watch(client: BoardClient, record: SwapRecord, rollout: RolloutSpec) -> WatchReport:
    """Watch the new version's live figures for ``rollout.watch`` seconds; stop at the first breach."""
    client.set_watch(record.generation, rollout.watch + 2 * rollout.ack_timeout)
    started = time.monotonic()
    before = _counts(client, record.version)
    breach = None
    try:
        while time.monotonic() - started < rollout.watch:
            time.sleep(0.2)
            seen = _counts(client, record.version) - before
            breach = _breach(seen, rollout)
            if breach is not None:
                break
        seen = _counts(client, record.version) - before
    finally:
        if breach is None:
            client.set_watch(record.generation, 0)
    return WatchReport(
        watch_s=round(time.monotonic() - started, 3),
        requests=seen.requests,
        errors=seen.errors,
        error_rate=seen.error_rate,
        p99_ms=seen.p99_ms,
        max_error_rate=rollout.max_error_rate,
        max_p99_ms=rollout.max_p99_ms,
        rolled_back=breach is not None,
        reason=None if breach is None else f"live watch after promotion: {breach}",
    )


def _rolled_back(
    client: BoardClient,
    record: SwapRecord,
    started: float,
    canary: CanaryReport | None,
    reason: str,
    watch: WatchReport | None = None,
) -> SwapError:
    """Flip back to the version that served before ``record``'s swap; the SwapError that says what serves now."""
    snap = client.snapshot()
    back = snap.previous if snap.previous is not None and snap.previous.version == record.previous else None
    detail = ""
    if back is not None:
        try:
            run_swap(client, back, kind="rollback", rollout=None, timeout_s=RolloutSpec().ack_timeout)
        except SwapError as exc:
            detail = f"; the rollback to version {back.version} failed too ({exc.headline})"
    else:
        detail = f"; version {record.previous} is no longer held, so nothing was rolled back"
    client.set_watch(record.generation, 0)
    serving = client.snapshot().active
    now = serving.version if serving is not None else None
    err = SwapError(
        f"Swap of app {client.app} to version {record.version} was rolled back after the flip: {reason}{detail}; "
        f"version {now} serves",
        fix="the registry keeps the champion that serves; look at the candidate's figures (ServeHub.figures) "
        "and the replica logs",
    )
    err.report = _report(  # type: ignore[attr-defined]
        record, started, canary, rolled_back=True, serving=now, reason=reason, watch=watch
    )
    return err


def _counts(client: BoardClient, version: Version) -> RequestCounts:
    return client.snapshot().counters.get(version, RequestCounts())


def _report(
    record: SwapRecord,
    started: float,
    canary: CanaryReport | None,
    rolled_back: bool,
    *,
    serving: Version | None = None,
    reason: str | None = None,
    watch: WatchReport | None = None,
) -> SwapReport:
    """The swap's report; ``serving`` (default: the swapped-in version) is what serves when the call ends."""
    loaded_at, flipped_at, acked_at = record.loaded_at, record.flipped_at, record.acked_at
    return SwapReport(
        version=record.version if serving is None else serving,
        previous=record.previous,
        load_s=round(loaded_at - record.started, 4) if loaded_at else 0.0,
        flip_s=round(acked_at - flipped_at, 4) if acked_at and flipped_at else 0.0,
        total_s=round(time.monotonic() - started, 4),
        replicas=record.replicas,
        canary=canary,
        rolled_back=rolled_back,
        candidate=record.version,
        reason=reason,
        watch=watch,
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
