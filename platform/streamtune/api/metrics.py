"""``GET /metrics``: the platform's Prometheus metrics (:mod:`streamtune.observe.metrics`), behind the API's tokens.

With ``STREAMTUNE_AUTH=token`` a scrape needs a bearer token like any ``/v1`` call (Prometheus:
``authorization: {credentials_file: ...}``); in local mode (``auth=none``) it needs none. The route is left out of
the OpenAPI document: it is for Prometheus, not for the SDK.

Example:
    >>> import tempfile
    >>> from streamtune.api.app import create_app
    >>> from streamtune.config.settings import Settings
    >>> from streamtune.control.local import LocalControlPlane
    >>> settings = Settings(home=tempfile.mkdtemp(), auth="none")
    >>> app = create_app(LocalControlPlane(settings), settings)
    >>> [r.path for r in app.routes if getattr(r, "path", None) == "/metrics"]
    ['/metrics']
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.settings import Settings
from streamtune.control.local import LocalControlPlane
from streamtune.observe.bus import EventBus
from streamtune.observe.metrics import StreamtuneCollector, metrics_registry

__all__ = ["install_metrics"]


def install_metrics(app: FastAPI, control: LocalControlPlane, settings: Settings, caller: Callable[..., str],
                    events: EventBus | None = None) -> None:
    """Add ``GET /metrics`` to ``app``: the registry of ``control``, the controller's ``events`` (when this process
    runs one) and the serving boards, read at each scrape; ``caller`` guards it as it guards ``/v1``."""
    collector = StreamtuneCollector(control.registry, ArtifactStore.from_settings(settings), events=events)
    registry = metrics_registry(collector)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(caller)])
    def metrics() -> Response:
        """Prometheus text format: every ``streamtune_*`` family, plus this process's CPU and memory."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
