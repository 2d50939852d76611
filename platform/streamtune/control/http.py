"""The control plane over HTTP: what ``Client(url, token=...)`` uses. It never opens the registry or joins Ray.

Example:
    >>> cp = HttpControlPlane("http://127.0.0.1:1", token="st_x", connect_timeout_s=0.5)
    >>> try:
    ...     cp.status()
    ... except Exception as exc:
    ...     print(type(exc).__name__, exc.headline.split(" (")[0])
    ServiceError streamtune is not running at http://127.0.0.1:1
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import requests
from pydantic import TypeAdapter

from streamtune import errors
from streamtune.artifacts.code import pack_code
from streamtune.config.jobspec import JobSpec
from streamtune.control.base import ControlPlane
from streamtune.control.records import ControlStatus, Prediction, PublishedEvent, RunLogs
from streamtune.events.schema import DataArrival
from streamtune.registry.commands import Command, CommandRecord
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
from streamtune.sweeps.progress import SweepProgress

T = TypeVar("T")
_ERRORS = {name: cls for name, cls in vars(errors).items()
           if isinstance(cls, type) and issubclass(cls, errors.StreamtuneError)}


class HttpControlPlane(ControlPlane):
    """The control plane of a platform reached at ``url`` (its controllers' HTTP API).

    Args:
        url: Base URL, e.g. ``http://10.0.0.5:8470``.
        token: Bearer token (``streamtune token create``); None for a platform in local mode.
        actor: Who asks; the platform records the token's owner instead when tokens are on.
        command_timeout_s: How long command methods wait for the outcome.
        connect_timeout_s: How long to try to connect before saying the platform is not running.
    """

    def __init__(self, url: str, token: str | None = None, *, actor: str | None = None,
                 command_timeout_s: float = 300.0, connect_timeout_s: float = 3.0,
                 read_timeout_s: float = 60.0) -> None:
        super().__init__(actor=actor, command_timeout_s=command_timeout_s)
        self.url = url.rstrip("/")
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._http = requests.Session()
        self._http.headers["x-streamtune-actor"] = self.actor
        if token:
            self._http.headers["authorization"] = f"Bearer {token}"

    # -- plumbing ------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, f"{self.url}{path}", timeout=self._timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise errors.ServiceError(
                f"streamtune is not running at {self.url} (or cannot be reached): {type(exc).__name__}",
                fix="start it with `streamtune up`, or set STREAMTUNE_URL to where it runs",
            ) from None
        except requests.Timeout:
            raise errors.ServiceError(f"streamtune at {self.url} did not answer {method} {path} in time") from None
        if response.status_code == 404 and missing_ok and _error_name(response) == "NotFoundError":
            return None
        if response.status_code >= 400:
            raise self._error(response)
        return response.json()

    def _error(self, response: requests.Response) -> errors.StreamtuneError:
        if response.status_code == 401:
            return errors.AuthError(f"streamtune at {self.url} refused the request: missing or unknown token",
                                    fix="set STREAMTUNE_TOKEN to a token from `streamtune token create NAME` "
                                        "run on the platform's host")
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:300]}
        cls = _ERRORS.get(str(body.get("error")), errors.StreamtuneError)
        return cls(str(body.get("message") or f"HTTP {response.status_code}"), fix=body.get("fix"))

    @staticmethod
    def _as(kind: type[T] | Any, data: Any) -> T:
        return TypeAdapter(kind).validate_python(data)

    # -- reads ---------------------------------------------------------------------------------------

    def specs(self) -> list[SpecRecord]:
        return self._as(list[SpecRecord], self._call("GET", "/v1/specs"))

    def runs(self, spec: str | None = None, status: RunStatus | str | list[RunStatus | str] | None = None,
             limit: int = 50) -> list[RunRecord]:
        statuses = [status] if isinstance(status, str | RunStatus) else status
        params: dict[str, Any] = {"limit": limit, "spec": spec,
                                  "status": [RunStatus(s).value for s in statuses] if statuses else None}
        return self._as(list[RunRecord], self._call("GET", "/v1/runs", params=params))

    def find_run(self, run_id: str) -> RunRecord | None:
        return self._as(RunRecord | None, self._call("GET", f"/v1/runs/{run_id}", missing_ok=True))

    def models(self, name: str | None = None) -> list[ModelVersion]:
        return self._as(list[ModelVersion], self._call("GET", "/v1/models", params={"name": name}))

    def champion(self, name: str) -> ModelVersion | None:
        return self._as(ModelVersion | None, self._call("GET", f"/v1/models/{name}/champion"))

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        return self._as(list[AliasEvent], self._call("GET", f"/v1/models/{name}/aliases", params={"alias": alias}))

    def commands(self, limit: int = 50) -> list[CommandRecord]:
        return self._as(list[CommandRecord], self._call("GET", "/v1/commands", params={"limit": limit}))

    def find_command(self, command_id: str) -> CommandRecord | None:
        return self._as(CommandRecord | None, self._call("GET", f"/v1/commands/{command_id}", missing_ok=True))

    def status(self) -> ControlStatus:
        return ControlStatus.model_validate(self._call("GET", "/v1/status"))

    def sweep_progress(self, run: RunRecord) -> SweepProgress | None:
        body = self._call("GET", f"/v1/runs/{run.run_id}/progress")
        return None if body is None else SweepProgress.model_validate(body)

    def job_logs(self, run: RunRecord, attempt: int) -> RunLogs:
        return RunLogs.model_validate(self._call("GET", f"/v1/runs/{run.run_id}/logs", params={"attempt": attempt}))

    # -- changes -------------------------------------------------------------------------------------

    def append(self, command: Command, *, reason: str = "", actor: str | None = None) -> CommandRecord:
        body = {"command": command.model_dump(mode="json"), "reason": reason}
        headers = {"x-streamtune-actor": actor} if actor else {}
        return CommandRecord.model_validate(self._call("POST", "/v1/commands", json=body, headers=headers))

    def ship_code(self, spec: JobSpec) -> JobSpec:
        """Upload the spec's job package to the platform's artifact store; the spec then names it by URI."""
        if spec.job.code_uri is not None:
            return spec
        stored = self._call("POST", "/v1/code", data=pack_code(spec.code_dir()),
                            headers={"content-type": "application/octet-stream"})
        return spec.model_copy(update={"job": spec.job.model_copy(update={"code_uri": stored["code_uri"]})})

    # -- data plane ----------------------------------------------------------------------------------

    def publish(self, events: Iterable[DataArrival], topic: str | None = None) -> list[PublishedEvent]:
        body = {"events": [e.model_dump(mode="json", exclude_none=True) for e in events], "topic": topic}
        return self._as(list[PublishedEvent], self._call("POST", "/v1/events", json=body))

    def predict(self, name: str, rows: list[dict[str, Any]], timeout_s: float = 10) -> Prediction:
        return Prediction.model_validate(self._call("POST", f"/v1/models/{name}/predict", json={"rows": rows}))

    def close(self) -> None:
        self._http.close()


def _error_name(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


__all__ = ["HttpControlPlane"]
