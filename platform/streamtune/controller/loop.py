"""The controller: consume → trigger → submit → gate → promote → swap, in one loop that can resume."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streamtune.config.jobspec import JobSpec
from streamtune.config.settings import Settings
from streamtune.controller.ingest import Ingestor
from streamtune.controller.runs import RunAdvancer
from streamtune.errors import StreamtuneError
from streamtune.events.source import EventSource, KafkaEventSource
from streamtune.registry.base import Registry
from streamtune.sweeps.jobs_api import RayJobRunner

log = logging.getLogger(__name__)


class ServeHub:
    """One :class:`~streamtune.serving.ModelService` per JobSpec, deployed on its first promotion."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.apps: dict[str, Any] = {}

    def service(self, spec: JobSpec) -> Any:
        """The spec's serving app, deployed if needed."""
        from streamtune.serving import ModelService

        svc = self.apps.get(spec.name)
        if svc is None:
            svc = ModelService(spec.serve.app, spec.serve, spec.job.entrypoint, spec.code_dir(),
                               self.settings.serve_port)
            svc.deploy()
            self.apps[spec.name] = svc
        return svc

    def swap(self, spec: JobSpec, version: int, artifact_uri: str) -> dict[str, Any]:
        """Hot-swap ``spec``'s app to ``version``."""
        return self.service(spec).swap(version, artifact_uri).model_dump()


class Controller:
    """Runs the flow for every JobSpec stored in the registry. It is the only writer of run state.

    Example:
        >>> ctrl = Controller(settings, registry, bootstrap="127.0.0.1:19092",
        ...                   jobs=RayJobRunner("http://127.0.0.1:8265"))  # doctest: +SKIP
        >>> ctrl.start()                                                   # doctest: +SKIP
    """

    def __init__(self, settings: Settings, registry: Registry, *, bootstrap: str, jobs: RayJobRunner,
                 services: Any | None = None, poll_s: float = 0.5) -> None:
        self.settings = settings
        self.registry = registry
        self.bootstrap = bootstrap
        self.poll_s = poll_s
        self.ingestor = Ingestor(registry, settings.consumer_group, inline_dir=f"{settings.artifact_root}/inline")
        self.advancer = RunAdvancer(registry, jobs, services or ServeHub(settings), settings.artifact_root)
        self.source: EventSource | None = None
        self._topics: tuple[str, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def specs(self) -> dict[str, JobSpec]:
        """The JobSpecs submitted so far."""
        return {d["name"]: JobSpec.model_validate(d) for d in self.registry.list_specs()}

    def step(self) -> None:
        """One turn of the loop."""
        specs = self.specs()
        source = self._source(specs)
        if source is not None:
            self.ingestor.step(source, specs, poll_s=self.poll_s)
        else:
            time.sleep(self.poll_s)
        self.advancer.step(specs)

    def _source(self, specs: dict[str, JobSpec]) -> EventSource | None:
        topics = tuple(sorted({s.trigger.topic for s in specs.values()}))
        if topics != self._topics:
            if self.source is not None:
                self.source.close()
            self.source = None
            if topics:
                from streamtune.dev.kafka import ensure_topic

                for topic in (*topics, self.settings.dead_letter_topic):
                    ensure_topic(self.bootstrap, topic)
                self.source = KafkaEventSource(
                    self.bootstrap, list(topics), self.settings.consumer_group,
                    start_offsets=self.ingestor.offsets, dead_letter_topic=self.settings.dead_letter_topic,
                )
            self._topics = topics
        return self.source

    def run_forever(self) -> None:
        """Loop until :meth:`stop`; errors are logged and the loop goes on."""
        while not self._stop.is_set():
            try:
                self.step()
                self.last_error = None
            except StreamtuneError as exc:
                self.last_error = exc.headline
                log.error("controller step failed: %s", exc)
                time.sleep(1.0)
            except Exception as exc:  # keep the loop alive; the traceback goes to the log
                self.last_error = f"internal error: {exc}"
                log.exception("controller step failed")
                time.sleep(1.0)

    def start(self) -> None:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self.run_forever, name="streamtune-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and close the event source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.source is not None:
            self.source.close()
            self.source = None
