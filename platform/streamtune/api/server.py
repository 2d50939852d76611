"""Run the API in a background thread of the controller process (uvicorn).

Example:
    >>> ApiServer(app=None, host="127.0.0.1", port=8470).url
    'http://127.0.0.1:8470'
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streamtune.errors import ConfigError, ServiceError

log = logging.getLogger(__name__)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ApiServer:
    """Serve an ASGI app with uvicorn on ``host:port`` in a daemon thread."""

    def __init__(self, app: Any, host: str, port: int, *, auth_required: bool = True) -> None:
        if not auth_required and host not in _LOOPBACK:
            raise ConfigError(f'Got "{host}" for STREAMTUNE_API_HOST with STREAMTUNE_AUTH=none; without tokens the '
                              "API listens on 127.0.0.1 only", fix="set STREAMTUNE_AUTH=token, or bind 127.0.0.1")
        self.app, self.host, self.port = app, host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.closers: list[Any] = []

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15) -> None:
        """Start serving and wait until the socket listens.

        Raises:
            ServiceError: the port is taken or the server did not start.
        """
        import uvicorn

        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="streamtune-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceError(f"the API could not listen on {self.host}:{self.port} (port taken?)",
                                   fix="set STREAMTUNE_API_PORT to a free port")
            time.sleep(0.05)
        log.info("API listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for close in self.closers:
            close()


def start_api(settings: Any, is_active: Any = lambda: False, *, events: Any = None) -> ApiServer:
    """Build the API over a control plane of its own (own registry object) and serve it on the settings' address.

    ``events`` is this process's controller's :class:`~streamtune.observe.bus.EventBus`: ``GET /metrics`` exports
    its counters.

    Raises:
        ConfigError: tokens are off and the address is not loopback.
        ServiceError: the port is taken.
    """
    from streamtune.api.app import asgi, create_app
    from streamtune.control.local import LocalControlPlane

    control = LocalControlPlane(settings)
    server = ApiServer(asgi(create_app(control, settings, is_active=is_active, events=events)), settings.api_host,
                       settings.api_port, auth_required=settings.auth == "token")
    server.start()
    server.closers = [control.close]
    return server
