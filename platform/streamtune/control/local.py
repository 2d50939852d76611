"""The control plane beside the registry: reads from it, appends commands to it, talks to Kafka and Serve.

Example:
    >>> import tempfile
    >>> from streamtune.config.settings import Settings
    >>> cp = LocalControlPlane(Settings(home=tempfile.mkdtemp()))
    >>> cp.specs(), cp.status().controller
    ([], None)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import requests

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.settings import Settings
from streamtune.control.base import ControlPlane
from streamtune.control.records import (
    ControllerStatus,
    ControlStatus,
    Prediction,
    PublishedEvent,
    RunLogs,
    SpecStatus,
)
from streamtune.controller.lease import LEASE_NAME
from streamtune.errors import NotFoundError, ServiceError
from streamtune.events.schema import DataArrival
from streamtune.registry import open_registry
from streamtune.registry.base import Registry
from streamtune.registry.commands import Command, CommandRecord, CommandStatus
from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
from streamtune.registry.urls import mask_url
from streamtune.sweeps.progress import SweepProgress, read_progress, run_out_uri

_ACTIVE: list[RunStatus | str] = [RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.SUCCEEDED]


class LocalControlPlane(ControlPlane):
    """The control plane for a caller that can open the registry database (same machine or network).

    It writes nothing but commands: specs, runs, aliases and serving change only when the active controller
    carries those out.

    Args:
        settings: Where the registry, Kafka and Serve are.
        registry: An open registry to read from (default: opened from ``settings.registry_url``).
        actor: Who asks, recorded with each command.
    """

    def __init__(self, settings: Settings, *, registry: Registry | None = None, actor: str | None = None) -> None:
        super().__init__(actor=actor, command_timeout_s=settings.command_timeout)
        self.settings = settings
        self.registry = registry or open_registry(settings.registry_url)
        self._producer: Any = None
        self._http = requests.Session()

    # -- reads ---------------------------------------------------------------------------------------

    def specs(self) -> list[SpecRecord]:
        return self.registry.list_specs()

    def runs(self, spec: str | None = None, status: RunStatus | str | list[RunStatus | str] | None = None,
             limit: int = 50) -> list[RunRecord]:
        return self.registry.list_runs(spec, status=status, limit=limit)

    def find_run(self, run_id: str) -> RunRecord | None:
        return self.registry.get_run(run_id)

    def models(self, name: str | None = None) -> list[ModelVersion]:
        return self.registry.list_models(name)

    def champion(self, name: str) -> ModelVersion | None:
        return self.registry.get_alias(name, "champion")

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        return self.registry.alias_history(name, alias)

    def commands(self, limit: int = 50) -> list[CommandRecord]:
        return self.registry.list_commands(limit=limit)

    def find_command(self, command_id: str) -> CommandRecord | None:
        return self.registry.get_command(command_id)

    def status(self) -> ControlStatus:
        lease = self.registry.get_lease(LEASE_NAME)
        now = time.time()
        controller = None if lease is None else ControllerStatus(
            holder=lease.holder, token=lease.token, active=not lease.expired(now), acquired_at=lease.acquired_at,
            expires_in_s=round(lease.expires_at - now, 3),
        )
        pending = self.registry.list_commands([CommandStatus.PENDING, CommandStatus.RUNNING], limit=10_000)
        return ControlStatus(controller=controller, specs=[self._spec_status(r) for r in self.specs()],
                             pending_commands=len(pending), registry=mask_url(self.settings.registry_url))

    def _spec_status(self, record: SpecRecord) -> SpecStatus:
        spec = record.spec
        active = self.registry.list_runs(spec.name, status=_ACTIVE, limit=1)
        champion = self.champion(spec.name)
        return SpecStatus(
            name=spec.name, dataset=spec.dataset.name, topic=spec.trigger.topic, app=spec.serve.app,
            paused=record.paused, champion=champion.version if champion else None,
            active_run=active[0].run_id if active else None, active_status=active[0].status.value if active else None,
            pending_runs=(pending := self.registry.count_runs(spec.name, RunStatus.PENDING)),
            queue_depth=pending + (1 if active else 0), state=record.state, error=record.error,
            failures=record.failures, retry_at=record.retry_at,
        )

    def sweep_progress(self, run: RunRecord) -> SweepProgress | None:
        """Read ``progress.json`` from the run's folder in the artifact store."""
        store = ArtifactStore.from_settings(self.settings)
        return read_progress(run_out_uri(store, run.spec_name, run.run_id))

    def job_logs(self, run: RunRecord, attempt: int) -> RunLogs:
        """Read the attempt's log from the Ray Jobs API at ``settings.jobs_url``."""
        from streamtune.sweeps.jobs_api import RayJobRunner

        submission_id = run.model_copy(update={"attempt": attempt}).submission_id
        text = RayJobRunner(self.settings.jobs_url).logs(submission_id)
        error = next((a.error for a in run.attempts if a.attempt == attempt), None)
        if error is None and attempt == run.attempt and run.status == RunStatus.FAILED:
            error = run.error
        return RunLogs(run_id=run.run_id, attempt=attempt, submission_id=submission_id, error=error, text=text)

    # -- changes: commands only ----------------------------------------------------------------------

    def append(self, command: Command, *, reason: str = "", actor: str | None = None) -> CommandRecord:
        return self.registry.append_command(command, actor=actor or self.actor, reason=reason)

    # -- data plane ----------------------------------------------------------------------------------

    def publish(self, events: Iterable[DataArrival], topic: str | None = None) -> list[PublishedEvent]:
        from streamtune.events.producer import EventProducer

        if self._producer is None:
            self._producer = EventProducer(self.settings.bootstrap)
        batch = list(events)
        topic = topic or self.settings.events_topic
        landed = self._producer.publish(batch, topic)
        return [PublishedEvent(event_id=e.event_id, topic=topic, partition=p, offset=o)
                for e, (p, o) in zip(batch, landed, strict=True)]

    def predict(self, name: str, rows: list[dict[str, Any]], timeout_s: float = 10, *,
                authorization: str | None = None) -> Prediction:
        """POST rows to the model's Serve app; ``authorization`` is passed on (the API forwards its caller's)."""
        url = self.settings.serve_url(self._app(name))
        headers = {"authorization": authorization} if authorization else {}
        try:
            response = self._http.post(url, json={"rows": rows}, timeout=timeout_s, headers=headers)
        except requests.RequestException as exc:
            raise ServiceError(f"Could not reach {url}: {exc}", fix="is serving up? see `streamtune status`") from None
        if response.status_code != 200:
            try:
                body = response.json()
                detail = body.get("message") or body.get("error") or response.text
            except (ValueError, AttributeError):
                detail = response.text
            raise ServiceError(f"{url} answered {response.status_code}: {str(detail)[:300]}")
        return Prediction.model_validate(response.json())

    def _app(self, name: str) -> str:
        specs = self.specs()
        for record in specs:
            if record.name == name:
                return record.spec.serve.app
        for record in specs:
            if record.spec.serve.app == name:
                return name
        known = ", ".join(r.name for r in specs) or "none"
        raise NotFoundError(f'Got "{name}" for model; no spec or Serve app of that name (models: {known})')

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        self.registry.close()
