"""The Python SDK: submit JobSpecs, publish events, watch runs, list models, predict."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests

from streamtune.config.jobspec import JobSpec, load_jobspec
from streamtune.config.settings import Settings
from streamtune.errors import StreamtuneError, SwapError
from streamtune.events.schema import DataArrival
from streamtune.registry import Registry, open_registry
from streamtune.registry.records import ModelVersion, RunRecord, RunStatus

TERMINAL = {RunStatus.PROMOTED, RunStatus.REJECTED, RunStatus.FAILED}


class Client:
    """Talks to one streamtune installation: its registry, its Kafka and its Serve apps.

    ``Client.local()`` starts everything embedded (a local Kafka broker, a local Ray with Serve, and the
    controller in a background thread); ``Client(settings)`` joins services started by ``streamtune up``.

    Example:
        >>> client = Client.local()                              # doctest: +SKIP
        >>> client.submit("configs/demo.yaml")                   # doctest: +SKIP
        >>> client.publish([DataArrival(dataset="sales", uris=["/data/p0.parquet"], num_rows=2000)])
        ...                                                      # doctest: +SKIP
        >>> run = client.wait(spec="sales-gbdt")                 # doctest: +SKIP
        >>> client.predict("sales", [{"price": 3.0, "promo": 1, "temp": 21.0, "weekday": 2, "region": 1}])
        ...                                                      # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None, *, registry: Registry | None = None,
                 bootstrap: str | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry or open_registry(self.settings.registry_url)
        self.bootstrap = bootstrap or self.settings.kafka_bootstrap or f"127.0.0.1:{self.settings.kafka_port}"
        self._producer: Any = None
        self._closers: list[Callable[[], None]] = []
        self.controller: Any = None
        self._hub_joined: Any = None

    @classmethod
    def local(cls, settings: Settings | None = None, *, controller: bool = True) -> Client:
        """Start a local Kafka, a local Ray with Serve and the controller, all embedded in this process."""
        from streamtune.controller import Controller
        from streamtune.dev.kafka import LocalKafka
        from streamtune.dev.ray import LocalRay
        from streamtune.sweeps.jobs_api import RayJobRunner

        settings = settings or Settings.from_env()
        kafka = LocalKafka(settings)
        bootstrap = kafka.start()
        ray_ = LocalRay(settings)
        try:
            ray_.start()
        except BaseException:
            kafka.stop()
            raise
        client = cls(settings, bootstrap=bootstrap)
        client._closers += [kafka.stop, ray_.stop]
        if controller:
            ctrl = Controller(settings, client.registry, bootstrap=bootstrap, jobs=RayJobRunner(ray_.jobs_url))
            ctrl.start()
            client.controller = ctrl
            client._closers.append(ctrl.stop)
        return client

    def submit(self, spec: JobSpec | str | Path) -> JobSpec:
        """Register a JobSpec (object or YAML path); the controller starts watching its topic."""
        if not isinstance(spec, JobSpec):
            spec = load_jobspec(spec)
        self.registry.put_spec(spec.name, spec.model_dump(mode="json"))
        return spec

    def publish(self, events: Iterable[DataArrival], topic: str | None = None) -> list[tuple[int, int]]:
        """Send data-arrival events to Kafka; returns (partition, offset) per event."""
        from streamtune.events.producer import EventProducer

        if self._producer is None:
            self._producer = EventProducer(self.bootstrap)
        return self._producer.publish(list(events), topic or self.settings.events_topic)

    def runs(self, spec: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs, newest first."""
        return self.registry.list_runs(spec, limit=limit)

    def run(self, run_id: str) -> RunRecord | None:
        """One run."""
        return self.registry.get_run(run_id)

    def wait(self, run_id: str | None = None, *, spec: str | None = None, event_ids: Iterable[str] = (),
             timeout_s: float = 600, on_change: Callable[[RunRecord], None] | None = None) -> RunRecord:
        """Wait for a run to finish (promoted, rejected or failed).

        Name the run by ``run_id``, or by the ``event_ids`` it must contain, or take the newest run of
        ``spec``. ``on_change`` is called with the run each time its status changes (for progress).
        """
        wanted = set(event_ids)
        deadline = time.monotonic() + timeout_s
        last: RunStatus | None = None
        while time.monotonic() < deadline:
            run = self._find(run_id, spec, wanted)
            if run is not None and run.status != last:
                last = run.status
                if on_change:
                    on_change(run)
            if run is not None and run.status in TERMINAL:
                return run
            time.sleep(0.25)
        raise StreamtuneError(f"run {run_id or spec or sorted(wanted)[:3]} did not finish within {timeout_s:.0f}s",
                              fix="check `streamtune runs` and the logs under STREAMTUNE_HOME/logs")

    def _find(self, run_id: str | None, spec: str | None, wanted: set[str]) -> RunRecord | None:
        if run_id:
            return self.registry.get_run(run_id)
        for run in self.registry.list_runs(spec, limit=50):
            if not wanted or wanted & set(run.event_ids):
                return run
        return None

    def models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions."""
        return self.registry.list_models(name)

    def champion(self, name: str) -> ModelVersion | None:
        """The version the champion alias points at."""
        return self.registry.get_alias(name, "champion")

    def promote(self, name: str, version: int) -> dict[str, Any]:
        """Hot-swap a registered version into serving and make it champion; returns the swap report."""
        mv = self.registry.get_model(name, version)
        if mv is None:
            raise SwapError(f'Got "{version}" for version of model {name}; no such version is registered')
        spec = JobSpec.model_validate(self.registry.get_spec(name) or {})
        report = self._hub().swap(spec, mv.version, mv.artifact_uri)
        self.registry.set_alias(name, "champion", mv.version, reason="promoted by hand")
        return report

    def rollback(self, name: str) -> dict[str, Any]:
        """Swap back to the previous champion."""
        history = [e for e in self.registry.alias_history(name, "champion") if e.version is not None]
        if len(history) < 2 or history[-1].previous is None:
            raise SwapError(f"model {name} has no previous champion to roll back to")
        return self.promote(name, history[-1].previous)

    def _hub(self) -> Any:
        """The serving hub: the embedded controller's, or one joined to the cluster of ``streamtune up``."""
        if self.controller is not None:
            return self.controller.advancer.services
        if self._hub_joined is None:
            from streamtune.controller import ServeHub
            from streamtune.dev.ray import LocalRay

            settings = self.settings
            if settings.ray_address is None:
                settings = settings.model_copy(update={"ray_address": f"127.0.0.1:{settings.ray_port}"})
            LocalRay(settings).start()
            self._hub_joined = ServeHub(self.settings)
        return self._hub_joined

    def predict(self, app: str, rows: list[dict[str, Any]], timeout_s: float = 10) -> dict[str, Any]:
        """POST rows to the Serve app; returns {"version": ..., "predictions": [...]}."""
        url = f"http://127.0.0.1:{self.settings.serve_port}/{app}"
        resp = requests.post(url, json={"rows": rows}, timeout=timeout_s)
        if resp.status_code != 200:
            raise StreamtuneError(f"predict on {url} answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def close(self) -> None:
        """Stop what :meth:`local` started, newest first."""
        closers = ([self._producer.close] if self._producer else []) + self._closers[::-1]
        self._producer, self._closers = None, []
        for closer in closers:
            try:
                closer()
            except Exception:  # closing is best effort; one failure must not leave the rest running
                pass
        self.registry.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
