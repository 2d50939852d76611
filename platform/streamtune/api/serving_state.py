"""What the status page shows of serving: each app's versions, traffic split and live figures.

Serving state lives on the apps' version boards (Ray actors), not in the registry, so the page reads it through a
:data:`ServingReader` seam: the default, :func:`board_reader`, asks each app's board for its snapshot (the same
``ModelService.status()`` the controller uses, read-only: it never deploys, swaps or joins Ray) and gives up after
a few seconds, so a hung board never hangs the page. A process that has not joined Ray (a standby controller, a
unit test) gets ``serve_status="NOT_DEPLOYED"`` and no board: the page then says so instead of inventing figures.

Example:
    >>> from streamtune.serving.records import BoardSnapshot, ModelRef, RequestCounts
    >>> board = BoardSnapshot(app="sales", board_id="b", epoch=3, generation=2, live_replicas=["r1"],
    ...                       active=ModelRef(version=2, uri="/a/2"), previous=ModelRef(version=1, uri="/a/1"),
    ...                       counters={2: RequestCounts.timed([4.0] * 95 + [40.0] * 5, errors=1)})
    >>> state = ServiceStatus(app="sales", url="http://127.0.0.1:8000/sales", serve_status="RUNNING", board=board)
    >>> view = serving_app("sales", 2, state)
    >>> [(v.version, v.role, v.traffic_percent, v.error_rate, v.p99_ms) for v in view.versions]
    [(2, 'active', 100.0, 0.01, 50.0), (1, 'previous', 0.0, None, None)]
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from streamtune.config.settings import Settings
from streamtune.registry.records import SpecRecord
from streamtune.serving.records import BoardSnapshot, ModelRef, ServiceStatus, Version

ServingReader = Callable[[SpecRecord], ServiceStatus]
"""Reads one spec's serving state (its app's Serve status and board snapshot)."""

READ_TIMEOUT_S = 3.0
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="streamtune-pages-serving")


class VersionRow(BaseModel):
    """One version an app holds, with its share of traffic and live figures."""

    model_config = ConfigDict(extra="forbid")

    version: Version = Field(description="The model version.")
    role: str = Field(description="active, target (being loaded or on canary), or previous (kept for rollback).")
    traffic_percent: float = Field(description="Share of requests it answers (0-100).")
    shadow_percent: float = Field(0.0, description="Share of requests mirrored to it (answers not returned).")
    requests: int = Field(0, description="Requests its model ran on, over the live replicas.")
    model_errors: int = Field(0, description="Of those, model errors.")
    error_rate: float | None = Field(None, description="model_errors / requests; None without requests.")
    p99_ms: float | None = Field(None, description="p99 predict latency (bucket bound, ms); None without requests.")


class ServingApp(BaseModel):
    """One spec's Serve app as the page shows it."""

    model_config = ConfigDict(extra="forbid")

    app: str = Field(description="The Serve application.")
    spec: str = Field("", description="The spec (model) it serves.")
    champion: int | None = Field(None, description="The registry's champion: what the app should serve.")
    serve_status: str = Field(description="Serve's application status, NOT_DEPLOYED, or UNKNOWN (unreadable).")
    url: str = Field("", description="Its HTTP endpoint.")
    live_replicas: int = Field(0, description="Replicas heard from recently.")
    active: Version | None = Field(None, description="The version every replica serves.")
    versions: list[VersionRow] = Field(default_factory=list, description="Active, target and previous versions.")
    watching: bool = Field(False, description="A post-promotion watch is running.")
    note: str | None = Field(None, description="Why figures are missing, if they are.")

    @property
    def in_step(self) -> bool:
        """Whether the app serves the registry's champion (or there is no champion yet)."""
        return self.champion is None or str(self.active) == str(self.champion)


def board_reader(settings: Settings) -> ServingReader:
    """The default reader: each app's board over Ray, read-only, if this process has joined Ray."""

    def read(record: SpecRecord) -> ServiceStatus:
        from streamtune.serving.service import ModelService  # imports Ray: only when a page asks

        spec = record.spec
        service = ModelService(spec.serve.app, spec.serve, spec.job.entrypoint, spec.job.code_uri or "",
                               settings.serve_port)
        return service.status()

    return read


def read_serving(reader: ServingReader, specs: list[tuple[SpecRecord, int | None]]) -> list[ServingApp]:
    """Each spec's app via ``reader``, all read at once within :data:`READ_TIMEOUT_S` in total.

    A board that does not answer in time, or a reader that raises, becomes a note on its app, never an error.
    ``specs`` pairs each spec with its champion version (None: none yet).
    """
    futures = [(record, champion, _POOL.submit(reader, record)) for record, champion in specs]
    done, _ = concurrent.futures.wait([f for _, _, f in futures], timeout=READ_TIMEOUT_S)
    apps: list[ServingApp] = []
    for record, champion, future in futures:
        unknown = ServingApp(app=record.spec.serve.app, spec=record.name, champion=champion, serve_status="UNKNOWN")
        if future not in done:
            apps.append(unknown.model_copy(update={
                "note": f"the version board did not answer within {READ_TIMEOUT_S:g} s"}))
        elif (exc := future.exception()) is not None:
            apps.append(unknown.model_copy(update={"note": f"could not read serving: {type(exc).__name__}: {exc}"}))
        else:
            apps.append(serving_app(record.name, champion, future.result()))
    return apps


def serving_app(spec: str, champion: int | None, state: ServiceStatus) -> ServingApp:
    """The page's view of one app's :class:`ServiceStatus`."""
    board = state.board
    base = ServingApp(app=state.app, spec=spec, champion=champion, serve_status=state.serve_status, url=state.url)
    if board is None:
        note = "no version board (the app is not deployed, or this API process has not joined Ray)"
        return base.model_copy(update={"note": note})
    return base.model_copy(update={
        "live_replicas": len(board.live_replicas), "active": board.active.version if board.active else None,
        "versions": _versions(board), "watching": board.watching is not None,
    })


def _versions(board: BoardSnapshot) -> list[VersionRow]:
    canary, shadow = board.canary_percent, board.shadow_percent
    roles: list[tuple[ModelRef | None, str, float, float]] = [
        (board.active, "active", 100.0 - canary if board.target else 100.0, 0.0),
        (board.target, "target", canary, shadow),
        (board.previous, "previous", 0.0, 0.0),
    ]
    rows: list[VersionRow] = []
    seen: set[str] = set()
    for ref, role, traffic, mirrored in roles:
        if ref is None or str(ref.version) in seen:
            continue
        seen.add(str(ref.version))
        counts = board.counters.get(ref.version)
        figures = counts.figures(ref.version) if counts is not None and counts.requests else None
        rows.append(VersionRow(
            version=ref.version, role=role, traffic_percent=round(traffic, 2), shadow_percent=mirrored,
            requests=figures.requests if figures else 0, model_errors=figures.model_errors if figures else 0,
            error_rate=figures.error_rate if figures else None, p99_ms=figures.p99_ms if figures else None,
        ))
    return rows
