"""The Serve deployment: each replica serves one model while it loads the next one beside it.

A replica registers with its app's :class:`~streamtune.serving.board.VersionBoard`, long-polls it from a
background task, loads what the board wants in a worker thread (manifest first, then the job's ``load``),
and flips a pointer when the board says so. It keeps the previous model for an instant rollback and frees
anything older. Each response names the version that answered it, in the body and in ``x-model-version``.

Each request first passes the board's :class:`AccessPolicy` (bearer token, body size, row count); a replica
that has never reached its board does not know the policy and answers 503 until it does. Then the rows must
carry the model's feature columns (the app's :class:`InputSchema`, or the predictor's ``features``): a missing
or mistyped one is a 422 naming it. JSON parsing of big bodies and every predict run in worker threads, off the
replica's event loop. Errors are JSON ``{"message": ...}`` (plus ``"version"`` when a model version failed):
a predict that raises is a 500, NaN or inf out of a model a 502; both count as that version's model errors,
while client mistakes (4xx) never do.

Each replica keeps live figures per version (requests, model errors, client errors, a latency histogram) and
sends them to its board with every heartbeat. While the board asks for a shadow share, that share of requests
is also run on the loaded candidate in the background: its answer and latency go into its figures (and the
log), and the client gets the active version's answer only. A version the replica fails to load is tried again
with backoff (1 s doubling to 60 s) while the board still wants it; each failure is in the replica's report.

Example:
    >>> app = ModelServer.options(num_replicas=2).bind(  # doctest: +SKIP
    ...     "sales", "jobs.tabular_gbdt:Job", "streamtune-board-sales")
    >>> serve.run(app, name="sales", route_prefix="/sales")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
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

from streamtune.job import Predictor, load_for_serving
from streamtune.serving.board import NAMESPACE
from streamtune.serving.records import (
    LATENCY_BUCKETS_MS,
    AccessPolicy,
    BoardView,
    InputSchema,
    LoadFailure,
    ModelRef,
    ReplicaReport,
    RequestCounts,
    Version,
    latency_bucket,
    prediction_histogram,
)

log = logging.getLogger("ray.serve")
VERSION_HEADER = "x-model-version"
PARSE_INLINE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; bigger ones in a worker thread."""
MAX_SHADOW_IN_FLIGHT = 8
"""Most mirrored (shadow) predicts one replica runs at once; past it a request is not mirrored."""
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0
"""Backoff between load attempts of a version the board still wants: 1 s doubling up to 60 s."""


@dataclass
class _Model:
    version: Version
    uri: str
    predictor: Predictor
    folder: Path  # the private, verified copy the predictor was loaded from; removed with the model


class _Figures:
    """One version's live figures on this replica: counts, a latency histogram (LATENCY_BUCKETS_MS) and a
    prediction histogram (PREDICTION_EDGES bins, for drift)."""

    __slots__ = ("buckets", "client_errors", "errors", "predictions", "requests")

    def __init__(self) -> None:
        self.requests = self.errors = self.client_errors = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.predictions: dict[int, int] = {}

    def binned(self, predictions: list[Any] | None) -> None:
        for index, count in prediction_histogram(predictions or []).items():
            self.predictions[index] = self.predictions.get(index, 0) + count

    def ran(self, seconds: float, failed: bool) -> None:
        self.requests += 1
        self.errors += failed
        self.buckets[latency_bucket(seconds * 1000)] += 1

    def counts(self) -> RequestCounts:
        return RequestCounts(
            requests=self.requests, errors=self.errors, client_errors=self.client_errors,
            latency_ms=tuple(self.buckets) if self.requests else (), predictions=dict(self.predictions),
        )


class _ModelFailed(Exception):
    """The model itself failed on a request: counted as a model error of its version."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


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
        input_schema: The feature columns requests must carry (and their types); None: only the predictor's
            ``features`` attribute, if it has one, is checked.

    Example:
        >>> ModelServer.options(num_replicas=2).bind("sales", "jobs.gbdt:Job", "streamtune-board-sales")
        ... # doctest: +SKIP
    """

    async def __init__(  # type: ignore[misc]
        self,
        app: str,
        entrypoint: str,
        board: str,
        poll_timeout_s: float = 1.0,
        fingerprint: str = "",
        input_schema: InputSchema | None = None,
    ) -> None:
        self._app = app
        self._input_schema = input_schema
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
        self._shadow: _Model | None = None
        self._shadow_percent = 0.0
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._shadow_logged = 0.0
        self._retry_at: dict[Version, float] = {}
        self._board: Any = None
        self._board_id = ""
        self._view: BoardView | None = None
        self._policy: AccessPolicy | None = None  # None until the first view: every request gets 503
        self._applied_epoch = -1
        self._unreported = False
        self._counters: dict[Version, _Figures] = {}
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
        method (405), the body size (413), the JSON (400), the row count (422), a model is loaded (503), the
        feature columns are there and of the right type (422). Nothing raised here becomes a bare 500.
        """
        try:
            table = await self._admit(request)
            model = self._pick()
            if model is None:
                return _error(
                    503,
                    f"app {self._app} has no model loaded yet on replica {self._replica_id}; "
                    "swap a version in first (ModelService.swap)",
                )
            try:
                table = _check_features(table, self._input_schema, model.predictor)
            except _Refused:
                self._figures(model.version).client_errors += 1
                raise
            response, predictions = await self._predict(model, table)
            shadow = self._shadow
            if (
                shadow is not None and shadow is not model and len(self._shadow_tasks) < MAX_SHADOW_IN_FLIGHT
                and random.random() * 100 < self._shadow_percent
            ):
                task = asyncio.create_task(self._mirror(shadow, table, model.version, predictions))
                self._shadow_tasks.add(task)
                task.add_done_callback(self._shadow_tasks.discard)
            return response
        except _Refused as refusal:
            return refusal.response()
        except Exception as exc:  # a bug of ours: still a JSON answer that says what happened, never a traceback
            log.exception("replica %s failed on a request", self._replica_id)
            return _error(500, f"replica {self._replica_id} of app {self._app} failed: {type(exc).__name__}: {exc}")

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
        if len(body) <= PARSE_INLINE_BYTES:
            return _parse_rows(body, policy.max_rows)
        return await asyncio.to_thread(_parse_rows, body, policy.max_rows)  # big bodies: off the event loop

    def _figures(self, version: Version) -> _Figures:
        figures = self._counters.get(version)
        if figures is None:
            figures = self._counters[version] = _Figures()
        return figures

    async def _predict(self, model: _Model, table: pa.Table) -> tuple[JSONResponse, list[Any] | None]:
        """Run ``model`` on ``table`` in a worker thread; count the request, its latency and model errors.

        Returns the response and the predictions (None when the model failed).
        """
        started = time.perf_counter()
        try:
            predictions = await asyncio.to_thread(_run_model, model.predictor, table)
        except _Refused:  # a column the model looked for and the request lacks: the client's mistake
            self._figures(model.version).client_errors += 1
            raise
        except _ModelFailed as failed:
            self._figures(model.version).ran(time.perf_counter() - started, True)
            return _error(failed.status, f"model version {model.version} {failed.message}", model.version), None
        self._figures(model.version).ran(time.perf_counter() - started, False)
        self._figures(model.version).binned(predictions)
        headers = {VERSION_HEADER: str(model.version)}
        body = {"version": model.version, "predictions": predictions}
        return JSONResponse(body, headers=headers), predictions

    async def _mirror(self, shadow: _Model, table: pa.Table, answered_by: Version, answer: list[Any] | None) -> None:
        """Run the shadow candidate on a request already answered; only its figures and the log see the result."""
        started = time.perf_counter()
        predictions: list[Any] | None = None
        failure: str | None = None
        try:
            predictions = await asyncio.to_thread(_run_model, shadow.predictor, table)
        except _Refused as refusal:
            self._figures(shadow.version).client_errors += 1
            failure = refusal.message
        except _ModelFailed as failed:
            self._figures(shadow.version).ran(time.perf_counter() - started, True)
            failure = failed.message
        else:
            self._figures(shadow.version).ran(time.perf_counter() - started, False)
            self._figures(shadow.version).binned(predictions)
        now = time.monotonic()
        if failure is not None or now - self._shadow_logged >= 1.0:  # answers sampled once a second
            self._shadow_logged = now
            log.info(
                "shadow: version %s answered in %.1f ms: %s (served by version %s: %s)", shadow.version,
                (time.perf_counter() - started) * 1000, failure or _shown(predictions), answered_by, _shown(answer),
            )

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
                if (
                    view.epoch != self._epoch() or view.board_id != self._board_id or self._unreported
                    or self._retry_due()
                ):
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
                self._retry_at.pop(version, None)
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
        wants_shadow = target is not None and view.shadow_percent > 0
        self._shadow = self._models[target.version] if target and wants_shadow and self._holds(target) else None
        self._shadow_percent = view.shadow_percent if self._shadow is not None else 0.0
        # With nothing active on the board yet, a replica that holds the target answers with it, not 503.
        first = active is None and target is not None and self._holds(target)
        self._fallback = self._models[target.version] if first and target is not None else None
        if (
            (active is None or self._holds(active))
            and (not wants_canary or self._candidate is not None)
            and (not wants_shadow or self._shadow is not None)
        ):
            self._applied_epoch = view.epoch

    def _holds(self, model: ModelRef) -> bool:
        loaded = self._models.get(model.version)
        return loaded is not None and loaded.uri == model.uri

    def _ensure_loading(self, model: ModelRef, generation: int) -> None:
        """Start loading ``model`` unless held or loading; a failed one again once its backoff has passed."""
        if self._holds(model) or model.version in self._loading:
            return
        failure = self._failures.get(model.version)
        if failure is not None and failure.uri == model.uri:
            if failure.generation == generation and self._view is not None and self._view.target == model:
                return  # this swap's candidate failed here: the board aborts the swap, no retry needed
            if time.monotonic() < self._retry_at.get(model.version, 0.0):
                return  # backing off; the watch loop tries again when it is due
        self._loading[model.version] = asyncio.create_task(self._load(model, generation))

    def _retry_due(self) -> bool:
        """Whether a wanted version that failed to load is due for another attempt."""
        view, now = self._view, time.monotonic()
        if view is None or not self._failures:
            return False
        wanted = {m.version for m in view.wanted()}
        return any(v in wanted and now >= self._retry_at.get(v, 0.0) for v in self._failures)

    async def _load(self, model: ModelRef, generation: int) -> None:
        started = time.monotonic()
        try:
            predictor, folder = await asyncio.to_thread(self._load_blocking, model)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            earlier = self._failures.get(model.version)
            attempts = earlier.attempts + 1 if earlier is not None and earlier.uri == model.uri else 1
            backoff = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (attempts - 1))
            self._retry_at[model.version] = time.monotonic() + backoff
            self._failures[model.version] = LoadFailure(
                generation=generation, uri=model.uri, reason=reason, attempts=attempts, retry_in_s=backoff
            )
            log.warning(
                "replica %s could not load version %s from %s (attempt %d): %s; trying again in %.0f s if still "
                "wanted", self._replica_id, model.version, model.uri, attempts, reason, backoff,
            )
        else:
            self._models[model.version] = _Model(model.version, model.uri, predictor, folder)
            self._failures.pop(model.version, None)
            self._retry_at.pop(model.version, None)
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

    def _load_blocking(self, model: ModelRef) -> tuple[Predictor, Path]:
        # A private copy, verified before any job code touches it: the job loads exactly the verified bytes.
        # With the registry's digest the manifest itself is checked first (a regenerated manifest is refused).
        # The gate's smoke test loads through the same function, so it tests what serving will run.
        return load_for_serving(self._entrypoint, model.uri, self._scratch, manifest_sha256=model.manifest_sha256,
                                what=f"app {self._app} version {model.version}")

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
        return {v: figures.counts() for v, figures in self._counters.items()}


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
        raise _Refused(422, _column_error(rows) or f'"rows" do not form a table: {exc}') from None


def _jsonable(predictions: Any) -> list[Any]:
    if hasattr(predictions, "to_pylist"):
        return list(predictions.to_pylist())
    if hasattr(predictions, "tolist"):
        return list(predictions.tolist())
    return [p.item() if hasattr(p, "item") else p for p in predictions]


def _run_model(predictor: Predictor, table: pa.Table) -> list[Any]:
    """``predictor.predict(table)`` as JSON-ready values (runs in a worker thread).

    Raises:
        _Refused: 422, the model looked up a column the request lacks (KeyError naming it).
        _ModelFailed: 500 when predict raised or returned the wrong number of predictions, 502 for NaN/inf.
    """
    try:
        predictions = _jsonable(predictor.predict(table))
    except KeyError as exc:
        missing = _missing_column(exc, table.column_names)
        if missing is not None:
            raise _Refused(
                422, f'request rows lack the feature column "{missing}" that the model reads; add it to every row'
            ) from None
        raise _ModelFailed(500, f"failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise _ModelFailed(500, f"failed: {type(exc).__name__}: {exc}") from None
    if len(predictions) != table.num_rows:
        raise _ModelFailed(500, f"failed: predictor returned {len(predictions)} predictions for {table.num_rows} rows")
    bad = _non_finite(predictions)
    if bad is not None:
        raise _ModelFailed(502, f"returned a non-finite prediction ({predictions[bad]!r}) for rows[{bad}]")
    return predictions


def _non_finite(predictions: list[Any]) -> int | None:
    """Index of the first prediction holding NaN or an infinity (nested lists included), or None.

    Example:
        >>> _non_finite([1.0, [2.0, float("nan")]]), _non_finite([1, "a", None])
        (1, None)
    """

    def bad(value: Any) -> bool:
        if isinstance(value, float):
            return not math.isfinite(value)
        if isinstance(value, list | tuple):
            return any(bad(v) for v in value)
        if isinstance(value, dict):
            return any(bad(v) for v in value.values())
        return False

    return next((i for i, p in enumerate(predictions) if bad(p)), None)


_QUOTED = re.compile(r"""["']([^"']+)["']""")


def _missing_column(exc: KeyError, columns: list[str]) -> str | None:
    """The column a KeyError names (pyarrow, pandas or a dict) that the request does not have, if any.

    Example:
        >>> _missing_column(KeyError('Field "price" does not exist in schema'), ["x"])
        'price'
        >>> _missing_column(KeyError("x"), ["x"]) is None
        True
    """
    text = str(exc.args[0]) if exc.args else ""
    names = _QUOTED.findall(text) or [text]
    return next((n for n in names if n and n not in columns), None)


def _check_features(table: pa.Table, schema: InputSchema | None, predictor: Any) -> pa.Table:
    """``table`` with the model's feature columns present and cast to their types; 422 naming the first wrong one.

    Example:
        >>> t = pa.table({"x": [1, 2]})
        >>> _check_features(t, InputSchema(columns={"x": "double"}), None).schema.field("x").type
        DataType(double)
        >>> try:
        ...     _check_features(t, InputSchema(columns={"x": "double", "y": None}), None)
        ... except _Refused as refusal:
        ...     print(refusal.status, refusal.message)
        422 request rows lack the feature column "y"; the model needs x, y
    """
    if schema is not None:
        columns = schema.columns
    else:
        declared = getattr(predictor, "features", None)
        if not isinstance(declared, list | tuple) or not all(isinstance(c, str) for c in declared):
            return table
        columns = dict.fromkeys(declared)
    names = table.column_names
    missing = [c for c in columns if c not in names]
    if missing:
        needs = ", ".join(columns)
        raise _Refused(422, f'request rows lack the feature column "{missing[0]}"; the model needs {needs}')
    for name, type_name in columns.items():
        if type_name is None:
            continue
        try:
            want = pa.type_for_alias(type_name)
        except (ValueError, KeyError):
            continue  # a type name pyarrow has no alias for: not checked here
        index = names.index(name)
        have = table.schema.field(index).type
        if have == want:
            continue
        if not _castable(have, want):
            raise _Refused(422, f'feature column "{name}" holds {have} values; the model takes {want}')
        try:
            table = table.set_column(index, name, table.column(index).cast(want))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise _Refused(422, f'feature column "{name}" does not fit the model\'s type {want}: {exc}') from None
    return table


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether request values of type ``have`` may stand for ``want`` (numbers for numbers, nulls for any)."""
    if pa.types.is_null(have):
        return True
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(want) for f in numeric):
        return any(f(have) for f in numeric)
    if pa.types.is_string(want) or pa.types.is_large_string(want):
        return pa.types.is_string(have) or pa.types.is_large_string(have)
    if pa.types.is_boolean(want):
        return pa.types.is_boolean(have)
    return True  # timestamps and others: let the cast decide


def _column_error(rows: list[dict[str, Any]]) -> str | None:
    """The first column whose values cannot form one Arrow column (mixed types), or None."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    for name in seen:
        try:
            pa.array([row.get(name) for row in rows])
        except (pa.ArrowException, TypeError, ValueError) as exc:
            return f'column "{name}" mixes value types: {exc}'
    return None


def _shown(predictions: list[Any] | None) -> str:
    if predictions is None:
        return "no answer"
    head = json.dumps(predictions[:5], default=str)
    return head if len(predictions) <= 5 else f"{head[:-1]}, ... {len(predictions)} in all]"
