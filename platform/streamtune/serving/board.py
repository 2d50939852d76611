"""The version board: one small named actor per app that tells its replicas which model to serve.

Replicas long-poll :meth:`VersionBoard.watch` (it returns as soon as the board's epoch moves, or after a
timeout as a heartbeat), load what the board wants beside the model they serve, and report back. When every
live replica holds the target, the board flips ``active`` (epoch + 1); replicas swap a pointer and ack by
reporting the epoch they applied. Nothing here redeploys or reconfigures Serve, so a flip costs one
round-trip, not a replica restart.

Example:
    >>> board = VersionBoard.options(**board_options("sales")).remote("sales")  # doctest: +SKIP
    >>> ray.get(board.set_target.remote(1, "/artifacts/sales/1"))               # doctest: +SKIP
    1
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

Version = int | str
NAMESPACE = "streamtune"
STALE_S = 5.0


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
    """What the board knows about one replica."""

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id
        self.registered = time.time()
        self.last_seen = time.monotonic()
        self.applied_epoch = -1
        self.active: Version | None = None
        self.loaded: dict[Version, str] = {}
        self.loading: list[Version] = []
        self.failures: dict[Version, dict[str, Any]] = {}
        self.counters: dict[Version, list[int]] = {}

    def live(self, now: float, stale_s: float) -> bool:
        return now - self.last_seen <= stale_s

    def holds(self, model: dict[str, Any]) -> bool:
        return self.loaded.get(model["version"]) == model["uri"]

    def as_dict(self, now: float, stale_s: float) -> dict[str, Any]:
        return {
            "live": self.live(now, stale_s),
            "seen_s_ago": round(now - self.last_seen, 3),
            "applied_epoch": self.applied_epoch,
            "active": self.active,
            "loaded": sorted(self.loaded, key=str),
            "loading": list(self.loading),
            "failures": dict(self.failures),
            "counters": {v: {"requests": c[0], "errors": c[1]} for v, c in self.counters.items()},
        }


@ray.remote(num_cpus=0)
class VersionBoard:
    """The desired, active and previous model versions of one Serve app, and what each replica holds.

    All timestamps come from this one process's monotonic clock, so ``load_s`` and ``flip_s`` compare
    replicas fairly.

    Args:
        app: The Serve application this board steers.
        stale_s: A replica whose last heartbeat is older than this no longer counts as live.

    Example:
        >>> board = VersionBoard.options(**board_options("sales")).remote("sales")  # doctest: +SKIP
        >>> ray.get(board.snapshot.remote())["active"]                              # doctest: +SKIP
    """

    def __init__(self, app: str, stale_s: float = STALE_S) -> None:
        self.app = app
        self.stale_s = stale_s
        self.epoch = 0
        self.generation = 0
        self.active: dict[str, Any] | None = None
        self.previous: dict[str, Any] | None = None
        self.target: dict[str, Any] | None = None
        self.canary_percent = 0.0
        self.replicas: dict[str, _Replica] = {}
        self.records: dict[int, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        self._left: set[str] = set()
        self._changed = asyncio.Condition()

    # ----- replica side -------------------------------------------------------------------------------

    async def register(self, replica_id: str) -> dict[str, Any]:
        """Add a replica (or refresh it) and return the current view."""
        self._touch(replica_id)
        return self.view()

    async def watch(
        self,
        replica_id: str,
        epoch: int,
        counters: dict[Version, list[int]] | None = None,
        timeout_s: float = 1.0,
    ) -> dict[str, Any]:
        """Long-poll: return the view once the epoch differs from ``epoch``, or after ``timeout_s``.

        Each call is also the replica's heartbeat and carries its request/error counters.
        """
        replica = self._touch(replica_id)
        if counters is not None:
            replica.counters = counters
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

    async def report(self, replica_id: str, state: dict[str, Any]) -> None:
        """Take a replica's state: applied epoch, active, loaded and loading versions, failures, counters."""
        replica = self._touch(replica_id)
        replica.applied_epoch = state.get("applied_epoch", replica.applied_epoch)
        replica.active = state.get("active", replica.active)
        replica.loaded = dict(state.get("loaded", replica.loaded))
        replica.loading = list(state.get("loading", replica.loading))
        replica.failures = dict(state.get("failures", replica.failures))
        replica.counters = state.get("counters", replica.counters)
        await self._progress()

    # ----- service side -------------------------------------------------------------------------------

    async def set_target(self, version: Version, uri: str, auto_flip: bool = True, kind: str = "swap") -> int:
        """Ask every replica to load ``version`` from ``uri``; return the swap's generation number.

        With ``auto_flip`` the board flips to it once every live replica has it loaded; otherwise it
        waits for :meth:`promote` (the canary path).
        """
        self._supersede("superseded by a newer swap")
        self.generation += 1
        self.target = {"version": version, "uri": uri}
        self.canary_percent = 0.0
        self.records[self.generation] = {
            "generation": self.generation,
            "kind": kind,
            "version": version,
            "uri": uri,
            "previous": self.active["version"] if self.active else None,
            "auto_flip": auto_flip,
            "started": time.monotonic(),
            "loaded_at": None,
            "flipped_at": None,
            "flip_epoch": None,
            "acked_at": None,
            "failure": None,
            "aborted": None,
            "replicas": 0,
        }
        self._forget_old_records()
        await self._bump()
        await self._progress()
        return self.generation

    async def set_canary(self, generation: int, percent: float) -> int:
        """Route ``percent`` % of requests to the loaded target of ``generation``; return the epoch."""
        self._require_pending(generation)
        self.canary_percent = float(percent)
        return await self._bump()

    async def promote(self, generation: int) -> int:
        """Flip ``active`` to the target of ``generation`` (after a canary); return the flip epoch."""
        self._require_pending(generation)
        self._flip(self.records[generation])
        return await self._bump()

    async def abort(self, generation: int, reason: str) -> int:
        """Drop the pending target of ``generation`` and stop any canary; return the epoch."""
        record = self.records.get(generation)
        if record is not None and record["flipped_at"] is None and self.generation == generation:
            record["aborted"] = reason
            self.target = None
            self.canary_percent = 0.0
        return await self._bump()

    async def record(self, generation: int) -> dict[str, Any] | None:
        """The timeline of one swap: started, loaded_at, flipped_at, acked_at, failure, aborted."""
        record = self.records.get(generation)
        return None if record is None else dict(record)

    async def set_meta(self, key: str, value: Any) -> None:
        """Keep a small value for the service (e.g. the fingerprint of the last deploy)."""
        self.meta[key] = value

    async def get_meta(self, key: str) -> Any:
        """Read a value kept by :meth:`set_meta`, or None."""
        return self.meta.get(key)

    async def snapshot(self) -> dict[str, Any]:
        """Everything the board knows, for ``status()``."""
        now = time.monotonic()
        live = self._live()
        return {
            "app": self.app,
            "epoch": self.epoch,
            "generation": self.generation,
            "active": self.active,
            "previous": self.previous,
            "target": self.target,
            "canary_percent": self.canary_percent,
            "live_replicas": sorted(r.replica_id for r in live),
            "min_applied_epoch": min((r.applied_epoch for r in live), default=-1),
            "replicas": {rid: r.as_dict(now, self.stale_s) for rid, r in self.replicas.items()},
            "counters": self._totals(live),
        }

    def view(self) -> dict[str, Any]:
        """What a replica needs: the epoch, the active, previous and target models and the canary share."""
        return {
            "epoch": self.epoch,
            "generation": self.generation,
            "active": self.active,
            "previous": self.previous,
            "target": self.target,
            "canary_percent": self.canary_percent,
        }

    # ----- internals ----------------------------------------------------------------------------------

    def _touch(self, replica_id: str) -> _Replica:
        if replica_id in self._left:  # a late call from a replica that already said goodbye
            return _Replica(replica_id)
        replica = self.replicas.get(replica_id)
        if replica is None:
            replica = self.replicas[replica_id] = _Replica(replica_id)
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

    def _forget_old_records(self) -> None:
        for generation in [g for g in self.records if g <= self.generation - 50]:
            del self.records[generation]

    def _totals(self, replicas: list[_Replica]) -> dict[Version, dict[str, int]]:
        totals: dict[Version, dict[str, int]] = {}
        for replica in replicas:
            for version, (requests, errors) in replica.counters.items():
                entry = totals.setdefault(version, {"requests": 0, "errors": 0})
                entry["requests"] += requests
                entry["errors"] += errors
        return totals

    def _require_pending(self, generation: int) -> None:
        record = self.records.get(generation)
        if record is None or self.generation != generation or self.target is None:
            raise ValueError(f"swap {generation} is no longer pending on app {self.app}")
        if record["loaded_at"] is None:
            raise ValueError(f"swap {generation} has not loaded on every replica yet")

    def _supersede(self, reason: str) -> None:
        record = self.records.get(self.generation)
        if record is not None and self.target is not None and record["flipped_at"] is None:
            record["aborted"] = record["aborted"] or reason

    def _flip(self, record: dict[str, Any]) -> None:
        assert self.target is not None
        if self.active is not None and self.active["version"] != self.target["version"]:
            self.previous = self.active
        self.active = self.target
        self.target = None
        self.canary_percent = 0.0
        record["flipped_at"] = time.monotonic()
        record["flip_epoch"] = self.epoch + 1

    def _failure(self, replica: _Replica) -> str | None:
        """The replica's reason for failing to load this generation's target, if it did."""
        assert self.target is not None
        failure = replica.failures.get(self.target["version"])
        if failure is None or failure.get("generation") != self.generation:
            return None
        return str(failure.get("reason"))

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
        if self.target is not None and record["loaded_at"] is None and record["aborted"] is None:
            failed = [r for r in live if self._failure(r) is not None]
            if failed:
                record["failure"] = {"replica": failed[0].replica_id, "reason": self._failure(failed[0])}
                record["aborted"] = "load failed"
                self.target = None
                await self._bump()
                return
            if live and all(r.holds(self.target) for r in live):
                record["loaded_at"] = now
                record["replicas"] = len(live)
                if record["auto_flip"]:
                    self._flip(record)
                    await self._bump()
                    return
        flip_epoch = record["flip_epoch"]
        if flip_epoch is not None and record["acked_at"] is None and live:
            if all(r.applied_epoch >= flip_epoch for r in live):
                record["acked_at"] = now
                record["replicas"] = len(live)
