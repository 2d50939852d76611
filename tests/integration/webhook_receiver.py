"""A real HTTP receiver for webhook tests (``http.server`` in a thread), one behaviour per path.

- ``/ok``: 200, and keeps each request (path, headers, body);
- ``/flaky``: 500 for the first two attempts of each delivery (``X-Streamtune-Delivery``), then 200;
- ``/fail``: always 500;
- ``/hang``: answers nothing until the receiver is closed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Listens on 127.0.0.1 (a free port) until :meth:`close`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts: Counter[tuple[str, str]] = Counter()  # (path, delivery id) -> requests
        self.released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver._lock:
                    receiver.attempts[(self.path, item.headers.get("x-streamtune-delivery", ""))] += 1
                    attempt = receiver.attempts[(self.path, item.headers.get("x-streamtune-delivery", ""))]
                    receiver.received.append(item)
                if self.path == "/hang":
                    receiver.released.wait(60)
                    return
                status = 500 if self.path == "/fail" or (self.path == "/flaky" and attempt <= 2) else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        """Requests received on ``path`` so far."""
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 20.0) -> list[Received]:
        """Block until ``path`` got ``count`` requests; returns them (fails the test on timeout)."""
        deadline = time.monotonic() + timeout_s
        while len(self.on(path)) < count:
            assert time.monotonic() < deadline, f"{path}: {len(self.on(path))} of {count} requests in {timeout_s}s"
            time.sleep(0.02)
        return self.on(path)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
