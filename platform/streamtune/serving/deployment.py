"""The Serve deployment: each replica serves one model while it loads the next one beside it.

A replica registers with its app's :class:`~streamtune.serving.board.VersionBoard`, long-polls it from a
background task, loads what the board wants in a worker thread (manifest first, then the job's ``load``),
and flips a pointer when the board says so. It keeps the previous model for an instant rollback and frees
anything older. Each response names the version that answered it, in the body and in ``x-model-version``.

Example:
    >>> app = ModelServer.options(num_replicas=2).bind(  # doctest: +SKIP
    ...     "sales", "jobs.tabular_gbdt:Job", "streamtune-board-sales")
    >>> serve.run(app, name="sales", route_prefix="/sales")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from streamtune.job import Predictor, load_job_class
from streamtune.registry.manifest import MANIFEST, verify_manifest
from streamtune.serving.board import NAMESPACE, Version

log = logging.getLogger("ray.serve")
VERSION_HEADER = "x-model-version"


@dataclass
class _Model:
    version: Version
    uri: str
    predictor: Predictor


INLINE_ROWS = 64


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class ModelServer:
    """One replica of a streamtune Serve app.

    Args:
        app: The Serve application name (for messages).
        entrypoint: ``module:Class`` of the Job whose ``load`` builds the predictor.
        board: Name of the app's VersionBoard actor (namespace ``streamtune``).
        poll_timeout_s: How long one long-poll waits; also the heartbeat period.

    Example:
        >>> ModelServer.options(num_replicas=2).bind("sales", "jobs.gbdt:Job", "streamtune-board-sales")
        ... # doctest: +SKIP
    """

    async def __init__(self, app: str, entrypoint: str, board: str, poll_timeout_s: float = 1.0) -> None:  # type: ignore[misc]  # noqa: E501
        self._app = app
        self._entrypoint = entrypoint
        self._board_name = board
        self._poll_timeout_s = poll_timeout_s
        self._replica_id = serve.get_replica_context().replica_id.unique_id
        self._models: dict[Version, _Model] = {}
        self._loading: dict[Version, asyncio.Task] = {}
        self._failures: dict[Version, dict[str, Any]] = {}
        self._active: _Model | None = None
        self._candidate: _Model | None = None
        self._canary_percent = 0.0
        self._view: dict[str, Any] = {"epoch": -1, "generation": -1}
        self._applied_epoch = -1
        self._unreported = False
        self._counters: dict[Version, list[int]] = {}
        self._lock = asyncio.Lock()
        self._board = ray.get_actor(board, namespace=NAMESPACE)
        await self._apply(await self._board.register.remote(self._replica_id))
        await self._warm_start()
        self._watcher: asyncio.Task[None] = asyncio.create_task(self._watch_loop())

    async def _warm_start(self) -> None:
        """A replica that joins a serving app loads the active model before it takes traffic."""
        active = self._view.get("active")
        task = self._loading.get(active["version"]) if active else None
        if task is not None:
            await asyncio.wait([task])

    # ----- requests -----------------------------------------------------------------------------------

    async def __call__(self, request: Request) -> JSONResponse:
        """Answer ``POST {"rows": [{col: val}, ...]}`` with ``{"version": v, "predictions": [...]}``."""
        if request.method != "POST":
            return _error(405, f'use POST with a JSON body {{"rows": [...]}}; got {request.method}')
        try:
            table = _parse_rows(await request.body())
        except ValueError as exc:
            return _error(400, str(exc))
        model = self._pick()
        if model is None:
            return _error(
                503,
                f"app {self._app} has no model loaded yet on replica {self._replica_id}; "
                "swap a version in first (ModelService.swap)",
            )
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
        return active

    def check_health(self) -> None:
        """Fail the replica (Serve restarts it) if its board watcher has died."""
        if self._watcher.done():
            raise RuntimeError(f"replica {self._replica_id} stopped watching its version board")

    def __del__(self) -> None:
        # Serve calls this on the replica's loop thread at shutdown; leaving at once keeps a replica that
        # is going away from holding up the next flip for the board's stale window.
        try:
            self._watcher.cancel()
            self._board.leave.remote(self._replica_id)
        except Exception:  # interpreter teardown: nothing left to tell
            pass

    # ----- the board ----------------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            try:
                view = await self._board.watch.remote(
                    self._replica_id, self._view["epoch"], self._counter_copy(), self._poll_timeout_s
                )
                if view["epoch"] != self._view["epoch"] or self._unreported:
                    await self._apply(view)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the board restarting: keep serving, find it again
                log.warning("replica %s lost its version board: %s", self._replica_id, exc)
                await asyncio.sleep(self._poll_timeout_s)
                try:
                    self._board = ray.get_actor(self._board_name, namespace=NAMESPACE)
                except ValueError:
                    pass

    async def _apply(self, view: dict[str, Any]) -> None:
        """Bring this replica in line with ``view``: start loads, free old models, move the pointers."""
        async with self._lock:
            self._view = view
            wanted = {m["version"]: m["uri"] for m in (view["active"], view["previous"], view["target"]) if m}
            for version, uri in wanted.items():
                self._ensure_loading(version, uri, view["generation"])
            for version in [v for v, m in self._models.items() if wanted.get(v) != m.uri]:
                if self._models[version] is not self._active:
                    del self._models[version]
            for version in [v for v in self._failures if v not in wanted]:
                del self._failures[version]
            self._point(view)
            # Reporting under the lock keeps the board from seeing an older state after a newer one.
            self._unreported = True
            await self._board.report.remote(self._replica_id, self._state())
            self._unreported = False

    def _point(self, view: dict[str, Any]) -> None:
        active, target = view["active"], view["target"]
        if active is not None and self._holds(active):
            self._active = self._models[active["version"]]
        wants_canary = target is not None and view["canary_percent"] > 0
        self._candidate = self._models[target["version"]] if wants_canary and self._holds(target) else None
        self._canary_percent = view["canary_percent"] if self._candidate is not None else 0.0
        if (active is None or self._holds(active)) and (not wants_canary or self._candidate is not None):
            self._applied_epoch = view["epoch"]

    def _holds(self, model: dict[str, Any]) -> bool:
        loaded = self._models.get(model["version"])
        return loaded is not None and loaded.uri == model["uri"]

    def _ensure_loading(self, version: Version, uri: str, generation: int) -> None:
        loaded = self._models.get(version)
        if (loaded is not None and loaded.uri == uri) or version in self._loading:
            return
        failure = self._failures.get(version)
        if failure is not None and failure["uri"] == uri and failure["generation"] == generation:
            return
        self._loading[version] = asyncio.create_task(self._load(version, uri, generation))

    async def _load(self, version: Version, uri: str, generation: int) -> None:
        started = time.monotonic()
        try:
            predictor = await asyncio.to_thread(self._load_blocking, uri)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._failures[version] = {"uri": uri, "generation": generation, "reason": reason}
            log.warning(
                "replica %s could not load version %s from %s: %s", self._replica_id, version, uri, reason
            )
        else:
            self._models[version] = _Model(version, uri, predictor)
            self._failures.pop(version, None)
            log.info(
                "replica %s loaded version %s in %.2fs", self._replica_id, version, time.monotonic() - started
            )
        finally:
            self._loading.pop(version, None)
        try:
            await self._apply(self._view)
        except Exception as exc:
            log.warning("replica %s could not report to its board: %s", self._replica_id, exc)

    def _load_blocking(self, uri: str) -> Predictor:
        folder = localize(uri)
        verify_manifest(folder)  # before any job code touches the files
        return load_job_class(self._entrypoint)().load(folder)

    def _state(self) -> dict[str, Any]:
        return {
            "applied_epoch": self._applied_epoch,
            "active": self._active.version if self._active else None,
            "loaded": {v: m.uri for v, m in self._models.items()},
            "loading": list(self._loading),
            "failures": {
                v: {"generation": f["generation"], "reason": f["reason"]} for v, f in self._failures.items()
            },
            "counters": self._counter_copy(),
        }

    def _counter_copy(self) -> dict[Version, list[int]]:
        return {version: list(counts) for version, counts in self._counters.items()}


def _error(status: int, message: str, version: Version | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    headers = {}
    if version is not None:
        body["version"] = version
        headers[VERSION_HEADER] = str(version)
    return JSONResponse(body, status_code=status, headers=headers)


def _parse_rows(body: bytes) -> pa.Table:
    """Decode ``{"rows": [{...}, ...]}`` into a table, naming what is wrong with anything else."""
    try:
        payload = json.loads(body or b"null")
    except ValueError as exc:
        raise ValueError(f'body is not valid JSON ({exc}); send {{"rows": [{{...}}, ...]}}') from None
    if not isinstance(payload, dict) or "rows" not in payload:
        raise ValueError(f'body must be a JSON object with a "rows" list; got {type(payload).__name__}')
    rows = payload["rows"]
    if not isinstance(rows, list) or not rows:
        raise ValueError('"rows" must be a non-empty list of objects')
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise ValueError(
            f'"rows"[{bad}] must be an object of column -> value; got {type(rows[bad]).__name__}'
        )
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(f'"rows" do not form a table: {exc}') from None


def _jsonable(predictions: Any) -> list[Any]:
    if hasattr(predictions, "to_pylist"):
        return list(predictions.to_pylist())
    if hasattr(predictions, "tolist"):
        return list(predictions.tolist())
    return [p.item() if hasattr(p, "item") else p for p in predictions]


def localize(uri: str) -> Path:
    """A local folder holding the artifact at ``uri``: the path itself, or a cached copy of a remote one.

    Example:
        >>> localize("file:///tmp/model")
        PosixPath('/tmp/model')
    """
    if "://" not in uri:
        return Path(uri)
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    import pyarrow.fs as pafs

    cache = (
        Path(tempfile.gettempdir()) / "streamtune-artifacts" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    )
    if not (cache / MANIFEST).is_file():
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.part")
        partial.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(uri, str(partial), destination_filesystem=pafs.LocalFileSystem())
        try:
            partial.rename(cache)
        except OSError:  # another process won the race; its copy is as good
            pass
    return cache
