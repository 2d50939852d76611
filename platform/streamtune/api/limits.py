"""A request-body limit as plain ASGI middleware: refuses a big body with 413 before the app sees it.

Example:
    >>> BodyLimit(app=None, max_bytes=1024).max_bytes
    1024
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


class BodyLimit:
    """Answer 413 with a JSON message when a request body is larger than ``max_bytes``.

    The declared ``Content-Length`` is checked first; otherwise the body is read (up to the limit) before the
    app runs and handed to it whole, so the app never holds more than ``max_bytes`` of one request.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, size)
                return
            if not message.get("more_body"):
                break
        body, handed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, size: int) -> None:
        body = json.dumps({"message": f"request body is {size} bytes or more; the limit is {self.max_bytes} bytes",
                           "error": "PayloadTooLarge"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
