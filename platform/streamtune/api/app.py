"""The FastAPI app: the control-plane interface over HTTP, under ``/v1``.

Example:
    >>> import tempfile
    >>> from streamtune.config.settings import Settings
    >>> from streamtune.control.local import LocalControlPlane
    >>> settings = Settings(home=tempfile.mkdtemp(), auth="none")
    >>> app = create_app(LocalControlPlane(settings), settings)
    >>> sorted(p for p in app.openapi()["paths"] if p.startswith("/v1/commands"))
    ['/v1/commands', '/v1/commands/{command_id}']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from streamtune.api import errors
from streamtune.api.auth import hash_token
from streamtune.api.limits import BodyLimit
from streamtune.api.metrics import install_metrics
from streamtune.api.pages import install_pages
from streamtune.api.schemas import CodeStored, CommandRequest, Health, PredictRequest, PublishRequest
from streamtune.artifacts.code import store_code
from streamtune.artifacts.store import ArtifactStore
from streamtune.config.settings import Settings
from streamtune.control.local import LocalControlPlane
from streamtune.control.records import ControlStatus, Prediction, PublishedEvent, RunLogs
from streamtune.errors import ConfigError
from streamtune.observe.bus import EventBus
from streamtune.registry.commands import CommandRecord
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
from streamtune.sweeps.progress import SweepProgress

API_VERSION = "1"
_BEARER = HTTPBearer(auto_error=False, description="An API token from `streamtune token create NAME`.")


def create_app(control: LocalControlPlane, settings: Settings, *, is_active: Callable[[], bool] = lambda: False,
               events: EventBus | None = None) -> Any:
    """Build the API over ``control``; returns an ASGI app (FastAPI inside a body-size limit).

    Args:
        control: Reads and command appends go here.
        settings: ``auth`` (token or none), ``max_body_bytes``, ``max_rows``, ``artifact_root`` (for uploaded code).
        is_active: Tells ``/healthz`` whether this process's controller holds the lease.
        events: This process's controller's event bus, whose counters ``GET /metrics`` exports (None: none).
    """
    app = FastAPI(title="streamtune", version=API_VERSION,
                  description="The streamtune control plane: reads from the registry; changes are commands that "
                              "the active controller carries out. Bearer tokens unless the platform runs in "
                              "local mode.")
    errors.install(app)
    caller = _caller(control, settings)
    v1: dict[str, Any] = {"dependencies": [Depends(caller)]}
    _reads(app, control, v1)
    _changes(app, control, settings, caller)
    install_metrics(app, control, settings, caller, events)  # GET /metrics (streamtune.observe.metrics)
    install_pages(app, control, settings)  # the status page under /ui (not in the OpenAPI document)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """Liveness; needs no token and tells nothing else."""
        return Health(status="ok", active=is_active())

    app.state.limited = BodyLimit(app, settings.max_body_bytes)
    return app


def asgi(app: Any) -> Any:
    """The ASGI callable to serve: the app behind its body-size limit."""
    return app.state.limited


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, as committed in ``docs/openapi.json`` (``make openapi`` rewrites it).

    Example:
        >>> openapi_document()["info"]["title"]
        'streamtune'
    """
    import tempfile

    from streamtune.registry import open_registry

    settings = Settings(home=tempfile.gettempdir())
    control = LocalControlPlane(settings, registry=open_registry("sqlite:///:memory:"), actor="openapi")
    document: dict[str, Any] = create_app(control, settings).openapi()
    control.close()
    return document


def _caller(control: LocalControlPlane, settings: Settings) -> Callable[..., str]:
    required = settings.auth == "token"

    def caller(credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER),
               x_streamtune_actor: Annotated[str | None, Header(max_length=200)] = None) -> str:
        """Who calls: the token's owner; in local mode (no tokens) whoever the client says it is."""
        if not required:
            return x_streamtune_actor or "local"
        token = credentials.credentials if credentials else None
        found = control.registry.find_token(hash_token(token)) if token else None
        if found is None:
            raise HTTPException(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        return found.name

    return caller


def _reads(app: FastAPI, control: LocalControlPlane, v1: dict[str, Any]) -> None:
    @app.get("/v1/status", response_model=ControlStatus, tags=["status"], **v1)
    def status() -> ControlStatus:
        """The active controller, every spec at a glance, and the command queue."""
        return control.status()

    @app.get("/v1/specs", response_model=list[SpecRecord], tags=["specs"], **v1)
    def specs() -> list[SpecRecord]:
        """Every submitted spec."""
        return control.specs()

    @app.get("/v1/runs", response_model=list[RunRecord], tags=["runs"], **v1)
    def runs(spec: str | None = None, status: Annotated[list[RunStatus] | None, Query()] = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[RunRecord]:
        """Runs, newest first."""
        return control.runs(spec, list(status) if status else None, limit)

    @app.get("/v1/runs/{run_id}", response_model=RunRecord, tags=["runs"], **v1)
    def run(run_id: str) -> RunRecord:
        """One run."""
        return control.run(run_id)

    @app.get("/v1/runs/{run_id}/logs", response_model=RunLogs, tags=["runs"], **v1)
    def run_logs(run_id: str, attempt: Annotated[int | None, Query(ge=1, le=1000)] = None) -> RunLogs:
        """The Ray Job log of one attempt of the run (default: its current one)."""
        return control.logs(run_id, attempt=attempt)

    @app.get("/v1/runs/{run_id}/progress", response_model=SweepProgress | None, tags=["runs"], **v1)
    def run_progress(run_id: str) -> SweepProgress | None:
        """The run's sweep progress while it runs (trials by state, curves, best so far); null before its first
        report."""
        return control.progress(run_id)

    @app.get("/v1/models", response_model=list[ModelVersion], tags=["models"], **v1)
    def models(name: str | None = None) -> list[ModelVersion]:
        """Registered versions, by name then version."""
        return control.models(name)

    @app.get("/v1/models/{name}/champion", response_model=ModelVersion | None, tags=["models"], **v1)
    def champion(name: str) -> ModelVersion | None:
        """The version the champion alias points at (null if none)."""
        return control.champion(name)

    @app.get("/v1/models/{name}/aliases", response_model=list[AliasEvent], tags=["models"], **v1)
    def aliases(name: str, alias: str | None = None) -> list[AliasEvent]:
        """How the model's aliases moved, oldest first, with why."""
        return control.alias_history(name, alias)

    @app.get("/v1/commands", response_model=list[CommandRecord], tags=["commands"], **v1)
    def commands(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[CommandRecord]:
        """Commands, newest first."""
        return control.commands(limit)

    @app.get("/v1/commands/{command_id}", response_model=CommandRecord, tags=["commands"], **v1)
    def command(command_id: str) -> CommandRecord:
        """One command and its outcome."""
        return control.command(command_id)


def _changes(app: FastAPI, control: LocalControlPlane, settings: Settings, caller: Callable[..., str]) -> None:
    store = ArtifactStore.from_settings(settings)

    @app.post("/v1/commands", response_model=CommandRecord, status_code=201, tags=["commands"])
    def append(body: CommandRequest, actor: str = Depends(caller)) -> CommandRecord:
        """Append a command for the active controller; poll it with GET /v1/commands/{id}."""
        return control.append(body.command, reason=body.reason, actor=actor)

    @app.post("/v1/events", response_model=list[PublishedEvent], tags=["events"], dependencies=[Depends(caller)])
    def publish(body: PublishRequest) -> list[PublishedEvent]:
        """Send data-arrival events to Kafka."""
        rows = sum(len(e.rows or []) for e in body.events)
        if len(body.events) > settings.max_rows or rows > settings.max_rows:
            raise ConfigError(f"Got {len(body.events)} events with {rows} inline rows; the limit is "
                              f"{settings.max_rows} of each per request (STREAMTUNE_MAX_ROWS)")
        return control.publish(body.events, body.topic)

    @app.post("/v1/models/{name}/predict", response_model=Prediction, tags=["models"],
              dependencies=[Depends(caller)])
    def predict(name: str, body: PredictRequest,
                authorization: Annotated[str | None, Header()] = None) -> Prediction:
        """Score rows with the model's serving version (the same as POSTing to its Serve endpoint)."""
        if len(body.rows) > settings.max_rows:
            raise ConfigError(f"Got {len(body.rows)} rows; the limit is {settings.max_rows} per request")
        return control.predict(name, body.rows, authorization=authorization)

    @app.post("/v1/code", response_model=CodeStored, status_code=201, tags=["specs"],
              dependencies=[Depends(caller)],
              openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                  "schema": {"type": "string", "format": "binary"}}}}})
    async def upload_code(request: Request) -> CodeStored:
        """Store a job package (a zip with one top-level package folder) sent with a spec; answers its URI."""
        return CodeStored(code_uri=store_code(store, await request.body()))
