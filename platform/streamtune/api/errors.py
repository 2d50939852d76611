"""Every error the API answers is JSON with a ``message``: streamtune errors keep their headline, fix and class.

Example:
    >>> from streamtune.errors import NotFoundError
    >>> status_for(NotFoundError("x")), status_for(RuntimeError("boom"))
    (404, 500)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamtune.errors import (
    CommandFailed,
    ConfigError,
    DataError,
    EventError,
    NotFoundError,
    ServiceError,
    StreamtuneError,
)

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, 404),
    (CommandFailed, 409),
    (ConfigError, 422),
    (EventError, 422),
    (DataError, 422),
    (ServiceError, 503),
    (StreamtuneError, 500),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status an exception answers with."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)


def error_body(message: str, *, error: str | None = None, fix: str | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON error body: always a ``message``; the error's class and fix when there are any."""
    body: dict[str, Any] = {"message": message}
    if error:
        body["error"] = error
    if fix:
        body["fix"] = fix
    body.update(extra)
    return body


def install(app: FastAPI) -> None:
    """Make every error the app answers a JSON body with a message."""

    @app.exception_handler(StreamtuneError)
    async def _streamtune(request: Request, exc: StreamtuneError) -> JSONResponse:
        if status_for(exc) >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.headline)
        body = error_body(exc.headline, error=type(exc).__name__, fix=exc.fix)
        return JSONResponse(body, status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        message = "invalid request: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
        return JSONResponse(error_body(message, error="ValidationError"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s raised", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)
