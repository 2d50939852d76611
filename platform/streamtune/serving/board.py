"""The version board: one small named actor per app that tells its replicas which model to serve.

Replicas long-poll :meth:`VersionBoard.watch` (it returns as soon as the board's epoch moves, or after a
timeout as a heartbeat), load what the board wants beside the model they serve, and report back. When every
live replica holds the target, the board flips ``active`` (epoch + 1); replicas swap a pointer and ack by
reporting the epoch they applied. Nothing here redeploys or reconfigures Serve, so a flip costs one
round-trip, not a replica restart.

Each board has a random ``board_id`` (its incarnation). A board that died and was made again has a new one:
replicas that see it start their epoch bookkeeping over, and the board ignores reports meant for an older
incarnation. Writers pass a ``fence``; the board refuses one lower than the highest it has seen.

The board also holds the app's :class:`AccessPolicy` (tokens, request limits) and hands it to replicas in
every view. A board made with a policy has it from its first view on, so a board made again never opens the
endpoint, not even for a moment.

Example:
    >>> board = VersionBoard.options(**board_options("sales")).remote("sales")   # doctest: +SKIP
    >>> ray.get(board.set_target.remote(ModelRef(version=1, uri="/a/1"), fence=3))  # doctest: +SKIP
    1
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import ray

from streamtune.serving.records import (
    AccessPolicy,
    BoardSnapshot,
    BoardView,
    ModelRef,
    ReplicaReport,
    ReplicaStatus,
    RequestCounts,
    StaleFenceError,
    SwapFailure,
    SwapKind,
    SwapRecord,
    Version,
)

NAMESPACE = "streamtune"
STALE_S = 5.0
_KEEP_RECORDS = 50


def board_name(app: str) -> str:
    """Name of the board actor of ``app``.

    Example:
        >>> board_name("sales")
        'streamtune-board-sales'
    """
    return f"streamtune-board-{app}"


def board_options(app: str) -> dict[str, Any]:
    """Actor options that create the board of ``app``, or reuse the running one.

    Example:
        >>> board_options("sales")["name"]
        'streamtune-board-sales'
    """
    return {
        "name": board_name(app),
        "namespace": NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": 0,
        "max_concurrency": 1000,
    }


class _Replica:
    """What the board knows about one replica: its last report and when it was last heard from."""

    def __init__(self, replica_id: str, board_id: str) -> None:
        self.replica_id = replica_id
        self.last_seen = time.monotonic()
        self.report = ReplicaReport(board_id=board_id, applied_epoch=-1)
        self.counters: dict[Version, RequestCounts] = {}

    def live(self, now: float, stale_s: float) -> bool:
        return now - self.last_seen <= stale_s

    def status(self, now: float, stale_s: float) -> ReplicaStatus:
        report = self.report
        return ReplicaStatus(
            live=self.live(now, stale_s),
            seen_s_ago=round(now - self.last_seen, 3),
            applied_epoch=report.applied_epoch,
            active=report.active,
            loaded=report.loaded,
            loading=report.loading,
            failures=report.failures,
            counters=self.counters,
        )


@ray.remote(num_cpus=0)
class VersionBoard:
    """The desired, active and previous model versions of one Serve app, and what each replica holds.

    All timestamps come from this one process's monotonic clock, so ``load_s`` and ``flip_s`` compare
    replicas fairly.

    Args:
        app: The Serve application this board steers.
        stale_s: A replica whose last heartbeat is older than this no longer counts as live.
        policy: The access policy replicas enforce from the board's first view (default: open).

    Example:
        >>> board = VersionBoard.options(**board_options("sales")).remote("sales")  # doctest: +SKIP
        >>> ray.get(board.snapshot.remote()).active                                 # doctest: +SKIP
    """

    def __init__(self, app: str, stale_s: float = STALE_S, policy: AccessPolicy | None = None) -> None:
        self.app = app
        self.policy = policy or AccessPolicy()
        self.stale_s = stale_s
        self.board_id = uuid.uuid4().hex[:12]
        self.fence = 0
        self.epoch = 0
        self.generation = 0
        self.active: ModelRef | None = None
        self.previous: ModelRef | None = None
        self.target: ModelRef | None = None
        self.canary_percent = 0.0
        self.shadow_percent = 0.0
        self.watching: int | None = None
        self.watch_until = 0.0
        self.replicas: dict[str, _Replica] = {}
        self.records: dict[int, SwapRecord] = {}
        self.deployed: str | None = None
        self._left: set[str] = set()
        self._changed = asyncio.Condition()

    # ----- replica side -------------------------------------------------------------------------------

    async def register(self, replica_id: str) -> BoardView:
        """Add a replica (or refresh it) and return the current view."""
        self._left.discard(replica_id)
        self._touch(replica_id)
        return self.view()

    async def watch(
        self,
        replica_id: str,
        epoch: int,
        counters: dict[Version, RequestCounts] | None = None,
        timeout_s: float = 1.0,
    ) -> BoardView:
        """Long-poll: return the view once the epoch differs from ``epoch``, or after ``timeout_s``.

        Each call is also the replica's heartbeat and carries its request/error counters; a heartbeat also
        moves a swap on when a silent replica has just gone stale.
        """
        replica = self._touch(replica_id)
        if counters is not None:
            replica.counters = counters
        await self._progress()
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.epoch != epoch), timeout_s)
            except TimeoutError:
                pass
        self._touch(replica_id)
        return self.view()

    async def leave(self, replica_id: str) -> None:
        """Forget a replica that is shutting down, so it does not hold up the next flip."""
        self._left.add(replica_id)
        self.replicas.pop(replica_id, None)
        await self._progress()

    async def report(self, replica_id: str, report: ReplicaReport) -> bool:
        """Take a replica's state. Returns False (and ignores it) when it was meant for another incarnation."""
        if report.board_id != self.board_id:
            return False
        replica = self._touch(replica_id)
        replica.report = report
        replica.counters = dict(report.counters)
        await self._progress()
        return True

    # ----- writers (fenced) ---------------------------------------------------------------------------

    async def set_target(
        self, model: ModelRef, auto_flip: bool = True, kind: SwapKind = "swap", *, fence: int = 0
    ) -> int:
        """Ask every replica to load ``model``; return the swap's generation number.

        With ``auto_flip`` the board flips to it once every live replica has it loaded; otherwise it
        waits for :meth:`promote` (the canary path).
        """
        self._check_fence(fence)
        self._supersede("superseded by a newer swap")
        self.generation += 1
        self.target = model
        self.canary_percent = 0.0
        self.shadow_percent = 0.0
        self.watching = None
        self.records[self.generation] = SwapRecord(
            generation=self.generation,
            kind=kind,
            version=model.version,
            uri=model.uri,
            previous=self.active.version if self.active else None,
            auto_flip=auto_flip,
            started=time.monotonic(),
        )
        for generation in [g for g in self.records if g <= self.generation - _KEEP_RECORDS]:
            del self.records[generation]
        await self._bump()
        await self._progress()
        return self.generation

    async def set_canary(
        self, generation: int, percent: float, shadow_percent: float = 0.0, *, fence: int = 0
    ) -> int:
        """Route ``percent`` % of requests to the loaded target of ``generation``, and mirror ``shadow_percent`` %
        to it (answers not returned); return the epoch."""
        self._check_fence(fence)
        self._require_pending(generation)
        self.canary_percent = float(percent)
        self.shadow_percent = float(shadow_percent)
        return await self._bump()

    async def set_watch(self, generation: int, seconds: float, *, fence: int = 0) -> None:
        """Mark the flipped swap ``generation`` as under its post-promotion watch for ``seconds`` (0: ended).

        While it runs, a reconciling writer treats the app as busy (the swap has not returned yet); it lapses on
        its own if the writer dies.
        """
        self._check_fence(fence)
        if seconds > 0 and generation == self.generation:
            self.watching, self.watch_until = generation, time.monotonic() + seconds
        elif self.watching == generation:
            self.watching, self.watch_until = None, 0.0

    async def promote(self, generation: int, *, fence: int = 0) -> int:
        """Flip ``active`` to the target of ``generation`` (after a canary); return the flip epoch."""
        self._check_fence(fence)
        self._require_pending(generation)
        self._flip(self.records[generation])
        return await self._bump()

    async def abort(self, generation: int, reason: str, *, fence: int = 0) -> int:
        """Drop the pending target of ``generation`` and stop any canary; return the epoch."""
        self._check_fence(fence)
        record = self.records.get(generation)
        if record is not None and record.flipped_at is None and self.generation == generation:
            record.aborted = reason
            self.target = None
            self.canary_percent = 0.0
            self.shadow_percent = 0.0
        return await self._bump()

    async def set_policy(self, policy: AccessPolicy, *, fence: int = 0) -> int:
        """Make every replica enforce ``policy`` (tokens, request limits); return the epoch that carries it.

        A policy equal to the current one changes nothing (no new epoch).
        """
        self._check_fence(fence)
        if policy == self.policy:
            return self.epoch
        self.policy = policy
        return await self._bump()

    async def claim(self, fence: int) -> int:
        """Check ``fence`` and remember it, before a writer changes the Serve app; return the board's fence."""
        self._check_fence(fence)
        return self.fence

    # ----- readers ------------------------------------------------------------------------------------

    async def record(self, generation: int) -> SwapRecord | None:
        """The timeline of one swap: started, loaded_at, flipped_at, acked_at, failure, aborted."""
        record = self.records.get(generation)
        return None if record is None else record.model_copy()

    async def set_deployed(self, fingerprint: str) -> None:
        """Keep the fingerprint of the Serve app's last deploy (settings and code)."""
        self.deployed = fingerprint

    async def get_deployed(self) -> str | None:
        """The fingerprint kept by :meth:`set_deployed`, or None (e.g. on a board made again)."""
        return self.deployed

    async def snapshot(self) -> BoardSnapshot:
        """Everything the board knows, for ``status()`` and for waiting on swaps."""
        now = time.monotonic()
        live = self._live()
        watching = self.watching if self.watching is not None and now < self.watch_until else None
        return BoardSnapshot(
            **dict(self.view()),
            app=self.app,
            live_replicas=sorted(r.replica_id for r in live),
            min_applied_epoch=min((r.report.applied_epoch for r in live), default=-1),
            replicas={rid: r.status(now, self.stale_s) for rid, r in self.replicas.items()},
            counters=_totals(live),
            last_swap=last.model_copy() if (last := self.records.get(self.generation)) else None,
            fence=self.fence,
            watching=watching,
            watch_s_left=round(max(0.0, self.watch_until - now), 3) if watching is not None else 0.0,
        )

    def view(self) -> BoardView:
        """What a replica needs: incarnation, epoch, active, previous and target models, canary share, policy."""
        return BoardView(
            board_id=self.board_id,
            epoch=self.epoch,
            generation=self.generation,
            active=self.active,
            previous=self.previous,
            target=self.target,
            canary_percent=self.canary_percent,
            shadow_percent=self.shadow_percent,
            policy=self.policy,
        )

    # ----- internals ----------------------------------------------------------------------------------

    def _check_fence(self, fence: int) -> None:
        if fence < self.fence:
            raise StaleFenceError(self.app, fence, self.fence)
        self.fence = fence

    def _touch(self, replica_id: str) -> _Replica:
        if replica_id in self._left:  # a late call from a replica that already said goodbye
            return _Replica(replica_id, self.board_id)
        replica = self.replicas.get(replica_id)
        if replica is None:
            replica = self.replicas[replica_id] = _Replica(replica_id, self.board_id)
        replica.last_seen = time.monotonic()
        self._forget_dead()
        return replica

    def _live(self) -> list[_Replica]:
        now = time.monotonic()
        return [r for r in self.replicas.values() if r.live(now, self.stale_s)]

    def _forget_dead(self) -> None:
        now = time.monotonic()
        for rid in [rid for rid, r in self.replicas.items() if now - r.last_seen > 12 * self.stale_s]:
            del self.replicas[rid]

    def _require_pending(self, generation: int) -> None:
        record = self.records.get(generation)
        if record is None or self.generation != generation or self.target is None:
            raise ValueError(f"swap {generation} is no longer pending on app {self.app}")
        if record.loaded_at is None:
            raise ValueError(f"swap {generation} has not loaded on every replica yet")

    def _supersede(self, reason: str) -> None:
        record = self.records.get(self.generation)
        if record is not None and self.target is not None and record.flipped_at is None:
            record.aborted = record.aborted or reason

    def _flip(self, record: SwapRecord) -> None:
        assert self.target is not None
        if self.active is not None and self.active.version != self.target.version:
            self.previous = self.active
        self.active = self.target
        self.target = None
        self.canary_percent = 0.0
        self.shadow_percent = 0.0
        record.flipped_at = time.monotonic()
        record.flip_epoch = self.epoch + 1

    def _failure(self, replica: _Replica) -> str | None:
        """The replica's reason for failing to load this generation's target, if it did."""
        assert self.target is not None
        failure = replica.report.failures.get(self.target.version)
        if failure is None or failure.generation != self.generation:
            return None
        return failure.reason

    async def _bump(self) -> int:
        async with self._changed:
            self.epoch += 1
            self._changed.notify_all()
        return self.epoch

    async def _progress(self) -> None:
        """Advance the current swap: note failures and all-loaded, flip, and note all-acked."""
        record = self.records.get(self.generation)
        if record is None:
            return
        live = self._live()
        now = time.monotonic()
        target = self.target
        if target is not None and record.loaded_at is None and record.aborted is None:
            failed = [(r, reason) for r in live if (reason := self._failure(r)) is not None]
            if failed:
                record.failure = SwapFailure(replica=failed[0][0].replica_id, reason=failed[0][1])
                record.aborted = "load failed"
                self.target = None
                await self._bump()
                return
            if live and all(r.report.holds(target) for r in live):
                record.loaded_at = now
                record.replicas = len(live)
                if record.auto_flip:
                    self._flip(record)
                    await self._bump()
                    return
        if record.flip_epoch is not None and record.acked_at is None and live:
            if all(r.report.applied_epoch >= record.flip_epoch for r in live):
                record.acked_at = now
                record.replicas = len(live)


def _totals(replicas: list[_Replica]) -> dict[Version, RequestCounts]:
    totals: dict[Version, RequestCounts] = {}
    for replica in replicas:
        for version, counts in replica.counters.items():
            totals[version] = totals.get(version, RequestCounts()) + counts
    return totals
