"""The Python SDK: the control-plane interface, embedded (``Client.local()``) or beside the registry.

Every change (submit, promote, rollback, cancel, run now, pause, resume) is a command the active controller
carries out and records with who asked and why; the methods wait for its outcome and raise
:class:`~streamtune.errors.CommandFailed` with the controller's reason if it failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from streamtune.config.jobspec import JobSpec
from streamtune.config.settings import Settings
from streamtune.control.base import ControlPlane
from streamtune.control.local import LocalControlPlane
from streamtune.control.records import ControlStatus, Prediction, PublishedEvent, RunLogs
from streamtune.errors import ServiceError
from streamtune.events.schema import DataArrival
from streamtune.registry.commands import Command, CommandRecord
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord

log = logging.getLogger(__name__)


class Client(ControlPlane):
    """Talks to one streamtune installation through its control plane.

    ``Client(url, token=...)`` talks to a running platform's HTTP API from any machine (it never opens the
    registry or joins Ray); so does ``Client()`` when ``STREAMTUNE_URL`` is set. ``Client.local()`` starts
    everything embedded (a local Kafka broker, a local Ray with Serve, and a controller in a background thread);
    ``Client(settings)`` without a URL works beside the registry of ``settings.home``.

    Args:
        url: The platform's API (default: ``settings.url``, i.e. ``STREAMTUNE_URL``).
        token: Its bearer token (default: ``settings.token``, i.e. ``STREAMTUNE_TOKEN``).
        settings: Where things are (default: from ``STREAMTUNE_*``).
        control: The control plane to use instead of either.
        actor: Who asks, recorded with each command (with tokens, the platform records the token's owner).

    Example:
        >>> import tempfile
        >>> client = Client(Settings(home=tempfile.mkdtemp()))
        >>> client.runs(), client.status().controller
        ([], None)
        >>> client.close()
        >>> client = Client.local()                              # doctest: +SKIP
        >>> client.submit("configs/demo.yaml").outcome.message   # doctest: +SKIP
        'spec sales-gbdt stored: watching topic streamtune.data for dataset sales'
        >>> client.publish([DataArrival(dataset="sales", uris=["/data/p0.parquet"], num_rows=2000)])
        ...                                                      # doctest: +SKIP
        >>> run = client.wait(spec="sales-gbdt")                 # doctest: +SKIP
        >>> client.promote("sales-gbdt", 1, reason="known good").outcome.swap.flip_s  # doctest: +SKIP
        0.012
    """

    def __init__(self, url: str | Settings | None = None, *, token: str | None = None,
                 settings: Settings | None = None, control: ControlPlane | None = None,
                 actor: str | None = None) -> None:
        if isinstance(url, Settings):  # Client(settings): the settings' URL if any, else beside the registry
            settings, url = url, None
        self.settings = settings or Settings.from_env()
        self.control = control or _control_for(self.settings, url, token, actor)
        super().__init__(actor=self.control.actor, command_timeout_s=self.control.command_timeout_s)
        self.controller: Any = None
        self.api_url: str | None = None
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def local(cls, settings: Settings | None = None, *, controller: bool = True, api: bool = True) -> Client:
        """Start a local Kafka, a local Ray with Serve and a controller, all embedded in this process.

        With ``settings.kafka_bootstrap`` or ``settings.ray_address`` set, those are used instead of starting
        them. Local mode: no tokens, and the controller's API (if ``api`` and its port is free) listens on
        127.0.0.1 only. Everything started here stops on :meth:`close`.
        """
        from streamtune.controller import Controller
        from streamtune.embedded import LocalKafka, LocalRay

        settings = (settings or Settings.from_env()).model_copy(update={"auth": "none", "url": None})
        kafka = LocalKafka(settings)
        kafka.start()
        ray_ = LocalRay(settings)
        try:
            ray_.start()
        except BaseException:
            kafka.stop()
            raise
        client = cls(settings=settings)
        client._closers += [kafka.stop, ray_.stop]
        if controller:
            ctrl = Controller(settings)
            ctrl.start()
            client.controller = ctrl
            client._closers.append(ctrl.stop)
            if api:
                client._start_api(settings, ctrl)
        return client

    def _start_api(self, settings: Settings, ctrl: Any) -> None:
        from streamtune.api.server import start_api

        try:
            server = start_api(settings, is_active=lambda: ctrl.active, events=ctrl.events)
        except ServiceError as exc:  # the embedded client does not need its API; say why it is not there
            log.warning("the local API is not running: %s", exc.headline)
            return
        self.api_url = server.url
        self._closers.append(server.stop)

    # -- the control plane's primitives, forwarded ---------------------------------------------------

    def specs(self) -> list[SpecRecord]:
        return self.control.specs()

    def runs(self, spec: str | None = None, status: RunStatus | str | list[RunStatus | str] | None = None,
             limit: int = 50) -> list[RunRecord]:
        return self.control.runs(spec, status, limit)

    def find_run(self, run_id: str) -> RunRecord | None:
        return self.control.find_run(run_id)

    def models(self, name: str | None = None) -> list[ModelVersion]:
        return self.control.models(name)

    def champion(self, name: str) -> ModelVersion | None:
        return self.control.champion(name)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        return self.control.alias_history(name, alias)

    def commands(self, limit: int = 50) -> list[CommandRecord]:
        return self.control.commands(limit)

    def find_command(self, command_id: str) -> CommandRecord | None:
        return self.control.find_command(command_id)

    def status(self) -> ControlStatus:
        return self.control.status()

    def append(self, command: Command, *, reason: str = "", actor: str | None = None) -> CommandRecord:
        return self.control.append(command, reason=reason, actor=actor)

    def publish(self, events: Iterable[DataArrival], topic: str | None = None) -> list[PublishedEvent]:
        return self.control.publish(events, topic)

    def predict(self, name: str, rows: list[dict[str, Any]], timeout_s: float = 10) -> Prediction:
        return self.control.predict(name, rows, timeout_s)

    def job_logs(self, run: RunRecord, attempt: int) -> RunLogs:
        return self.control.job_logs(run, attempt)

    def ship_code(self, spec: JobSpec) -> JobSpec:
        return self.control.ship_code(spec)

    # -- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop what :meth:`local` started, newest first, and release connections."""
        closers, self._closers = [self.control.close, *self._closers[::-1]], []
        for closer in closers:
            try:
                closer()
            except Exception:  # closing is best effort; one failure must not leave the rest running
                pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _control_for(settings: Settings, url: str | None, token: str | None, actor: str | None) -> ControlPlane:
    url = url or settings.url
    if not url:
        return LocalControlPlane(settings, actor=actor)
    from streamtune.control.http import HttpControlPlane

    token = token or (settings.token.get_secret_value() if settings.token else None)
    return HttpControlPlane(url, token, actor=actor, command_timeout_s=settings.command_timeout)
