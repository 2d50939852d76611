"""A bounded HTTP load generator: a few threads POST to a Serve app and record what answered."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import requests


class LoadGenerator:
    """Sends requests until :meth:`stop` or ``max_s`` seconds, whichever comes first.

    Example:
        >>> gen = LoadGenerator("http://127.0.0.1:8000/sales", {"rows": [{"x": 1}]})  # doctest: +SKIP
        >>> gen.start(); ...; stats = gen.stop()                                      # doctest: +SKIP
    """

    def __init__(self, url: str, payload: dict[str, Any], *, threads: int = 2, max_s: float = 600) -> None:
        self.url, self.payload, self.threads, self.max_s = url, payload, threads, max_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.ok = 0
        self.failed = 0
        self.versions: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.sequence: list[str] = []  # versions in completion order, for "after the flip only v2" checks

    def start(self) -> None:
        """Start the worker threads."""
        deadline = time.monotonic() + self.max_s
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(deadline,), name=f"loadgen-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def _work(self, deadline: float) -> None:
        session = requests.Session()
        while not self._stop.is_set() and time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                resp = session.post(self.url, json=self.payload, timeout=10)
                good = resp.status_code == 200
                version = str(resp.json().get("version")) if good else None
                err = None if good else f"HTTP {resp.status_code}"
            except (requests.RequestException, ValueError) as exc:
                good, version, err = False, None, type(exc).__name__
            self._record(good, version, err, time.perf_counter() - t0)

    def _record(self, good: bool, version: str | None, err: str | None, seconds: float) -> None:
        with self._lock:
            self.latencies.append(seconds)
            if good and version is not None:
                self.ok += 1
                self.versions[version] += 1
                self.sequence.append(version)
            else:
                self.failed += 1
                self.errors[err or "unknown"] += 1

    def stop(self) -> dict[str, Any]:
        """Stop the threads and return the stats."""
        self._stop.set()
        for t in self._workers:
            t.join(15)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counts, versions seen and latency percentiles so far."""
        with self._lock:
            lat = sorted(self.latencies)
            pct = (lambda q: round(lat[int(q * (len(lat) - 1))] * 1000, 1)) if lat else (lambda q: None)
            return {"requests": self.ok + self.failed, "ok": self.ok, "failed": self.failed,
                    "versions": dict(self.versions), "errors": dict(self.errors),
                    "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                    "last_version": self.sequence[-1] if self.sequence else None}
