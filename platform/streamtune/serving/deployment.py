"""The Serve deployment: each replica serves one model while it loads the next one beside it.

A replica registers with its app's :class:`~streamtune.serving.board.VersionBoard`, long-polls it from a
background task, loads what the board wants in a worker thread (manifest first, then the job's ``load``),
and flips a pointer when the board says so. It keeps the previous model for an instant rollback and frees
anything older. Each response names the version that answered it, in the body and in ``x-model-version``.

Each request first passes the board's :class:`AccessPolicy` (bearer token, body size, row count); a replica
that has never reached its board does not know the policy and answers 503 until it does. Errors are JSON
``{"message": ...}`` (plus ``"version"`` when a model version failed).

Example:
    >>> app = ModelServer.options(num_replicas=2).bind(  # doctest: +SKIP
    ...     "sales", "jobs.tabular_gbdt:Job", "streamtune-board-sales")
    >>> serve.run(app, name="sales", route_prefix="/sales")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from streamtune.artifacts.verified import fetch_verified_to
from streamtune.job import Predictor, load_job_class
from streamtune.serving.board import NAMESPACE
from streamtune.serving.records import (
    AccessPolicy,
    BoardView,
    LoadFailure,
    ModelRef,
    ReplicaReport,
    RequestCounts,
    Version,
)

log = logging.getLogger("ray.serve")
VERSION_HEADER = "x-model-version"


@dataclass
class _Model:
    version: Version
    uri: str
    predictor: Predictor
    folder: Path  # the private, verified copy the predictor was loaded from; removed with the model


INLINE_ROWS = 64


class _Refused(Exception):
    """A request answered with an error status before any model saw it."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"message": self.message}, status_code=self.status, headers=self.headers)


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class ModelServer:
    """One replica of a streamtune Serve app.

    The replica does not need its board to exist: without one it serves whatever model it holds (503 only
    if it holds none) under the last access policy it saw, and looks the board up again every
    ``poll_timeout_s``. One that has never seen its board answers 503: it cannot know the policy.

    Args:
        app: The Serve application name (for messages).
        entrypoint: ``module:Class`` of the Job whose ``load`` builds the predictor.
        board: Name of the app's VersionBoard actor (namespace ``streamtune``).
        poll_timeout_s: How long one long-poll waits; also the heartbeat and board look-up period.
        fingerprint: The deploy's fingerprint (settings and code), so a new board can learn it.

    Example:
        >>> ModelServer.options(num_replicas=2).bind("sales", "jobs.gbdt:Job", "streamtune-board-sales")
        ... # doctest: +SKIP
    """

    async def __init__(  # type: ignore[misc]
        self, app: str, entrypoint: str, board: str, poll_timeout_s: float = 1.0, fingerprint: str = ""
    ) -> None:
        self._app = app
        self._entrypoint = entrypoint
        self._board_name = board
        self._poll_timeout_s = poll_timeout_s
        self._fingerprint = fingerprint
        self._replica_id = serve.get_replica_context().replica_id.unique_id
        self._models: dict[Version, _Model] = {}
        self._loading: dict[Version, asyncio.Task] = {}
        self._failures: dict[Version, LoadFailure] = {}
        self._active: _Model | None = None
        self._candidate: _Model | None = None
        self._fallback: _Model | None = None
        self._canary_percent = 0.0
        self._board: Any = None
        self._board_id = ""
        self._view: BoardView | None = None
        self._policy: AccessPolicy | None = None  # None until the first view: every request gets 503
        self._applied_epoch = -1
        self._unreported = False
        self._counters: dict[Version, list[int]] = {}
        self._lock = asyncio.Lock()
        self._scratch = tempfile.mkdtemp(prefix="streamtune-replica-")  # 0700: model copies only we read
        await self._connect()
        await self._warm_start()
        self._watcher: asyncio.Task[None] = asyncio.create_task(self._watch_loop())

    async def _warm_start(self) -> None:
        """Load the active model (or, with none yet, the target) before taking traffic."""
        view = self._view
        model = (view.active or view.target) if view is not None else None
        task = self._loading.get(model.version) if model is not None else None
        if task is not None:
            await asyncio.wait([task])

    def deploy_fingerprint(self) -> str:
        """The fingerprint of the deploy that started this replica."""
        return self._fingerprint

    # ----- requests -----------------------------------------------------------------------------------

    async def __call__(self, request: Request) -> JSONResponse:
        """Answer ``POST {"rows": [{col: val}, ...]}`` with ``{"version": v, "predictions": [...]}``.

        Checked in this order, before any model runs: the policy is known (503), the bearer token (401), the
        method (405), the body size (413), the JSON (400), the row count (422), a model is loaded (503).
        """
        try:
            table = await self._admit(request)
        except _Refused as refusal:
            return refusal.response()
        model = self._pick()
        if model is None:
            return _error(
                503,
                f"app {self._app} has no model loaded yet on replica {self._replica_id}; "
                "swap a version in first (ModelService.swap)",
            )
        return await self._predict(model, table)

    async def _admit(self, request: Request) -> pa.Table:
        """The request's rows as a table, once the access policy lets it in; raises _Refused otherwise."""
        policy = self._policy
        if policy is None:
            raise _Refused(
                503,
                f"replica {self._replica_id} of app {self._app} has not reached its version board yet, so it "
                "cannot check access (and has no model loaded); retry shortly",
            )
        if not policy.allows(request.headers.get("authorization")):
            raise _Refused(401, "unauthorized", {"www-authenticate": "Bearer"})
        if request.method != "POST":
            raise _Refused(405, f'use POST with a JSON body {{"rows": [...]}}; got {request.method}')
        body = await _read_body(request, policy.max_body_bytes)
        return _parse_rows(body, policy.max_rows)

    async def _predict(self, model: _Model, table: pa.Table) -> JSONResponse:
        """Run ``model`` on ``table`` and count the request (and its failure) against its version."""
        counter = self._counters.setdefault(model.version, [0, 0])
        counter[0] += 1
        try:
            if table.num_rows <= INLINE_ROWS:  # a thread hop costs more than a small batch's predict
                raw = model.predictor.predict(table)
            else:  # big batches leave the loop free for other requests and the board watcher
                raw = await asyncio.to_thread(model.predictor.predict, table)
            predictions = _jsonable(raw)
            if len(predictions) != table.num_rows:
                raise ValueError(
                    f"predictor returned {len(predictions)} predictions for {table.num_rows} rows"
                )
        except Exception as exc:
            counter[1] += 1
            return _error(
                500, f"model version {model.version} failed: {type(exc).__name__}: {exc}", model.version
            )
        headers = {VERSION_HEADER: str(model.version)}
        return JSONResponse({"version": model.version, "predictions": predictions}, headers=headers)

    def _pick(self) -> _Model | None:
        active, candidate = self._active, self._candidate
        if candidate is not None and active is not None and random.random() * 100 < self._canary_percent:
            return candidate
        return active or self._fallback

    def check_health(self) -> None:
        """Fail the replica (Serve restarts it) if its board watcher has died; a missing board is fine."""
        if self._watcher.done():
            raise RuntimeError(f"replica {self._replica_id} stopped watching its version board")

    def __del__(self) -> None:
        # Serve calls this on the replica's loop thread at shutdown; leaving at once keeps a replica that
        # is going away from holding up the next flip for the board's stale window.
        try:
            self._watcher.cancel()
            if self._board is not None:
                self._board.leave.remote(self._replica_id)
        except Exception:  # interpreter teardown: nothing left to tell
            pass
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True)

    # ----- the board ----------------------------------------------------------------------------------

    async def _connect(self) -> bool:
        """Find the board, register and apply its view; False (and no board) while there is none."""
        try:
            board = ray.get_actor(self._board_name, namespace=NAMESPACE)
            view = await board.register.remote(self._replica_id)
            self._board = board
            await self._apply(view)
            return True
        except ValueError:  # no board (yet): the service recreates it
            self._board = None
        except Exception as exc:  # a board dying under us: try again on the next poll
            self._board = None
            log.warning("replica %s could not register with its version board: %s", self._replica_id, exc)
        return False

    async def _watch_loop(self) -> None:
        while True:
            try:
                if self._board is None and not await self._connect():
                    await asyncio.sleep(self._poll_timeout_s)
                    continue
                view = await self._board.watch.remote(
                    self._replica_id, self._epoch(), self._counter_copy(), self._poll_timeout_s
                )
                if view.epoch != self._epoch() or view.board_id != self._board_id or self._unreported:
                    await self._apply(view)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the board died: keep serving what we hold, find it again
                log.warning("replica %s lost its version board: %s", self._replica_id, exc)
                self._board = None
                await asyncio.sleep(self._poll_timeout_s)

    def _epoch(self) -> int:
        return -1 if self._view is None else self._view.epoch

    async def _apply(self, view: BoardView | None = None) -> None:
        """Bring this replica in line with ``view`` (None: the latest): policy, loads, frees, pointers.

        Views are passed only by the watch task, in the board's order, so the policy that requests see never
        goes back to an older one. The policy is taken at once, without waiting for the lock.
        """
        if view is not None:
            self._policy = view.policy  # at once: a revoked token stops working before any reload
        async with self._lock:
            view = view or self._view
            if view is None:
                return
            if view.board_id != self._board_id:  # a new board incarnation: its epochs and swaps start over
                self._board_id = view.board_id
                self._applied_epoch = -1
                self._failures.clear()
            self._view = view
            wanted = {m.version: m.uri for m in view.wanted()}
            for model in view.wanted():
                self._ensure_loading(model, view.generation)
            for version in [v for v, m in self._models.items() if wanted.get(v) != m.uri]:
                if self._models[version] is not self._active:
                    shutil.rmtree(self._models.pop(version).folder, ignore_errors=True)
            for version in [v for v in self._failures if v not in wanted]:
                del self._failures[version]
            self._point(view)
            # Reporting under the lock keeps the board from seeing an older state after a newer one.
            self._unreported = True
            if self._board is not None:
                accepted = await self._board.report.remote(self._replica_id, self._state())
                self._unreported = not accepted

    def _point(self, view: BoardView) -> None:
        active, target = view.active, view.target
        if active is not None and self._holds(active):
            self._active = self._models[active.version]
        wants_canary = target is not None and view.canary_percent > 0
        self._candidate = self._models[target.version] if target and wants_canary and self._holds(target) else None
        self._canary_percent = view.canary_percent if self._candidate is not None else 0.0
        # With nothing active on the board yet, a replica that holds the target answers with it, not 503.
        first = active is None and target is not None and self._holds(target)
        self._fallback = self._models[target.version] if first and target is not None else None
        if (active is None or self._holds(active)) and (not wants_canary or self._candidate is not None):
            self._applied_epoch = view.epoch

    def _holds(self, model: ModelRef) -> bool:
        loaded = self._models.get(model.version)
        return loaded is not None and loaded.uri == model.uri

    def _ensure_loading(self, model: ModelRef, generation: int) -> None:
        if self._holds(model) or model.version in self._loading:
            return
        failure = self._failures.get(model.version)
        if failure is not None and failure.uri == model.uri and failure.generation == generation:
            return
        self._loading[model.version] = asyncio.create_task(self._load(model, generation))

    async def _load(self, model: ModelRef, generation: int) -> None:
        started = time.monotonic()
        try:
            predictor, folder = await asyncio.to_thread(self._load_blocking, model.uri)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._failures[model.version] = LoadFailure(generation=generation, uri=model.uri, reason=reason)
            log.warning(
                "replica %s could not load version %s from %s: %s", self._replica_id, model.version, model.uri,
                reason,
            )
        else:
            self._models[model.version] = _Model(model.version, model.uri, predictor, folder)
            self._failures.pop(model.version, None)
            log.info(
                "replica %s loaded version %s in %.2fs", self._replica_id, model.version,
                time.monotonic() - started,
            )
        finally:
            self._loading.pop(model.version, None)
        try:
            await self._apply()  # the latest view, read under the lock (a newer one may have come meanwhile)
        except Exception as exc:
            log.warning("replica %s could not report to its board: %s", self._replica_id, exc)

    def _load_blocking(self, uri: str) -> tuple[Predictor, Path]:
        # A private copy, verified before any job code touches it: the job loads exactly the verified bytes.
        folder = fetch_verified_to(uri, tempfile.mkdtemp(prefix="model-", dir=self._scratch))
        return load_job_class(self._entrypoint)().load(folder), folder

    def _state(self) -> ReplicaReport:
        return ReplicaReport(
            board_id=self._board_id,
            applied_epoch=self._applied_epoch,
            active=self._active.version if self._active else None,
            loaded={v: m.uri for v, m in self._models.items()},
            loading=list(self._loading),
            failures=dict(self._failures),
            counters=self._counter_copy(),
        )

    def _counter_copy(self) -> dict[Version, RequestCounts]:
        return {v: RequestCounts(requests=c[0], errors=c[1]) for v, c in self._counters.items()}


def _error(status: int, message: str, version: Version | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    headers = {}
    if version is not None:
        body["version"] = version
        headers[VERSION_HEADER] = str(version)
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 once it is (or says it is) longer than ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything; a body without one (or
    longer than it claimed) is read until it passes the limit, never further.
    """
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"request body is {int(declared)} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"request body is at least {size} bytes; the limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_rows(body: bytes, max_rows: int) -> pa.Table:
    """Decode ``{"rows": [{...}, ...]}`` into a table, naming what is wrong with anything else.

    Example:
        >>> _parse_rows(b'{"rows": [{"x": 1.0}, {"x": 2.0}]}', max_rows=10).num_rows
        2
        >>> try:
        ...     _parse_rows(b'{"rows": [{"x": 1.0}, {"x": 2.0}]}', max_rows=1)
        ... except _Refused as refusal:
        ...     print(refusal.status, refusal.message)
        422 request has 2 rows; the limit is 1 rows per request
    """
    try:
        payload = json.loads(body or b"null")
    except ValueError as exc:
        raise _Refused(400, f'body is not valid JSON ({exc}); send {{"rows": [{{...}}, ...]}}') from None
    if not isinstance(payload, dict) or "rows" not in payload:
        raise _Refused(400, f'body must be a JSON object with a "rows" list; got {type(payload).__name__}')
    rows = payload["rows"]
    if not isinstance(rows, list) or not rows:
        raise _Refused(400, '"rows" must be a non-empty list of objects')
    if len(rows) > max_rows:
        raise _Refused(422, f"request has {len(rows)} rows; the limit is {max_rows} rows per request")
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise _Refused(400, f'"rows"[{bad}] must be an object of column -> value; got {type(rows[bad]).__name__}')
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise _Refused(400, f'"rows" do not form a table: {exc}') from None


def _jsonable(predictions: Any) -> list[Any]:
    if hasattr(predictions, "to_pylist"):
        return list(predictions.to_pylist())
    if hasattr(predictions, "tolist"):
        return list(predictions.tolist())
    return [p.item() if hasattr(p, "item") else p for p in predictions]
