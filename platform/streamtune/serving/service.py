"""ModelService: deploy a model's Serve app once, then hot-swap versions into it in place.

A swap does not redeploy: it writes the target on the app's :class:`VersionBoard`; replicas load it beside
the model they serve, and once all of them hold it the board flips every replica's pointer at once.

Serving can be rebuilt from a desired version kept elsewhere (the registry's champion): :meth:`ModelService.ensure`
redeploys a missing app, remakes a missing board, or swaps, until the app serves that version.

Who may call the endpoint (bearer tokens) and how big a request may be is an :class:`AccessPolicy` on the
board; :meth:`ModelService.set_policy` changes it on every replica without a redeploy.

Example:
    >>> from streamtune.config.jobspec import ServeSpec
    >>> svc = ModelService("sales", ServeSpec(app="sales"), "jobs.tabular_gbdt:Job", "jobs", 8000, fence=3)
    >>> svc.url, svc.fence
    ('http://127.0.0.1:8000/sales', 3)
    >>> svc.deploy(desired=ModelRef(version=3, uri="/artifacts/sales/3"))  # doctest: +SKIP
    >>> svc.swap(4, "/artifacts/sales/4").flip_s                           # doctest: +SKIP
    0.004
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any

import ray
import requests
from ray import serve
from ray.exceptions import RayActorError

from streamtune.artifacts.store import ArtifactStore, ray_uri
from streamtune.config.jobspec import RolloutSpec, ServeSpec
from streamtune.errors import ConfigError, ServiceError, SwapError
from streamtune.serving.board import NAMESPACE, VersionBoard, board_name, board_options
from streamtune.serving.deployment import ModelServer
from streamtune.serving.records import (
    AccessPolicy,
    BoardSnapshot,
    EnsureAction,
    EnsureResult,
    InputSchema,
    ModelRef,
    ServiceStatus,
    SwapReport,
    Version,
    VersionFigures,
)
from streamtune.serving.swaps import BoardClient, refused, run_swap

__all__ = ["ModelService", "SwapReport"]

# Serve app states in which Serve itself keeps the app up: a deploy with the same settings leaves it alone.
_PRESENT = frozenset({"RUNNING", "DEPLOYING", "UNHEALTHY"})
_POLL_S = 0.05


class ModelService:
    """One model's Ray Serve app, with in-place hot-swap, canary, rollback and recovery.

    Ray must already be running in this process (e.g. ``LocalRay(settings).start()``), with Serve's HTTP
    proxy on ``http_port``.

    Args:
        app: Serve application name; the route prefix is ``/<app>``.
        serve_spec: Replicas, resources and rollout (canary) settings.
        entrypoint: ``module:Class`` of the Job whose ``load`` builds predictors.
        code_uri: The job package's zip in the artifact store (``artifacts.store_code``); replicas get it
            through ``runtime_env.py_modules`` by URI.
        http_port: Port of Serve's HTTP proxy.
        fence: This writer's fence token, passed on every board write; a board that has seen a higher one
            refuses them (:class:`StaleFenceError`). May be changed later through the ``fence`` attribute.
        policy: The access policy to keep the board on; deploy, ensure and set_policy replace it, and a board
            made again starts with it. None (the default) leaves the board's policy alone.
        input_schema: The feature columns (and types) every request must carry; a missing or mistyped one gets a
            422 naming it. None: only the predictor's own ``features`` attribute, if any, is checked.

    Example:
        >>> svc = ModelService("sales", ServeSpec(app="sales"), "jobs.gbdt:Job", "/artifacts/code/5e.zip", 8000)
        >>> svc.deploy(); svc.swap(1, "/artifacts/sales/1")     # doctest: +SKIP
        >>> svc.predict([{"x": 1.0}])                            # doctest: +SKIP
        {'version': 1, 'predictions': [0.5]}
    """

    def __init__(
        self,
        app: str,
        serve_spec: ServeSpec,
        entrypoint: str,
        code_uri: str,
        http_port: int = 8000,
        *,
        fence: int = 0,
        policy: AccessPolicy | None = None,
        input_schema: InputSchema | None = None,
    ) -> None:
        self.app = app
        self.input_schema = input_schema
        self.spec = serve_spec
        self.entrypoint = entrypoint
        self.code_uri = code_uri
        self.http_port = http_port
        self.fence = fence
        self.policy = policy
        self._policy_lock = threading.Lock()
        self._handle: Any = None
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

    def deploy(
        self, desired: ModelRef | None = None, timeout_s: float = 120, *, policy: AccessPolicy | None = None
    ) -> bool:
        """Run the Serve app and wait until its replicas have registered with the board. Idempotent.

        A second call with the same settings and code leaves the running replicas alone; changed settings
        or code roll the replicas, and each new one loads the active version before it takes traffic.
        With ``desired`` and no active model on the board (a fresh app, or a board made again), the board's
        target is set to it first, so replicas load it while they start, and deploy returns once every
        replica serves it. Returns True when it (re)ran the Serve app.

        With ``policy`` (or the service's ``policy``) the board gets it before anything else: a board made
        here is born with it, so no replica ever sees the endpoint open.

        Raises:
            ConfigError: nothing is stored at ``code_uri``.
            ServiceError: Ray is not running, or the app did not come up.
            SwapError: ``desired`` could not be loaded (the replica's reason included).
            StaleFenceError: the board has seen a newer writer.

        Example:
            >>> svc.deploy(desired=ModelRef(version=1, uri="/artifacts/sales/1"))  # doctest: +SKIP
            True
        """
        _require_ray()
        if not ArtifactStore(self.code_uri).exists(self.code_uri):
            raise ConfigError(
                f'Got "{self.code_uri}" for the job code URI; nothing is stored there',
                fix="store the job package first (streamtune.artifacts.store_code), or submit the spec again",
            )
        if policy is not None:
            self.policy = policy
        client, _ = self._board_with_policy(create=True)
        generation = self._start_desired(client, desired)
        options = self._deployment_options()
        identity: list[Any] = [self.entrypoint, options]
        if self.input_schema is not None:  # unset leaves the fingerprint of earlier deploys as it was
            identity.append(self.input_schema.model_dump())
        fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        rerun = not self._deployed_as(client, fingerprint)
        if rerun:
            client.claim()
            self._run_app(options, fingerprint)
        client.set_deployed(fingerprint)
        self._wait_ready(client, desired, generation, timeout_s)
        return rerun

    def _start_desired(self, client: BoardClient, desired: ModelRef | None) -> int | None:
        """Set the board's target to ``desired`` when nothing is active; the swap's generation, or None."""
        if desired is None:
            return None
        snap = client.snapshot()
        if snap.active is not None:
            return None
        if snap.target == desired:  # already on its way (a deploy that was interrupted, or run twice)
            return snap.generation
        return client.set_target(desired, kind="deploy")

    def _deployed_as(self, client: BoardClient, fingerprint: str) -> bool:
        """Whether the running app was deployed with ``fingerprint`` (asking a replica on a new board)."""
        if self._app_status() not in _PRESENT:
            return False
        known = client.get_deployed()
        if known is None:
            known = self._running_fingerprint()
        return known == fingerprint

    def _running_fingerprint(self) -> str | None:
        try:
            handle = serve.get_app_handle(self.app).options(method_name="deploy_fingerprint")
            return str(handle.remote().result(timeout_s=30))
        except Exception:  # replicas of an older deploy, or none answering: redeploy to be sure
            return None

    def _run_app(self, options: dict[str, Any], fingerprint: str) -> None:
        server: Any = ModelServer  # Serve's decorator adds .options, which mypy cannot see
        app = server.options(**options).bind(
            self.app, self.entrypoint, self.board_name, fingerprint=fingerprint, input_schema=self.input_schema
        )
        try:
            serve.run(app, name=self.app, route_prefix=f"/{self.app}")
        except Exception as exc:
            raise ServiceError(
                f"Serve app {self.app} did not deploy: {exc}",
                fix="see the replica logs under the Ray session's logs/serve folder",
            ) from exc

    def _deployment_options(self) -> dict[str, Any]:
        env = {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]} if os.environ.get("AWS_ENDPOINT_URL") else {}
        runtime_env = {"py_modules": [ray_uri(self.code_uri)], "env_vars": env}
        options: dict[str, Any] = {
            "num_replicas": self.spec.replicas,
            "ray_actor_options": {
                "num_cpus": self.spec.num_cpus,
                "num_gpus": self.spec.num_gpus,
                "runtime_env": runtime_env,
            },
        }
        if self.spec.replica_memory_mb is not None:  # the models it holds (up to three): Ray reserves it
            options["ray_actor_options"]["memory"] = self.spec.replica_memory_mb * 1024 * 1024
        if self.spec.max_replicas_per_node is not None:  # unset leaves the options (and their fingerprint) as before
            options["max_replicas_per_node"] = self.spec.max_replicas_per_node
        return options

    def _wait_ready(
        self, client: BoardClient, desired: ModelRef | None, generation: int | None, timeout_s: float
    ) -> None:
        """Wait until enough replicas registered and every live one serves the active model (``desired``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            snap = client.snapshot()
            if generation is not None:
                record = snap.last_swap if snap.generation == generation else client.record(generation)
                if record is not None and (record.failure is not None or record.aborted is not None):
                    raise refused(self.app, record)
            model = desired if generation is not None else snap.active
            if model is not None and snap.serving(model, self.spec.replicas):
                return
            if model is None and len(snap.live_replicas) >= self.spec.replicas:
                return
            if time.monotonic() > deadline:
                serving = f", all serving version {model.version}" if model is not None else ""
                raise ServiceError(
                    f"{self.app} did not have {self.spec.replicas} live replicas registered with its version "
                    f"board{serving} within {timeout_s:.0f}s (live: {len(snap.live_replicas)}, "
                    f"active: {_version(snap.active)})",
                    fix="check the replica logs under the Ray session's logs/serve folder",
                )
            time.sleep(_POLL_S)

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
            if self._app_status() == "RUNNING":
                raise ServiceError(f"Serve app {self.app} could not be deleted: {exc}") from exc
        self._handle = None
        handle = self._lookup()
        if handle is not None:
            ray.kill(handle)
        self._handle = None

    # ----- recovery -----------------------------------------------------------------------------------

    def ensure(self, desired: ModelRef, timeout_s: float = 120, policy: AccessPolicy | None = None) -> EnsureResult:
        """Make the app serve ``desired``: deploy it, remake its board, or swap to it, as needed.

        Cheap when nothing is wrong (one Serve status call and one board snapshot). When the Serve app is
        not running it is deployed with ``desired`` (action ``deployed``); when its board is missing, the
        board is made again and the replicas re-register (``board_recreated``); when another version is
        active and no swap is in flight, it swaps to ``desired`` without a canary (``swapped``). A swap in
        flight is left alone (``busy``), unless an older fence started it: that writer can no longer finish
        it, so it is dropped and ``desired`` swapped in. Nothing to do is ``none``.

        With ``policy`` (or the service's ``policy``) different from the board's, the board takes it first (a
        board made again is born with it); when that is all that changed the action is ``policy``.

        Raises:
            SwapError: ``desired`` could not be loaded; StaleFenceError: a newer writer owns the board.
            ServiceError: the app did not come up.

        Example:
            >>> svc.ensure(ModelRef(version=3, uri="/artifacts/sales/3")).action  # doctest: +SKIP
            'none'
        """
        _require_ray()
        if policy is not None:
            self.policy = policy
        action, snap, found = self._ensure_board(desired, timeout_s)
        if snap.active == desired:
            return self._result(action, desired, f"{found}; serving version {desired.version}")
        client = self._client()
        if snap.target is not None or snap.watching is not None:
            moving = snap.target.version if snap.target is not None else _version(snap.active)
            if self.fence <= snap.fence:
                what = "in flight" if snap.target is not None else "under its post-promotion watch"
                detail = f"{found}; swap to version {moving} {what}, left alone"
                return self._result("policy" if action == "policy" else "busy", desired, detail)
            # Started by a writer with an older fence, which can no longer promote or abort it: take over.
            if snap.target is not None:
                client.abort(snap.generation, f"taken over by fence {self.fence}")
            else:
                client.set_watch(snap.generation, 0)
            found += f"; dropped the swap to version {moving} left by fence {snap.fence}"
        report = run_swap(client, desired, kind="ensure", rollout=None, timeout_s=timeout_s)
        return self._result("swapped", desired, f"{found}; swapped to version {desired.version}", report)

    def _ensure_board(self, desired: ModelRef, timeout_s: float) -> tuple[EnsureAction, BoardSnapshot, str]:
        """Deploy the app or remake its board when missing, and bring the board to the kept policy.

        Returns the action so far (none, policy, deployed or board_recreated), the board's snapshot and what
        was found and done.
        """
        serve_status = self._app_status()
        snap = self._snapshot()
        policy = self.policy
        new_policy = policy is not None and (snap is None or snap.policy != policy)
        found = f"Serve app {serve_status}, " + ("no board" if snap is None else f"active {_version(snap.active)}")
        action: EnsureAction = "none"
        if serve_status not in _PRESENT or snap is None:
            action = "deployed" if serve_status not in _PRESENT else "board_recreated"
            self.deploy(desired, timeout_s)  # a board made here is born with the policy
            snap = self._client().snapshot()
        elif new_policy:
            new_policy = self._board_with_policy(create=False)[1]
            action = "policy" if new_policy else "none"
        if new_policy:
            found += "; access policy set"
        return action, snap, found

    def _result(
        self, action: EnsureAction, desired: ModelRef, detail: str, report: SwapReport | None = None
    ) -> EnsureResult:
        return EnsureResult(app=self.app, action=action, desired=desired, report=report, detail=detail)

    def set_policy(self, policy: AccessPolicy) -> bool:
        """Make every replica enforce ``policy`` (tokens, request limits) without a redeploy.

        The board wakes its replicas at once; each applies the policy within one board round trip. The policy
        is also kept as this service's, for boards made later. Returns True when the board changed, False
        when it had the policy already or there is no board (the next deploy or ensure brings it).

        Raises:
            StaleFenceError: the board has seen a newer writer.

        Example:
            >>> svc.set_policy(AccessPolicy(required=True, token_sha256=(digest,)))  # doctest: +SKIP
            True
        """
        _require_ray()
        self.policy = policy
        if self._snapshot() is None:
            return False
        return self._board_with_policy(create=False)[1]

    def _board_with_policy(self, *, create: bool) -> tuple[BoardClient, bool]:
        """The board's client once the board holds the kept policy, and whether it had to be changed.

        With ``create`` a missing board is made, born with the policy. The kept policy is read under a lock,
        once, so of two threads setting policies the later one always lands last: a board never ends on an
        older policy than the latest kept (a revoked token never comes back).
        """
        with self._policy_lock:
            policy = self.policy
            client = self._client(create=create, policy=policy)
            if policy is None or client.snapshot().policy == policy:
                return client, False
            client.set_policy(policy)
            return client, True

    # ----- swap / rollback ----------------------------------------------------------------------------

    def swap(
        self,
        version: Version,
        artifact_uri: str,
        timeout_s: float | None = None,
        *,
        rollout: RolloutSpec | None = None,
        manifest_sha256: str | None = None,
    ) -> SwapReport:
        """Load ``version`` on every replica beside the serving model, then flip them all to it.

        With ``rollout.canary_percent`` or ``rollout.shadow_percent`` > 0 (and a version already serving) the
        candidate first answers (canary) or is mirrored (shadow) that share of requests for ``rollout.observe``
        seconds; with fewer than ``rollout.min_requests`` requests, a model error rate above
        ``rollout.max_error_rate`` or a p99 above ``rollout.max_p99_ms`` it is withdrawn and SwapError raised.
        After the flip, ``rollout.watch`` seconds of live figures are judged the same way; a breach (or replicas
        that do not acknowledge the flip within ``rollout.ack_timeout``) flips back to the previous version.

        Args:
            version: The new version's id; responses carry it.
            artifact_uri: Folder (or ``file://``, ``s3://``, ``gs://`` URI) with the model and its manifest.
            timeout_s: Limit for loading (default ``rollout.load_timeout``); the observation, each ack and the
                post-promotion watch have their own limits in the rollout.
            rollout: Overrides ``serve_spec.rollout`` for this swap.
            manifest_sha256: The registry's sha256 of the artifact's MANIFEST.json; each replica checks the
                manifest against it before the files and refuses the version on a mismatch.

        Raises:
            SwapError: a replica could not load it (reason included), the canary failed or the swap was rolled
                back after the flip (the error's ``report`` attribute holds the numbers; its ``version`` is what
                serves), or a deadline passed. The old version keeps serving in each case.
                StaleFenceError (a SwapError): a newer writer owns the board.

        Example:
            >>> report = svc.swap(2, "/artifacts/sales/2")  # doctest: +SKIP
            >>> report.version, report.previous              # doctest: +SKIP
            (2, 1)
        """
        model = ModelRef(version=version, uri=str(artifact_uri), manifest_sha256=manifest_sha256)
        client = self._client(required=True)
        return run_swap(client, model, kind="swap", rollout=rollout or self.spec.rollout, timeout_s=timeout_s)

    def rollback(self, timeout_s: float = 60) -> SwapReport:
        """Flip every replica back to the previous version, which they keep loaded.

        Rolling back twice returns to where you started.

        Raises:
            SwapError: there is no previous version, or the replicas did not flip in time.

        Example:
            >>> svc.rollback().version  # doctest: +SKIP
            1
        """
        client = self._client(required=True)
        previous = client.snapshot().previous
        if previous is None:
            raise SwapError(
                f"App {self.app} has no previous version to roll back to",
                fix="swap() a second version in first",
            )
        return run_swap(client, previous, kind="rollback", rollout=None, timeout_s=timeout_s)

    # ----- status / predict ---------------------------------------------------------------------------

    def figures(self) -> dict[Version, VersionFigures]:
        """Each version's live figures (requests, model errors, p50, p99) summed over the live replicas.

        Replicas count from their start and send their figures with every heartbeat (about once a second).

        Example:
            >>> svc.figures()[2].p99_ms  # doctest: +SKIP
            7.0
        """
        snap = self._snapshot() if ray.is_initialized() else None
        if snap is None:
            return {}
        return {version: counts.figures(version) for version, counts in snap.counters.items()}

    def status(self) -> ServiceStatus:
        """The app's Serve status and the board's snapshot (None without a board).

        Example:
            >>> svc.status().board.active  # doctest: +SKIP
            ModelRef(version=2, uri='/artifacts/sales/2')
        """
        board = self._snapshot() if ray.is_initialized() else None
        return ServiceStatus(app=self.app, url=self.url, serve_status=self._app_status(), board=board)

    def predict(
        self, rows: list[dict[str, Any]], timeout_s: float = 30, *, token: str | None = None
    ) -> dict[str, Any]:
        """POST rows to the app over HTTP (with ``token`` as bearer); returns ``{"version": v, "predictions": [...]}``.

        Raises:
            ServiceError: the app answered with an error status, or could not be reached.

        Example:
            >>> svc.predict([{"x": 1.0}, {"x": 2.0}])  # doctest: +SKIP
            {'version': 2, 'predictions': [0.5, 0.7]}
        """
        try:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = self._http.post(self.url, json={"rows": rows}, timeout=timeout_s, headers=headers)
        except requests.RequestException as exc:
            raise ServiceError(f"Could not reach {self.url}: {exc}", fix="deploy() the app first") from None
        if response.status_code != 200:
            try:
                detail = response.json().get("message", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            raise ServiceError(f"{self.url} answered {response.status_code}: {detail}")
        return response.json()

    # ----- internals ----------------------------------------------------------------------------------

    def _lookup(self) -> Any:
        """The board's handle (cached), or None when there is no board."""
        if self._handle is None:
            try:
                self._handle = ray.get_actor(self.board_name, namespace=NAMESPACE)
            except ValueError:
                return None
        return self._handle

    def _client(
        self, *, create: bool = False, required: bool = False, policy: AccessPolicy | None = None
    ) -> BoardClient:
        """A client of the board; ``create`` makes it when missing (born with ``policy``, if given)."""
        if create:
            options = board_options(self.app)
            self._handle = VersionBoard.options(**options).remote(self.app, policy=policy)  # type: ignore[attr-defined]
        elif required and self._snapshot() is None:  # also drops a cached handle of a board that died
            raise ServiceError(f"App {self.app} has no version board", fix="deploy() it first")
        if self._lookup() is None:
            raise ServiceError(f"App {self.app} has no version board", fix="deploy() it first")
        return BoardClient(self._handle, self.app, self.fence)

    def _snapshot(self) -> BoardSnapshot | None:
        """The board's snapshot, or None when it is missing (a dead cached handle is looked up again)."""
        for _ in range(2):
            handle = self._lookup()
            if handle is None:
                return None
            try:
                return BoardClient(handle, self.app).snapshot()
            except RayActorError:
                self._handle = None
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


def _version(model: ModelRef | None) -> str:
    return "none" if model is None else str(model.version)


def _require_ray() -> None:
    if not ray.is_initialized():
        raise ServiceError(
            "Ray is not running in this process", fix="start it first: LocalRay(Settings.from_env()).start()"
        )
