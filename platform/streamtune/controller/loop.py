"""The controller: consume → trigger → submit → gate → promote → swap, as the one active controller.

Any number of controllers may run against one registry; one holds the lease and works, the others wait as
standbys and take over when it lapses. The active one fences its registry object and the serving boards
with its lease token, so a stale leader (paused, partitioned, slow to notice) can change nothing. On
election it reloads offsets and windows from the registry, takes its Kafka partitions itself (no group
rebalance), carries out pending commands and puts every champion back into service.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.settings import Settings
from streamtune.controller.commands import CommandExecutor
from streamtune.controller.health import SpecGuard, TopicBackoff, describe_error
from streamtune.controller.ingest import Ingestor, IngestStats
from streamtune.controller.lease import LeaseKeeper, new_holder_id
from streamtune.controller.ports import Jobs, Serving
from streamtune.controller.reconcile import ServingReconciler
from streamtune.controller.runs import RunAdvancer
from streamtune.data.uris import platform_roots
from streamtune.errors import ConfigError, FencedError, StreamtuneError
from streamtune.events.history import read_history
from streamtune.events.source import EventRecord, EventSource, KafkaEventSource
from streamtune.observe.bus import EventBus
from streamtune.observe.events import DriftDetected, drift_detected, ingest_progress
from streamtune.registry import open_registry
from streamtune.registry.base import Registry
from streamtune.registry.commands import CommandStatus, DeleteSpec, Replay
from streamtune.registry.records import Lease, SpecRecord
from streamtune.runtime.kafka import ensure_topic
from streamtune.serving.records import AccessPolicy
from streamtune.sweeps.checks import SpecChecks
from streamtune.triggers.base import default_triggers
from streamtune.triggers.drift import DegradationTrigger, DriftTrigger, Scorer, WindowMonitor

log = logging.getLogger(__name__)

TOPIC_TIMEOUT_S = 10.0
"""How long the controller waits for Kafka to create a spec's topic before it backs that topic off."""


def _serving_for(settings: Settings) -> Serving:
    from streamtune.runtime.ray import join_ray, start_serve_proxy
    from streamtune.serving.hub import ServeHub

    def connect() -> None:
        join_ray(settings)
        start_serve_proxy(settings)

    return ServeHub(settings.serve_port, connect=connect)


def _checks_for(settings: Settings) -> SpecChecks | None:
    if not settings.submit_checks:
        log.warning("submitted specs are not checked against their job (STREAMTUNE_SUBMIT_CHECKS=false)")
        return None
    from streamtune.runtime.ray import join_ray
    from streamtune.sweeps.checks import RaySpecChecker

    return RaySpecChecker(connect=lambda: join_ray(settings))


def drift_detected_run(registry: Registry, run_id: str) -> DriftDetected | None:
    """The DriftDetected event of a new run, if the drift trigger started it."""
    return drift_detected(registry.get_run(run_id))


def _scorer_for(settings: Settings) -> Scorer:
    from streamtune.runtime.ray import join_ray
    from streamtune.validation.live import RayChampionScorer

    return RayChampionScorer(connect=lambda: join_ray(settings))


def _ingest_counts(ingestor: Ingestor) -> dict[str, int]:
    """The ingestor's counters, for the ingest-progress event (none from a stand-in without them)."""
    stats = getattr(ingestor, "stats", None)
    return stats.as_dict() if isinstance(stats, IngestStats) else {}


def _jobs_for(settings: Settings) -> Jobs:
    from streamtune.sweeps.jobs_api import RayJobRunner

    return RayJobRunner(settings.jobs_url)


class Controller:
    """One controller process (or thread): a standby until it holds the lease, then the single writer.

    Args:
        settings: Where the registry, Kafka and Ray are, and the lease and loop timings.
        registry: The registry object to use; it gets fenced, so give the controller its own (default: opened
            from ``settings.registry_url``).
        jobs: Where sweeps run (default: the Ray Jobs API at ``settings.jobs_url``).
        services: Serving (default: a ServeHub that joins Ray when first needed).
        holder: This controller's id in the lease (default: ``host:pid:nonce``).
        checks: Checks of a submitted spec against its job (default: a Ray task per submit, see
            :class:`~streamtune.sweeps.checks.RaySpecChecker`, when ``jobs`` is the real Ray Jobs API; none when
            a ``jobs`` port is given, as unit tests do).
        scorer: Scores the champion on a labelled window for the degradation trigger (default: a Ray task with
            the job's code, see :class:`~streamtune.validation.live.RayChampionScorer`, when ``jobs`` is the
            real Ray Jobs API and submit checks are on; none otherwise).

    Example:
        >>> ctrl = Controller(Settings.from_env())  # doctest: +SKIP
        >>> ctrl.start(); ctrl.wait_until_active(30)   # doctest: +SKIP
        True
    """

    def __init__(self, settings: Settings, *, registry: Registry | None = None, jobs: Jobs | None = None,
                 services: Serving | None = None, holder: str | None = None,
                 checks: SpecChecks | None = None, scorer: Scorer | None = None) -> None:
        self.settings = settings
        self.registry = registry or open_registry(settings.registry_url)
        self.holder = holder or new_holder_id()
        self.services = services or _serving_for(settings)
        self.jobs = jobs or _jobs_for(settings)
        self.keeper = LeaseKeeper(self.registry, self.holder, settings.lease_ttl)
        self.store = ArtifactStore.from_settings(settings)
        self.data_roots = platform_roots(self.store.root, settings.home)
        self.events = EventBus.from_settings(settings)  # counters for /metrics, webhooks (streamtune.observe)
        self.advancer = RunAdvancer(self.registry, self.jobs, self.services, self.store, data_roots=self.data_roots,
                                    events=self.events)
        self.commands = CommandExecutor(self.registry, self.jobs, self.services, self.holder, self.store,
                                        promotions=self.advancer.promotions, events=self.events,
                                        checks=checks if checks is not None or jobs is not None
                                        else _checks_for(settings),
                                        history=self._read_history, platform_roots=self.data_roots)
        self.reconciler = ServingReconciler(self.registry, self.services)
        self.guard = SpecGuard(self.registry)
        if scorer is None and jobs is None and settings.submit_checks:
            scorer = _scorer_for(settings)
        self.monitor = WindowMonitor(self.registry, scorer=scorer)  # drift and degradation, off the ingest loop
        self.topic_backoff = TopicBackoff()
        self._code_ok: set[str] = set()  # job.code_uri values seen in the store
        self._dlq_ready = False
        self.ingestor: Ingestor | None = None
        self.source: EventSource | None = None
        self.lease: Lease | None = None
        self.elected_at: float | None = None
        self.last_error: str | None = None
        self._topics: tuple[str, ...] = ()
        self._next_reconcile = 0.0
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True while this controller holds the lease."""
        return self._active.is_set()

    def specs(self) -> dict[str, SpecRecord]:
        """The JobSpecs submitted so far, by name."""
        return {record.name: record for record in self.registry.list_specs()}

    # -- leadership --------------------------------------------------------------------------------

    def try_lead(self) -> bool:
        """Take the lease if it is free or lapsed, and become the active controller. True if active."""
        if self.active:
            return True
        lease = self.keeper.try_acquire()
        if lease is None:
            return False
        self.lease, self.elected_at = lease, time.time()
        self.registry.fence(lease)
        self.services.fence = lease.token
        self._apply_policy()  # before the first reconcile: a recreated board must come up closed
        self.ingestor = self._new_ingestor()
        self._topics, self._next_reconcile = (), 0.0
        self.topic_backoff, self._dlq_ready = TopicBackoff(), False
        self._active.set()
        log.info("controller %s is active (lease token %d)", self.holder, lease.token)
        return True

    def step_down(self, reason: str) -> None:
        """Stop acting as the active controller; the fence stays, so nothing it still tries gets written."""
        if not self.active:
            return
        log.warning("controller %s steps down: %s", self.holder, reason)
        self._active.clear()
        self.keeper.stop_renewing()
        self._close_source()
        self.lease = None

    # -- the loop ----------------------------------------------------------------------------------

    def step(self) -> None:
        """One turn of the active controller's loop.

        Commands first, then the spec list is read, then Kafka is polled: a spec whose ``submit`` has returned
        is in force for the very next poll. Each spec then advances in its own guarded turn
        (:class:`~streamtune.controller.health.SpecGuard`): one that fails is marked ``error`` and backs off
        while the others keep flowing. A failed ingest does not stop commands or runs either; it is raised at
        the end of the turn (logged, with a pause before the next one).
        """
        if self.keeper.lost:
            raise FencedError(f"lease lost: {self.keeper.lost_reason}")
        assert self.ingestor is not None
        finished = self.commands.step()
        if any(isinstance(c.command, DeleteSpec) and c.status == CommandStatus.SUCCEEDED for c in finished):
            self._reload_ingest()  # the deleted spec's open window is gone from the registry: drop it here too
        specs = self.specs()
        ingest_error: Exception | None = None
        try:
            source = self._source(specs)
            if source is not None:
                before = _ingest_counts(self.ingestor)
                inserted = self.ingestor.step(source, {n: r.spec for n, r in specs.items()},
                                              poll_s=self.settings.poll_interval)
                self.events.emit(ingest_progress(before, _ingest_counts(self.ingestor)))
                for run_id in inserted or ():  # webhooks and the drift counter hear of drift-triggered runs
                    self.events.emit(functools.partial(drift_detected_run, self.registry, run_id))
            else:
                time.sleep(self.settings.poll_interval)
        except FencedError:
            raise
        except Exception as exc:  # noqa: BLE001 -- commands and runs go on; raised again below
            ingest_error = exc
        self.advance(specs)
        if time.monotonic() >= self._next_reconcile:
            self._apply_policy()
            # a spec whose swap is in the promotion worker, or done but not yet recorded, is left alone: the
            # registry's champion moves only when the outcome is taken, and ensure() would swap it back
            swapping = self.advancer.promotions.running
            self.reconciler.step({n: r for n, r in specs.items() if swapping(n) is None})
            self._next_reconcile = time.monotonic() + self.settings.reconcile_interval
        if ingest_error is not None:
            raise ingest_error

    def advance(self, specs: dict[str, SpecRecord]) -> dict[str, str]:
        """Advance each spec's runs in its own guarded turn; returns the reasons of the specs that failed now.

        A spec backing off (``retry_at`` ahead) or watching a topic that fails is skipped; the others advance.
        """
        failed: dict[str, str] = {}
        bad_topics = self.topic_backoff.failing()
        for name, record in specs.items():
            if record.spec.trigger.topic in bad_topics or not self.guard.due(record):
                continue
            reason = self.guard.turn(record, functools.partial(self._advance_one, record))
            if reason is not None:
                failed[name] = reason
        return failed

    def _advance_one(self, record: SpecRecord) -> None:
        if not record.paused:  # a paused spec starts no run, so it needs no code yet
            self._check_code(record)
        self.advancer.step_spec(record)

    def _check_code(self, record: SpecRecord) -> None:
        """Refuse a spec whose job code is not in the store (each code URI is checked until found once)."""
        uri = record.spec.job.code_uri
        if uri is None:
            raise ConfigError(f"Got no job.code_uri for spec {record.name}; its job code was never stored",
                              fix="submit the spec again so its code is uploaded")
        if uri in self._code_ok:
            return
        if not self.store.exists(uri):
            raise ConfigError(f'Got "{uri}" for job.code_uri of spec {record.name}; nothing is stored there',
                              fix="submit the spec again so its code is uploaded")
        self._code_ok.add(uri)

    def _reload_ingest(self) -> None:
        assert self.ingestor is not None
        self._close_source()
        self.ingestor = self._new_ingestor()

    def _read_history(self, topic: str, command: Replay) -> Iterator[EventRecord]:
        """A replay's records: the topic from the command's start to its end now, on a consumer of its own."""
        return read_history(self.settings.bootstrap, topic, from_offset=command.from_offset,
                            from_time=command.from_time)

    def _new_ingestor(self) -> Ingestor:
        """An ingestor with every trigger: min_rows, max_wait, schedule, drift and degradation."""
        return Ingestor(self.registry, self.settings.consumer_group, self.store, platform_roots=self.data_roots,
                        triggers=default_triggers(DriftTrigger(self.monitor), DegradationTrigger(self.monitor)))

    def access_policy(self) -> AccessPolicy:
        """Who may call the model endpoints: the registry's active API tokens, unless in local mode."""
        return AccessPolicy(
            required=self.settings.auth == "token", max_body_bytes=self.settings.max_body_bytes,
            max_rows=self.settings.max_rows,
            token_sha256=tuple(sorted(t.token_sha256 for t in self.registry.list_tokens())),
        )

    def _apply_policy(self) -> None:
        policy = self.access_policy()
        if policy != self.services.policy:
            changed = self.services.set_policy(policy)
            log.info("model endpoint policy applied (%d token(s), required=%s) to %s", len(policy.token_sha256),
                     policy.required, ", ".join(changed) or "no running app yet")

    def _source(self, specs: dict[str, SpecRecord]) -> EventSource | None:
        """The consumer of the specs' topics, less those that fail; reopened when that set changes.

        A topic that cannot be created is left out: its specs are marked ``error`` with the reason and it is
        tried again after a backoff, while the other topics are consumed.
        """
        wanted = {r.spec.trigger.topic for r in specs.values()}
        self.topic_backoff.forget(wanted)
        usable = self.topic_backoff.usable(wanted)
        if tuple(usable) == self._topics and (self.source is not None or not usable):
            return self.source
        if usable and not self._dlq_ready:
            ensure_topic(self.settings.bootstrap, self.settings.dead_letter_topic)  # failing: the whole source
            self._dlq_ready = True
        topics = [t for t in usable if t in self._topics or self._topic_ready(t, specs)]
        if tuple(topics) != self._topics or self.source is None:
            self._close_source()
            if topics:
                assert self.ingestor is not None
                self.source = KafkaEventSource(
                    self.settings.bootstrap, topics, self.settings.consumer_group,
                    start_offsets=self.ingestor.offsets, dead_letter_topic=self.settings.dead_letter_topic,
                    assign=True,
                )
            self._topics = tuple(topics)
        return self.source

    def _topic_ready(self, topic: str, specs: dict[str, SpecRecord]) -> bool:
        """Create ``topic`` unless it exists; on failure mark its specs and back it off. True if usable."""
        try:
            ensure_topic(self.settings.bootstrap, topic, timeout_s=TOPIC_TIMEOUT_S)
        except FencedError:
            raise
        except Exception as exc:  # noqa: BLE001 -- one bad topic must not stop the others
            reason = f"topic {topic!r} cannot be consumed: {describe_error(exc)}"
            retry_at = self.topic_backoff.fail(topic, reason)
            log.error("%s; left out of the consumer, tried again in %.0fs", reason, retry_at - time.time())
            for record in specs.values():
                if record.spec.trigger.topic == topic:
                    self.guard.fail(record, reason, retry_at=retry_at)
            return False
        self.topic_backoff.ok(topic)
        return True

    def _close_source(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        self._topics = ()

    def run_forever(self) -> None:
        """Wait as a standby, or work as the active controller, until :meth:`stop`."""
        while not self._stop.is_set():
            if not self.active:
                if not self.try_lead():
                    self._stop.wait(min(0.5, self.settings.lease_ttl / 4))
                continue
            self._turn()

    def _turn(self) -> None:
        try:
            self.step()
            self.last_error = None
        except FencedError as exc:
            self.last_error = exc.headline
            self.step_down(exc.headline)
        except StreamtuneError as exc:
            self.last_error = exc.headline
            log.error("controller step failed: %s", exc)
            self._stop.wait(1.0)
        except Exception as exc:  # keep the loop alive; the traceback goes to the log
            self.last_error = f"internal error: {exc}"
            log.exception("controller step failed")
            self._stop.wait(1.0)

    def request_stop(self) -> None:
        """Ask the loop to end after its current turn (safe from a signal handler)."""
        self._stop.set()

    def start(self) -> None:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self.run_forever, name="streamtune-controller", daemon=True)
        self._thread.start()

    def wait_until_active(self, timeout_s: float) -> bool:
        """Block until this controller holds the lease (or ``timeout_s`` passes); True if it does."""
        return self._active.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop, close the event source and release the lease so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._close_source()
        self.monitor.close()
        if self.active:
            self._active.clear()
            self.keeper.release()
        self.events.close()  # after the release (a standby takes over at once): webhooks get a few s to deliver
