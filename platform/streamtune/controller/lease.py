"""The controller lease: who is the one active controller, kept alive by a heartbeat thread.

The active controller renews its lease every third of ``lease_ttl`` from a thread of its own, so a long step
of the loop (a swap, a canary) does not let it lapse. If a renewal is refused (another controller took the
lease) or cannot be made before the lease runs out, the keeper flags the lease as lost; the loop then steps
down, and the registry's fence refuses any write it still attempts.

Example:
    >>> from streamtune.registry import open_registry
    >>> reg = open_registry("sqlite:///:memory:")
    >>> keeper = LeaseKeeper(reg, holder="host:1:ab", ttl_s=10)
    >>> lease = keeper.try_acquire()
    >>> lease.token, keeper.lost
    (1, False)
    >>> keeper.release()
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from streamtune.errors import FencedError, RegistryError
from streamtune.registry.base import Registry
from streamtune.registry.records import Lease

LEASE_NAME = "controller"
log = logging.getLogger(__name__)


def new_holder_id() -> str:
    """An id for this controller process: ``host:pid:nonce``.

    Example:
        >>> new_holder_id().count(":")
        2
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseKeeper:
    """Takes the controller lease and keeps it renewed from a background thread.

    Args:
        registry: Where the lease lives.
        holder: This controller's id.
        ttl_s: How long the lease lasts without renewal.
    """

    def __init__(self, registry: Registry, holder: str, ttl_s: float) -> None:
        self.registry = registry
        self.holder = holder
        self.ttl_s = ttl_s
        self.lease: Lease | None = None
        self.lost = False
        self.lost_reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> Lease | None:
        """Take the lease if it is free or lapsed; on success start renewing it. None while another holds it."""
        lease = self.registry.acquire_lease(LEASE_NAME, self.holder, self.ttl_s)
        if lease is None:
            return None
        self.lease, self.lost, self.lost_reason = lease, False, ""
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="streamtune-lease", daemon=True)
        self._thread.start()
        return lease

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            lease = self.lease
            if lease is None:
                return
            try:
                self.lease = self.registry.renew_lease(lease, self.ttl_s)
            except FencedError as exc:
                self._lose(exc.headline)
                return
            except RegistryError as exc:  # e.g. the database is locked for a moment: try again soon
                if time.time() >= lease.expires_at:
                    self._lose(f"could not renew before it lapsed: {exc.headline}")
                    return
                log.warning("lease renewal failed, retrying: %s", exc.headline)

    def _lose(self, reason: str) -> None:
        log.error("controller %s lost its lease: %s", self.holder, reason)
        self.lost, self.lost_reason = True, reason

    def release(self) -> None:
        """Stop renewing and let the lease lapse now, so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        lease, self.lease = self.lease, None
        if lease is not None and not self.lost:
            try:
                self.registry.release_lease(lease)
            except RegistryError as exc:  # the standby will still take over once the lease lapses
                log.warning("could not release the lease: %s", exc.headline)

    def stop_renewing(self) -> None:
        """Stop the heartbeat without releasing (the lease was lost, or the process is going away)."""
        self._stop.set()
        self.lease = None
