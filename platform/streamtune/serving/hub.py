"""ServeHub: the controller's door to serving, one :class:`ModelService` per JobSpec.

The hub joins Ray lazily (through the ``connect`` callable it is given) and passes its ``fence`` to every
service, so a controller that lost its lease cannot move serving. It also keeps the platform's
:class:`AccessPolicy` (the active API tokens' hashes, request limits): :meth:`ServeHub.set_policy` pushes it to
every board it has made, and each deploy, ensure or swap brings it to a new or remade board first.

Example:
    >>> hub = ServeHub(8000, connect=lambda: None)
    >>> hub.fence = 7
    >>> hub.fence
    7
    >>> hub.policy.required
    False
    >>> hub.ensure(spec, ModelRef(version=3, uri="/artifacts/sales/3")).action  # doctest: +SKIP
    'none'
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from streamtune.config.jobspec import JobSpec, RolloutSpec
from streamtune.errors import ConfigError
from streamtune.serving.records import (
    AccessPolicy,
    EnsureResult,
    InputSchema,
    ModelRef,
    ServiceStatus,
    StaleFenceError,
    SwapReport,
    Version,
    VersionFigures,
)
from streamtune.serving.service import ModelService

__all__ = ["ServeHub"]


class ServeHub:
    """One :class:`ModelService` per JobSpec, made on first use and remade when its serving settings change.

    Args:
        serve_port: Port of Serve's HTTP proxy.
        connect: Joins Ray and starts Serve's proxy; called once, just before the hub first needs Ray.
        policy: The access policy every app enforces (default: open, for a platform without authentication).

    Example:
        >>> hub = ServeHub(8123, connect=lambda: None)
        >>> hub.swap(spec, ModelRef(version=2, uri="/artifacts/sales/2")).version  # doctest: +SKIP
        2
    """

    def __init__(
        self, serve_port: int, connect: Callable[[], None], *, policy: AccessPolicy | None = None
    ) -> None:
        self.serve_port = serve_port
        self._connect = connect
        self._connected = False
        self._lock = threading.Lock()
        self._fence = 0
        self._policy = policy or AccessPolicy()
        self._policy_lock = threading.Lock()
        self._services: dict[str, tuple[str, ModelService]] = {}
        self._checked: set[str] = set()

    @property
    def fence(self) -> int:
        """The controller's fence token, passed on every board write of every service."""
        return self._fence

    @fence.setter
    def fence(self, value: int) -> None:
        self._fence = value
        for _, svc in self._services.values():
            svc.fence = value

    @property
    def policy(self) -> AccessPolicy:
        """The access policy every app of this hub enforces; change it with :meth:`set_policy`."""
        return self._policy

    def set_policy(self, policy: AccessPolicy) -> list[str]:
        """Make every app enforce ``policy`` without a redeploy; returns the apps whose boards changed.

        Every service the hub has made keeps it, so a board made later is born with it; boards that exist
        get it now (replicas apply it within one board round trip). Before the hub first needs Ray it only
        keeps the policy: the first ensure or swap of each app brings it.

        Raises:
            StaleFenceError: a board has seen a newer controller (raised after trying every app); otherwise the
                first other error, also after trying every app.

        Example:
            >>> hub = ServeHub(8123, connect=lambda: None)
            >>> hub.set_policy(AccessPolicy(required=True))
            []
            >>> hub.policy.required
            True
        """
        with self._policy_lock:
            self._policy = policy
            services = [svc for _, svc in self._services.values()]
            for svc in services:
                svc.policy = policy
        if not self._connected:
            return []
        changed: list[str] = []
        errors: list[Exception] = []
        for svc in services:
            try:
                if svc.set_policy(policy):
                    changed.append(svc.app)
            except Exception as exc:  # the other apps still get it (a revoked token must stop everywhere)
                errors.append(exc)
        if errors:
            raise next((e for e in errors if isinstance(e, StaleFenceError)), errors[0])
        return changed

    def service(self, spec: JobSpec) -> ModelService:
        """The spec's ModelService (cached per spec name; remade if its serving settings changed). No deploy.

        Example:
            >>> hub = ServeHub(8123, connect=lambda: None)
            >>> hub.service(spec) is hub.service(spec)  # doctest: +SKIP
            True
        """
        key = _key(spec)
        with self._policy_lock:  # a set_policy meanwhile reaches this service too
            cached = self._services.get(spec.name)
            if cached is not None and cached[0] == key:
                return cached[1]
            svc = ModelService(
                spec.serve.app, spec.serve, spec.job.entrypoint, _code_uri(spec), self.serve_port,
                fence=self._fence, policy=self._policy, input_schema=input_schema(spec),
            )
            self._services[spec.name] = (key, svc)
            self._checked.discard(spec.name)
        return svc

    def swap(self, spec: JobSpec, ref: ModelRef, rollout: RolloutSpec | None = None) -> SwapReport:
        """Hot-swap ``spec``'s app to ``ref``, deploying (or redeploying changed settings or code) first.

        Raises:
            SwapError: the swap was refused (a StaleFenceError when a newer controller owns the board).
            ServiceError: the app could not be deployed.
        """
        self._ensure_connected()
        svc = self.service(spec)
        svc.deploy()  # brings the service's policy (the hub's) to the board first
        self._checked.add(spec.name)
        return svc.swap(ref.version, ref.uri, rollout=rollout, manifest_sha256=ref.manifest_sha256)

    def ensure(self, spec: JobSpec, ref: ModelRef) -> EnsureResult:
        """Make ``spec``'s app serve ``ref`` (see :meth:`ModelService.ensure`).

        The first call for a spec (or after its serving settings changed) also checks the deploy fingerprint
        (settings and code), so a changed app is redeployed; later calls are cheap. The board is brought to the
        hub's policy first (action ``policy`` when that was all that changed).
        """
        self._ensure_connected()
        svc = self.service(spec)
        # The service keeps the hub's policy (set_policy updates it under a lock); passing it per call could
        # put back a policy that a set_policy on another thread has just replaced.
        result = svc.ensure(ref)
        if spec.name not in self._checked:
            redeployed = svc.deploy()  # same fingerprint: nothing happens; changed settings or code: roll
            self._checked.add(spec.name)
            if redeployed and result.action in ("none", "policy"):
                detail = f"{result.detail}; redeployed changed settings or code"
                result = result.model_copy(update={"action": "deployed", "detail": detail})
        return result

    def figures(self, spec: JobSpec) -> dict[Version, VersionFigures]:
        """Each version's live figures on ``spec``'s app (requests, model errors, p50, p99), over its replicas."""
        self._ensure_connected()
        return self.service(spec).figures()

    def status(self, spec: JobSpec) -> ServiceStatus:
        """Serve's status of ``spec``'s app and its board's snapshot."""
        self._ensure_connected()
        return self.service(spec).status()

    def _ensure_connected(self) -> None:
        with self._lock:
            if not self._connected:
                self._connect()
                self._connected = True


def input_schema(spec: JobSpec) -> InputSchema | None:
    """The feature columns a spec's endpoint requires: ``dataset.features`` (or the schema's columns but the label),
    typed by ``dataset.schema`` where it names them; None when the spec says neither.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> from streamtune.config.jobspec import ColumnSpec
        >>> schema = {"x": ColumnSpec(type="double"), "y": ColumnSpec(type="int64")}
        >>> input_schema(NS(dataset=NS(features=None, schema_=schema, label="y"))).columns
        {'x': 'double'}
        >>> input_schema(NS(dataset=NS(features=["a"], schema_=None, label="y"))).columns
        {'a': None}
    """
    dataset = spec.dataset
    schema = dataset.schema_ or {}
    names = dataset.features or [c for c in schema if c != dataset.label]
    if not names:
        return None
    return InputSchema(columns={n: schema[n].type if n in schema else None for n in names})


def _key(spec: JobSpec) -> str:
    """What makes a spec's ModelService: app, serving settings, entrypoint and code URI.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> from streamtune.config.jobspec import ServeSpec
        >>> spec = NS(serve=ServeSpec(app="a"), job=NS(entrypoint="m:J", code_uri="/code/1.zip"))
        >>> _key(spec) == _key(spec)
        True
    """
    text = "|".join([spec.serve.model_dump_json(), spec.job.entrypoint, str(spec.job.code_uri)])
    return hashlib.sha256(text.encode()).hexdigest()


def _code_uri(spec: JobSpec) -> str:
    if spec.job.code_uri is None:
        raise ConfigError(f"spec {spec.name} has no job.code_uri: submit it through the control plane, which "
                          "stores its code")
    return spec.job.code_uri
