"""ModelService: deploy a model's Serve app once, then hot-swap versions into it in place.

A swap does not redeploy: it writes the target on the app's :class:`VersionBoard`; replicas load it beside
the model they serve, and once all of them hold it the board flips every replica's pointer at once.

Example:
    >>> from streamtune.config.jobspec import ServeSpec
    >>> svc = ModelService("sales", ServeSpec(app="sales"), "jobs.tabular_gbdt:Job", "jobs", 8000)
    >>> svc.url
    'http://127.0.0.1:8000/sales'
    >>> svc.deploy()                                  # doctest: +SKIP
    >>> svc.swap(3, "/artifacts/sales/3").flip_s      # doctest: +SKIP
    0.004
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import requests
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from streamtune.config.jobspec import RolloutSpec, ServeSpec
from streamtune.errors import ConfigError, ServiceError, SwapError
from streamtune.serving.board import NAMESPACE, Version, VersionBoard, board_name, board_options
from streamtune.serving.deployment import ModelServer

_POLL_S = 0.01


class SwapReport(BaseModel):
    """What one swap or rollback did, timed on the board's clock."""

    model_config = ConfigDict(frozen=True)

    version: int | str = Field(description="The version now serving (or that was refused, on a SwapError).")
    previous: int | str | None = Field(description="The version that served before.")
    load_s: float = Field(description="Seconds from the request until every live replica had it loaded.")
    flip_s: float = Field(
        description="Seconds from the flip (right after all-loaded, or after the canary) "
        "until every live replica acknowledged it."
    )
    total_s: float = Field(description="Wall-clock seconds of the whole call.")
    replicas: int = Field(description="Live replicas that took part.")
    canary: dict[str, Any] | None = Field(
        None,
        description="Canary numbers: percent, observe_s, requests, "
        "errors, error_rate, max_error_rate; None without a canary.",
    )
    rolled_back: bool = Field(False, description="True for a rollback, or a canary that was rolled back.")


class ModelService:
    """One model's Ray Serve app, with in-place hot-swap, canary and rollback.

    Ray must already be running in this process (e.g. ``LocalRay(settings).start()``), with Serve's HTTP
    proxy on ``http_port``.

    Args:
        app: Serve application name; the route prefix is ``/<app>``.
        serve_spec: Replicas, resources and rollout (canary) settings.
        entrypoint: ``module:Class`` of the Job whose ``load`` builds predictors.
        code_dir: Folder of the package holding the entrypoint; shipped to replicas as a py_module.
        http_port: Port of Serve's HTTP proxy.

    Example:
        >>> svc = ModelService("sales", ServeSpec(app="sales"), "jobs.gbdt:Job", "jobs", 8000)
        >>> svc.deploy(); svc.swap(1, "/artifacts/sales/1")     # doctest: +SKIP
        >>> svc.predict([{"x": 1.0}])                            # doctest: +SKIP
        {'version': 1, 'predictions': [0.5]}
    """

    def __init__(
        self, app: str, serve_spec: ServeSpec, entrypoint: str, code_dir: str | Path, http_port: int = 8000
    ) -> None:
        self.app = app
        self.spec = serve_spec
        self.entrypoint = entrypoint
        self.code_dir = Path(code_dir).expanduser().resolve()
        self.http_port = http_port
        self._http = requests.Session()

    @property
    def url(self) -> str:
        """The app's HTTP endpoint.

        Example:
            >>> ModelService("m", ServeSpec(app="m"), "jobs.x:Job", "jobs", 8123).url
            'http://127.0.0.1:8123/m'
        """
        return f"http://127.0.0.1:{self.http_port}/{self.app}"

    @property
    def board_name(self) -> str:
        """Name of the app's VersionBoard actor (namespace ``streamtune``)."""
        return board_name(self.app)

    # ----- deploy / delete ----------------------------------------------------------------------------

    def deploy(self, timeout_s: float = 120) -> None:
        """Run the Serve app and wait until its replicas have registered with the board. Idempotent.

        A second call with the same settings and code leaves the running replicas alone; changed settings
        or code roll the replicas, and each new one loads the active version before it takes traffic.

        Raises:
            ConfigError: ``code_dir`` is not a folder.
            ServiceError: Ray is not running, or the app did not come up.

        Example:
            >>> svc.deploy()  # doctest: +SKIP
        """
        _require_ray()
        if not self.code_dir.is_dir():
            raise ConfigError(
                f'Got "{self.code_dir}" for the job code folder; no such folder',
                fix="point code_dir (job.code) at the package that holds the entrypoint",
            )
        board = self._board(create=True)
        options = self._deployment_options()
        fingerprint = hashlib.sha256(
            json.dumps([self.entrypoint, options], sort_keys=True, default=str).encode()
        ).hexdigest()
        if ray.get(board.get_meta.remote("deploy")) == fingerprint and self._app_running():
            self._wait_replicas(board, timeout_s)
            return
        server: Any = ModelServer  # Serve's decorator adds .options, which mypy cannot see
        app = server.options(**options).bind(self.app, self.entrypoint, self.board_name)
        try:
            serve.run(app, name=self.app, route_prefix=f"/{self.app}")
        except Exception as exc:
            raise ServiceError(
                f"Serve app {self.app} did not deploy: {exc}",
                fix="see the replica logs under the Ray session's logs/serve folder",
            ) from exc
        ray.get(board.set_meta.remote("deploy", fingerprint))
        self._wait_replicas(board, timeout_s)

    def _deployment_options(self) -> dict[str, Any]:
        runtime_env = {"py_modules": [_upload_code(self.code_dir)]}
        return {
            "num_replicas": self.spec.replicas,
            "ray_actor_options": {
                "num_cpus": self.spec.num_cpus,
                "num_gpus": self.spec.num_gpus,
                "runtime_env": runtime_env,
            },
        }

    def delete(self) -> None:
        """Delete the Serve app and its board. Safe to call when neither exists.

        Example:
            >>> svc.delete()  # doctest: +SKIP
        """
        if not ray.is_initialized():
            return
        try:
            serve.delete(self.app)
        except Exception as exc:  # no app of that name, or Serve not started
            if self._app_running():
                raise ServiceError(f"Serve app {self.app} could not be deleted: {exc}") from exc
        board = self._board(create=False)
        if board is not None:
            ray.kill(board)

    # ----- swap / rollback ----------------------------------------------------------------------------

    def swap(
        self,
        version: Version,
        artifact_uri: str,
        timeout_s: float = 120,
        *,
        rollout: RolloutSpec | None = None,
    ) -> SwapReport:
        """Load ``version`` on every replica beside the serving model, then flip them all to it.

        With ``rollout.canary_percent > 0`` (and a version already serving) the candidate first answers that
        share of requests for ``rollout.observe`` seconds; if its error rate exceeds
        ``rollout.max_error_rate`` the canary is withdrawn and SwapError raised.

        Args:
            version: The new version's id; responses carry it.
            artifact_uri: Folder (or ``file://``, ``s3://``, ``gs://`` URI) with the model and its manifest.
            timeout_s: Limit for loading and flipping.
            rollout: Overrides ``serve_spec.rollout`` for this swap.

        Raises:
            SwapError: a replica could not load it (reason included), the canary failed (the error's
                ``report`` attribute holds the numbers), or the timeout passed. The old version keeps
                serving in each case.

        Example:
            >>> report = svc.swap(2, "/artifacts/sales/2")  # doctest: +SKIP
            >>> report.version, report.previous              # doctest: +SKIP
            (2, 1)
        """
        rollout = rollout or self.spec.rollout
        started = time.monotonic()
        board = self._board(create=False, required=True)
        canary = rollout.canary_percent > 0 and ray.get(board.snapshot.remote())["active"] is not None
        generation = ray.get(board.set_target.remote(version, str(artifact_uri), not canary, "swap"))
        deadline = started + timeout_s
        self._wait(board, generation, "loaded_at", deadline, timeout_s)
        canary_info = None
        if canary:
            canary_info = self._canary(board, generation, rollout, deadline, started)
            ray.get(board.promote.remote(generation))
        record = self._wait(board, generation, "acked_at", deadline, timeout_s)
        return _report(record, started, canary_info, rolled_back=False)

    def rollback(self, timeout_s: float = 60) -> SwapReport:
        """Flip every replica back to the previous version, which they keep loaded.

        Rolling back twice returns to where you started.

        Raises:
            SwapError: there is no previous version, or the replicas did not flip in time.

        Example:
            >>> svc.rollback().version  # doctest: +SKIP
            1
        """
        started = time.monotonic()
        board = self._board(create=False, required=True)
        previous = ray.get(board.snapshot.remote())["previous"]
        if previous is None:
            raise SwapError(
                f"App {self.app} has no previous version to roll back to",
                fix="swap() a second version in first",
            )
        generation = ray.get(board.set_target.remote(previous["version"], previous["uri"], True, "rollback"))
        deadline = started + timeout_s
        self._wait(board, generation, "loaded_at", deadline, timeout_s)
        record = self._wait(board, generation, "acked_at", deadline, timeout_s)
        return _report(record, started, None, rolled_back=True)

    # ----- status / predict ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The app's Serve status and the board's view: active, previous, target, replicas, counters.

        Example:
            >>> svc.status()["active"]  # doctest: +SKIP
            {'version': 2, 'uri': '/artifacts/sales/2'}
        """
        board = self._board(create=False) if ray.is_initialized() else None
        result: dict[str, Any] = {"app": self.app, "url": self.url, "serve_status": self._app_status()}
        if board is not None:
            snapshot = ray.get(board.snapshot.remote())
            snapshot["last_swap"] = ray.get(board.record.remote(snapshot["generation"]))
            result.update(snapshot)
        return result

    def predict(self, rows: list[dict[str, Any]], timeout_s: float = 30) -> dict[str, Any]:
        """POST rows to the app over HTTP; returns ``{"version": v, "predictions": [...]}``.

        Raises:
            ServiceError: the app answered with an error status, or could not be reached.

        Example:
            >>> svc.predict([{"x": 1.0}, {"x": 2.0}])  # doctest: +SKIP
            {'version': 2, 'predictions': [0.5, 0.7]}
        """
        try:
            response = self._http.post(self.url, json={"rows": rows}, timeout=timeout_s)
        except requests.RequestException as exc:
            raise ServiceError(f"Could not reach {self.url}: {exc}", fix="deploy() the app first") from None
        if response.status_code != 200:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(f"{self.url} answered {response.status_code}: {detail}")
        return response.json()

    # ----- internals ----------------------------------------------------------------------------------

    def _board(self, *, create: bool, required: bool = False) -> Any:
        if create:
            return VersionBoard.options(**board_options(self.app)).remote(self.app)  # type: ignore[attr-defined]
        try:
            return ray.get_actor(self.board_name, namespace=NAMESPACE)
        except ValueError:
            if required:
                raise ServiceError(f"App {self.app} has no version board", fix="deploy() it first") from None
            return None

    def _app_status(self) -> str:
        """Serve's status of the app (RUNNING, DEPLOYING, ...), or NOT_DEPLOYED."""
        if not ray.is_initialized():
            return "NOT_DEPLOYED"
        try:
            app_status = serve.status().applications.get(self.app)
        except Exception:  # Serve not started on this cluster
            return "NOT_DEPLOYED"
        return (
            "NOT_DEPLOYED"
            if app_status is None
            else str(getattr(app_status.status, "value", app_status.status))
        )

    def _app_running(self) -> bool:
        return self._app_status() == "RUNNING"

    def _wait_replicas(self, board: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            live = ray.get(board.snapshot.remote())["live_replicas"]
            if len(live) >= self.spec.replicas:
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"Only {len(live)} of {self.spec.replicas} replicas of {self.app} registered "
                    f"with the version board within {timeout_s:.0f}s"
                )
            time.sleep(0.1)

    def _wait(
        self, board: Any, generation: int, key: str, deadline: float, timeout_s: float
    ) -> dict[str, Any]:
        """Poll the swap's record until ``key`` is set; raise SwapError on failure, abort or timeout."""
        while True:
            record = ray.get(board.record.remote(generation))
            if record is None:
                raise SwapError(f"Swap {generation} of app {self.app} is no longer known to its board")
            if record[key] is not None:
                return record
            if record["failure"] is not None or record["aborted"] is not None:
                raise _refused(self.app, record)
            if time.monotonic() > deadline:
                if key == "loaded_at":
                    ray.get(board.abort.remote(generation, "timed out"))
                raise SwapError(
                    f"Swap of app {self.app} to version {record['version']} timed out after {timeout_s:.0f}s "
                    f"waiting for every replica to {'load' if key == 'loaded_at' else 'acknowledge'} it",
                    fix=f"check the replicas in ModelService.status(); raise timeout_s above {timeout_s:.0f}",
                )
            time.sleep(_POLL_S)

    def _canary(
        self, board: Any, generation: int, rollout: RolloutSpec, deadline: float, started: float
    ) -> dict[str, Any]:
        """Send the canary share to the candidate, watch it, and withdraw it if it errs too often."""
        record = ray.get(board.record.remote(generation))
        epoch = ray.get(board.set_canary.remote(generation, rollout.canary_percent))
        self._wait_applied(board, epoch, deadline)
        info = _observe(board, record["version"], rollout)
        if info["error_rate"] <= rollout.max_error_rate:
            return info
        self._wait_applied(board, ray.get(board.abort.remote(generation, "canary failed")), deadline)
        err = SwapError(
            f"Canary of version {record['version']} on app {self.app} failed: error rate "
            f"{info['error_rate']:.1%} over {info['requests']} requests exceeds rollout.max_error_rate "
            f"{rollout.max_error_rate:.1%}; version {record['previous']} keeps serving",
            fix="check the candidate's predict on live rows; its errors are in the replica logs",
        )
        # SwapError has no report field; the canary's numbers ride along as an attribute.
        report = _report(ray.get(board.record.remote(generation)), started, info, rolled_back=True)
        err.report = report  # type: ignore[attr-defined]
        raise err

    def _wait_applied(self, board: Any, epoch: int, deadline: float) -> None:
        while ray.get(board.snapshot.remote())["min_applied_epoch"] < epoch:
            if time.monotonic() > deadline:
                raise SwapError(f"Replicas of app {self.app} did not apply board epoch {epoch} in time")
            time.sleep(_POLL_S)


def _observe(board: Any, version: Version, rollout: RolloutSpec) -> dict[str, Any]:
    """Watch the candidate's request and error counts for ``rollout.observe`` seconds."""
    before = _counts(board, version)
    observe_until = time.monotonic() + rollout.observe
    while True:
        now = _counts(board, version)
        requests_, errors = now[0] - before[0], now[1] - before[1]
        rate = errors / requests_ if requests_ else 0.0
        # Stop early once enough requests show the rate is over the limit: every extra second hurts users.
        if (rate > rollout.max_error_rate and requests_ >= 10) or time.monotonic() >= observe_until:
            break
        time.sleep(0.1)
    return {
        "percent": rollout.canary_percent,
        "observe_s": rollout.observe,
        "requests": requests_,
        "errors": errors,
        "error_rate": round(rate, 4),
        "max_error_rate": rollout.max_error_rate,
    }


def _counts(board: Any, version: Version) -> tuple[int, int]:
    entry = ray.get(board.snapshot.remote())["counters"].get(version, {"requests": 0, "errors": 0})
    return entry["requests"], entry["errors"]


def _report(
    record: dict[str, Any], started: float, canary: dict[str, Any] | None, rolled_back: bool
) -> SwapReport:
    loaded_at, flipped_at, acked_at = record["loaded_at"], record["flipped_at"], record["acked_at"]
    return SwapReport(
        version=record["version"],
        previous=record["previous"],
        load_s=round(loaded_at - record["started"], 4) if loaded_at else 0.0,
        flip_s=round(acked_at - flipped_at, 4) if acked_at and flipped_at else 0.0,
        total_s=round(time.monotonic() - started, 4),
        replicas=record.get("replicas", 0),
        canary=canary,
        rolled_back=rolled_back,
    )


def _refused(app: str, record: dict[str, Any]) -> SwapError:
    failure = record["failure"]
    keeps = (
        f"version {record['previous']} keeps serving"
        if record["previous"] is not None
        else "nothing serves yet"
    )
    if failure is not None:
        return SwapError(
            f"Replica {failure['replica']} of app {app} could not load version {record['version']} from "
            f"{record['uri']}: {failure['reason']}; {keeps}",
            fix="check the artifact (its manifest is verified before loading) and the job's load()",
        )
    return SwapError(f"Swap of app {app} to version {record['version']} was {record['aborted']}; {keeps}")


def _require_ray() -> None:
    if not ray.is_initialized():
        raise ServiceError(
            "Ray is not running in this process", fix="start it first: LocalRay(Settings.from_env()).start()"
        )


def _upload_code(code_dir: Path) -> str:
    """Upload the job package to the cluster and return its ``gcs://`` URI.

    Ray uploads local ``py_modules`` only for job-level runtime envs; a Serve replica's (per-actor) runtime
    env needs a URI, so the driver uploads it the way ``ray.init`` would. The URI is content-addressed, so
    the same code uploads once.
    """
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    with tempfile.TemporaryDirectory() as scratch:
        env = upload_py_modules_if_needed(
            {"py_modules": [str(code_dir)]}, include_gitignore=True, scratch_dir=scratch
        )
    return str(env["py_modules"][0])
