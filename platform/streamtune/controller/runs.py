"""Advance runs: submit the sweep as a Ray Job, read its result, gate it, register it, swap it in.

Each attempt of a run is a Ray Job of its own (``submission_id`` = the run id, then ``<run_id>-a<N>``). An
attempt that fails is retried after ``sweep.retry_backoff * 2**(attempt-1)`` seconds, up to ``sweep.retries``
times, with the run back in ``pending`` (``retry_at`` set) and first among its kind in its spec's queue, so its
window is never merged into a later one; after the last attempt it stays ``failed`` with every attempt's reason.
A spec's pending runs start one at a time, event-triggered windows before runs asked for by hand
(:func:`start_order`). A run past
``sweep.time_budget`` (from its submission, plus a grace) is stopped and failed. The promotion swap runs in a
:class:`~streamtune.controller.promotions.PromotionWorker` thread, off the controller loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from streamtune.artifacts.store import ArtifactStore
from streamtune.artifacts.verified import stored_manifest_sha256
from streamtune.config.jobspec import JobSpec
from streamtune.controller.gating import gate_result
from streamtune.controller.history import training_windows
from streamtune.controller.ports import Jobs, Serving
from streamtune.controller.promotions import COMMAND_PREFIX, PromotionOutcome, PromotionWorker
from streamtune.controller.warm import warm_start_points
from streamtune.errors import CommandFailed, ConfigError, FencedError, NotFoundError, StreamtuneError
from streamtune.faults import kill_point
from streamtune.observe.bus import EventBus
from streamtune.observe.events import gate_verdict, run_finished, swap_outcome
from streamtune.registry.base import Registry
from streamtune.registry.records import RunAttempt, RunRecord, RunStatus, SpecRecord
from streamtune.serving.records import ModelRef
from streamtune.sweeps.driver import result_uri
from streamtune.sweeps.failures import JobFailure, describe, error_uri, exception_line
from streamtune.sweeps.jobs_api import killed_by
from streamtune.sweeps.progress import run_out_uri
from streamtune.sweeps.schema import ChampionRef, SweepRequest, SweepResult

log = logging.getLogger(__name__)

ACTIVE = (RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
PENDING_BATCH = 50
"""How many of a spec's oldest pending runs one step looks at (the queue is read oldest first, so none starves)."""
MAX_PROMOTION_FAILURES = 3
"""A promotion that raises an unexpected (non-streamtune) error this many times fails its run."""


def attempt_submission_id(run_id: str, attempt: int) -> str:
    """The Ray Job id of a run's attempt: the run id for the first, ``<run_id>-a<N>`` after.

    Example:
        >>> attempt_submission_id("r-1", 1), attempt_submission_id("r-1", 3)
        ('r-1', 'r-1-a3')
    """
    return run_id if attempt == 1 else f"{run_id}-a{attempt}"


class RunAdvancer:
    """Moves each spec's runs through pending → submitted → running → succeeded → promoted/rejected/failed.

    Every step is idempotent, so a controller that crashed at any point can call :meth:`step` again. A paused
    spec's active run goes on; no pending run of it starts.

    Args:
        registry: The controller's (fenced) registry.
        jobs: Where sweeps run (the Ray Jobs API).
        services: Serving; promotion swaps go through it from a worker thread.
        store: The artifact store (requests, results, ``error.json``).
        data_roots: Roots a snapshot may read from besides the dataset's own (default: the store's root).
        deadline_grace_s: Seconds past ``sweep.time_budget`` (plus 10% of it) before a run is stopped: the
            driver reads the snapshot before Tune's clock starts and scores the holdout after it stops.
        events: Where gate verdicts, finished runs and promotions are emitted (default: a bus of its own).
    """

    def __init__(self, registry: Registry, jobs: Jobs, services: Serving, store: ArtifactStore, *,
                 data_roots: Sequence[str] | None = None, deadline_grace_s: float = 60.0,
                 events: EventBus | None = None) -> None:
        self.registry = registry
        self.jobs = jobs
        self.services = services
        self.store = store
        self.data_roots = list(data_roots) if data_roots is not None else [store.root]
        self.deadline_grace_s = deadline_grace_s
        self.promotions = PromotionWorker(services)
        self.events = events or EventBus()

    def step(self, specs: dict[str, SpecRecord]) -> None:
        """Advance the active run of each spec, or start its oldest pending one (per trigger.on_running)."""
        for record in specs.values():
            self.step_spec(record)

    def step_spec(self, record: SpecRecord) -> None:
        """Advance one spec's active run, or start its oldest pending one; raises what the spec's step raised.

        While the spec's promotion swap is in progress (in the worker) it returns at once; the next call after
        the swap ended records its outcome.
        """
        spec = record.spec
        swapping = self.promotions.running(spec.name)
        if swapping is not None and swapping.startswith(COMMAND_PREFIX):
            return  # a promote or rollback command is swapping this spec; the command executor records it
        if swapping is not None:
            outcome = self.promotions.take(spec.name)
            if outcome is not None:
                self._finish_promotion(spec, outcome)
                return
            if self.promotions.busy(spec.name):
                return
        active = self.registry.list_runs(spec.name, status=list(ACTIVE), limit=1)
        pending = start_order(self._pending(spec.name))  # event-triggered windows before runs asked for by hand
        if active and pending and not record.paused and self._preempted(spec, active[0], pending[0]):
            active = []  # the window at the head starts now; the run asked for by hand resumes after
        if active and pending:
            active, pending = self._apply_policy(spec, active[0], pending)
        if active:
            self._advance(spec, active[0])
        elif pending and not record.paused:
            head = pending[0]
            if head.retry_at is not None and head.retry_at > time.time():
                return  # a failed attempt backs off; its window keeps its place at the head of the queue
            self._submit(spec, head)

    def _preempted(self, spec: JobSpec, active: RunRecord, head: RunRecord) -> bool:
        """Stop the active run for the window at the head of the queue, if ``trigger.preempt`` lets it: the active
        run must be one asked for by hand whose Ray Job still runs, and the window ready to start. The stopped run
        goes back to ``pending`` as its next attempt (a :class:`RunAttempt` with ``preempted_by``), which resumes
        the sweep from its folder once the windows ahead of it are done."""
        if not spec.trigger.preempt or not _by_hand(active) or _by_hand(head):
            return False
        if active.status not in (RunStatus.SUBMITTED, RunStatus.RUNNING):
            return False  # a run that passed the gate is being promoted: it finishes first
        if head.retry_at is not None and head.retry_at > time.time():
            return False  # the window backs off: nothing would start in the freed slot
        if self.jobs.status(active.submission_id) not in ("PENDING", "RUNNING"):
            return False  # it ended already: _advance records how
        self.jobs.stop(active.submission_id)
        reason = f"pre-empted by run {head.run_id}, an event-triggered window (trigger.preempt)"
        attempts = [*(a for a in active.attempts if a.attempt != active.attempt),
                    RunAttempt(attempt=active.attempt, submission_id=active.submission_id, error=reason,
                               started_at=active.timings.get("submitted_at"), preempted_by=head.run_id)]
        self._update(active, status=RunStatus.PENDING, attempt=active.attempt + 1, attempts=attempts, retry_at=None,
                     error=f"{reason}; resumes after it as attempt {active.attempt + 1}")
        log.info("run %s (asked for by hand) pre-empted by window run %s; Ray Job %s stopped", active.run_id,
                 head.run_id, active.submission_id)
        return True

    def _pending(self, spec_name: str) -> list[RunRecord]:
        """The spec's oldest pending runs; when that batch is full of runs asked for by hand, the newest pending
        runs too, so a window that arrived behind them is seen (and starts first, :func:`start_order`)."""
        pending = self.registry.list_runs(spec_name, status=RunStatus.PENDING, limit=PENDING_BATCH, oldest_first=True)
        if len(pending) == PENDING_BATCH and all(_by_hand(run) for run in pending):
            pending += self.registry.list_runs(spec_name, status=RunStatus.PENDING, limit=PENDING_BATCH)
        return pending

    def _apply_policy(self, spec: JobSpec, active: RunRecord,
                      pending: list[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
        """What new windows do while a run is active: wait (queue), drop (skip), or take over (replace).

        Manual runs and retried runs (attempt > 1) are always queued.
        """
        policy = spec.trigger.on_running
        queued = [run for run in pending if run.command_id is not None or run.attempt > 1]
        windows = [run for run in pending if run.command_id is None and run.attempt == 1]
        if policy == "queue" or not windows:
            return [active], pending
        if policy == "skip":
            for run in windows:
                self._update(run, status=RunStatus.REJECTED,
                             error=f"skipped: run {active.run_id} was active (trigger.on_running=skip)")
            return [active], queued
        newest = self._newest_window(spec.name) or windows[-1]
        if newest.created_at < active.created_at:  # older windows left over from an earlier replace
            for run in windows:
                self._update(run, status=RunStatus.REJECTED,
                             error=f"replaced by run {active.run_id} (trigger.on_running=replace)")
            return [active], queued
        if active.status == RunStatus.SUCCEEDED:  # already gated: let the promotion finish first
            return [active], pending
        self.jobs.stop(active.submission_id)
        self._update(active, status=RunStatus.FAILED,
                     error=f"replaced by run {newest.run_id} (trigger.on_running=replace)")
        for run in windows:
            if run.run_id != newest.run_id:
                self._update(run, status=RunStatus.REJECTED,
                             error=f"replaced by run {newest.run_id} (trigger.on_running=replace)")
        return [], [newest, *queued]

    def _newest_window(self, spec_name: str) -> RunRecord | None:
        for run in self.registry.list_runs(spec_name, status=RunStatus.PENDING, limit=PENDING_BATCH):
            if run.command_id is None and run.attempt == 1:
                return run
        return None

    def out_uri(self, run: RunRecord) -> str:
        """Artifact-store URI of the run's request, Tune state, trial models and result."""
        return run_out_uri(self.store, run.spec_name, run.run_id)

    def _submit(self, spec: JobSpec, run: RunRecord) -> None:
        if spec.job.code_uri is None:
            raise ConfigError(f"spec {spec.name} has no job.code_uri; submit it again so its code is stored")
        champ = self.registry.get_alias(spec.name, "champion")
        out = self.out_uri(run)
        history = training_windows(self.registry, spec, run)
        claimed = run.num_rows + sum(w.num_rows for w in history)
        req = SweepRequest(
            run_id=run.run_id, submission_id=run.submission_id, attempt=run.attempt, resume=self._resumes(run),
            spec=spec.model_dump(mode="json"), uris=run.uris,
            event_ids=run.event_ids, trusted_roots=self.data_roots, out_uri=out, claimed_rows=claimed or None,
            history=history, warm_start=warm_start_points(self.registry, spec),
            champion=ChampionRef(version=champ.version, artifact_uri=champ.artifact_uri,
                                 manifest_sha256=champ.manifest_sha256) if champ else None,
        )
        request_uri = self.store.put_text(f"{out}/request.json", req.model_dump_json(indent=2))
        self.jobs.submit(run.submission_id, request_uri, spec.job.code_uri, run_id=run.run_id)
        kill_point("runs.after_submit")
        self._update(run, status=RunStatus.SUBMITTED, retry_at=None, timings={"submitted_at": time.time()})
        log.info("run %s submitted as Ray Job %s (attempt %d)", run.run_id, run.submission_id, run.attempt)

    def _resumes(self, run: RunRecord) -> bool:
        """Whether this attempt resumes the Tune experiment the one before left (``SweepRequest.resume``): yes
        when that attempt's driver died without writing ``error.json`` (killed, its node or the Ray head lost);
        an attempt whose driver raised is retried from scratch (:mod:`streamtune.sweeps.resume`)."""
        if run.attempt < 2:
            return False
        uri = error_uri(self.out_uri(run))
        if not self.store.exists(uri):
            return True
        try:
            failure = JobFailure.model_validate_json(self.store.get_text(uri))
        except (ValidationError, ValueError):
            return True
        return failure.submission_id != attempt_submission_id(run.run_id, run.attempt - 1)

    def _advance(self, spec: JobSpec, run: RunRecord) -> None:
        if run.status == RunStatus.SUCCEEDED:
            self._promote(spec, run)
            return
        sid = run.submission_id
        if run.status in (RunStatus.SUBMITTED, RunStatus.RUNNING) and self._own_result(run) is not None:
            self._gate(spec, run)  # the whole result is there: no need to wait for the driver to exit
            return
        status = self.jobs.status(sid)  # raises when the cluster cannot tell: checked again next turn
        if status is None:
            self._attempt_failed(spec, run, f"Ray Job {sid} is gone from the cluster (did the Ray head restart?)")
        elif status in ("PENDING", "RUNNING") and self._past_deadline(spec, run):
            self.jobs.stop(sid)
            self._attempt_failed(spec, run, f"exceeded sweep.time_budget of {spec.sweep.time_budget:g} s "
                                            f"(Ray Job {sid} stopped)", retryable=False)
        elif status == "RUNNING" and run.status != RunStatus.RUNNING:
            self._update(run, status=RunStatus.RUNNING)
        elif status == "STOPPED":
            self._attempt_failed(spec, run, f"Ray Job {sid} was stopped outside streamtune", retryable=False)
        elif status == "FAILED":
            reason, retryable = self._failure_reason(run)
            self._attempt_failed(spec, run, reason, retryable=retryable)
        elif status == "SUCCEEDED":
            self._gate(spec, run)

    def _past_deadline(self, spec: JobSpec, run: RunRecord) -> bool:
        budget = spec.sweep.time_budget
        if budget is None:
            return False
        started = run.timings.get("submitted_at", run.updated_at)
        return time.time() > started + budget * 1.1 + self.deadline_grace_s

    def _failure_reason(self, run: RunRecord) -> tuple[str, bool]:
        """The failed attempt's exception (from ``error.json``, else the log's last exception line)."""
        uri = error_uri(self.out_uri(run))
        if self.store.exists(uri):
            try:
                failure = JobFailure.model_validate_json(self.store.get_text(uri))
            except (ValidationError, ValueError):
                failure = None
            if failure is not None and failure.submission_id in (None, run.submission_id):
                if failure.data_gate is not None:  # the data gate's report is stored with the run
                    self._update(run, gate={"passed": False, "reasons": failure.data_gate.reasons,
                                            "data_gate": failure.data_gate.model_dump(mode="json")})
                return failure.headline, failure.retryable
        signal_name = killed_by(self.jobs.exit_code(run.submission_id))
        if signal_name is not None:  # killed before it could write error.json (OOM killer, kill -9, kill point)
            return (f"the sweep driver (Ray Job {run.submission_id}) was killed by {signal_name} before it wrote "
                    "error.json", True)
        tail = self.jobs.logs_tail(run.submission_id, 60)
        line = exception_line(tail)
        if line is not None:
            return line, True
        last = next((x.strip() for x in reversed(tail.splitlines()) if x.strip()), "")
        return f"sweep job failed and its log names no exception{': ' + last[:200] if last else ''}", True

    def _attempt_failed(self, spec: JobSpec, run: RunRecord, reason: str, *, retryable: bool = True) -> RunRecord:
        """Record a failed attempt: back to pending for the next one after its backoff, or failed for good.
        Pre-empted attempts (``preempted_by``) do not count against ``sweep.retries``."""
        preempted = sum(1 for a in run.attempts if a.preempted_by is not None)
        total = max(1 + spec.sweep.retries + preempted, run.attempt)
        record = RunAttempt(attempt=run.attempt, submission_id=run.submission_id, error=reason,
                            started_at=run.timings.get("submitted_at"))
        attempts = [*(a for a in run.attempts if a.attempt != run.attempt), record]
        label = f"{reason} (attempt {run.attempt} of {total})"
        if retryable and run.attempt < total:
            delay = spec.sweep.retry_backoff * 2 ** (run.attempt - 1)
            log.warning("run %s attempt %d failed, retrying in %gs: %s", run.run_id, run.attempt, delay, reason)
            return self._update(run, status=RunStatus.PENDING, attempt=run.attempt + 1, attempts=attempts,
                                retry_at=time.time() + delay, error=f"{label}; retrying in {delay:g} s")
        log.warning("run %s failed: %s", run.run_id, label)
        return self._update(run, status=RunStatus.FAILED, attempts=attempts, retry_at=None,
                            error=final_error(label, attempts))

    def _own_result(self, run: RunRecord) -> SweepResult | None:
        """This attempt's ``result.json`` once the driver has written it whole (it is written in one piece, and
        names the attempt's submission id), else None: the driver is still at work, or the file is another
        attempt's."""
        uri = result_uri(self.out_uri(run))
        try:
            if not self.store.exists(uri):
                return None
            result = SweepResult.model_validate_json(self.store.get_text(uri))
        except (ValidationError, ValueError, StreamtuneError):
            return None
        return result if result.submission_id == run.submission_id else None

    def _gate(self, spec: JobSpec, run: RunRecord) -> None:
        uri = result_uri(self.out_uri(run))
        if not self.store.exists(uri):
            self._attempt_failed(spec, run, f"sweep job succeeded but wrote no {uri}")
            return
        result = SweepResult.model_validate_json(self.store.get_text(uri))
        started = run.timings.get("submitted_at", run.created_at)
        t0 = time.perf_counter()
        report = gate_result(spec, result)  # same holdout rows: unscorable champion, bootstrap, slices, budgets
        timings = {"sweep_job_s": round(time.time() - started, 3), **result.timings,
                   "gate_s": round(time.perf_counter() - t0, 4)}
        gate = with_run_checks(report.model_dump(mode="json"), result)  # + the data gate and the smoke test
        passed = bool(gate["passed"])
        self._pin_features(spec, result)
        status = RunStatus.REJECTED if not passed else (
            RunStatus.AWAITING_APPROVAL if spec.promotion == "manual" else RunStatus.SUCCEEDED)
        run = self._update(run, status=status, sweep=result.model_dump(mode="json"),
                           gate=gate, timings=timings, error=None)  # earlier attempts
        # keep their reasons in `attempts`
        log.info("run %s gate %s: %s", run.run_id, status.value if passed else "rejected", gate["reasons"][0])
        self.events.emit(lambda: gate_verdict(spec.name, run.run_id, gate, result.holdout))
        if status == RunStatus.SUCCEEDED:
            self._promote(spec, run)

    def _pin_features(self, spec: JobSpec, result: SweepResult) -> None:
        """With ``dataset.features`` unset, store the spec with the features its first run trained on, so a
        later batch's new column never silently enters the model (like ``dataset.schema``'s pinning)."""
        features = result.snapshot.get("features")
        stored = self.registry.get_spec(spec.name)
        if not features or stored is None or stored.spec.dataset.features is not None:
            return
        pinned = stored.spec.model_copy(update={"dataset": stored.spec.dataset.model_copy(
            update={"features": list(features)})})
        self.registry.put_spec(pinned)
        log.info("pinned the features of spec %s at run %s: %s", spec.name, result.run_id, features)

    def _promote(self, spec: JobSpec, run: RunRecord) -> None:
        """Register the winner and start its swap in the promotion worker; the outcome is taken next step."""
        t0 = time.perf_counter()
        try:
            result = SweepResult.model_validate(run.sweep)
            digest = self._manifest_digest(run, result)
            if digest is None:
                return
            mv = self.registry.register_model(
                spec.name, run.run_id, str(result.best.artifact_uri), result.best.params,
                {"holdout_" + result.holdout.metric: result.holdout.challenger, **_numbers(result.best.metrics)},
                _lineage(run, result, spec), manifest_sha256=digest,
            )
            self.registry.set_alias(spec.name, "challenger", mv.version,
                                    reason=f"run {run.run_id} passed the gate")
        except StreamtuneError:
            raise
        except Exception as exc:
            self._promotion_failed(run, exc)
            return
        run = self._update(run, model_version=mv.version, timings={"register_s": round(time.perf_counter() - t0, 4)})
        ref = ModelRef(version=mv.version, uri=mv.artifact_uri, manifest_sha256=mv.manifest_sha256)
        self.promotions.start(spec.name, run.run_id, lambda: self.services.swap(spec, ref))
        log.info("run %s: swapping %s v%d in (off the loop)", run.run_id, spec.name, mv.version)

    def _manifest_digest(self, run: RunRecord, result: SweepResult) -> str | None:
        """The digest to register: the stored manifest's sha256, which must equal the one the sweep recorded
        when it scored the winner. On a mismatch the run fails (naming both digests) and None is returned."""
        uri = str(result.best.artifact_uri)
        stored = stored_manifest_sha256(uri)
        recorded = result.best.manifest_sha256
        if recorded is not None and recorded != stored:
            error = (f"the winner's MANIFEST.json at {uri} has sha256 {stored}, but the sweep recorded {recorded} "
                     "when it scored it: the artifact was rewritten after the sweep, so it is not registered")
            log.error("run %s: %s", run.run_id, error)
            self._update(run, status=RunStatus.FAILED, error=error)
            return None
        return stored

    def _finish_promotion(self, spec: JobSpec, outcome: PromotionOutcome) -> None:
        """Record a finished swap: the champion alias and ``promoted``, or why it failed."""
        run = self.registry.get_run(outcome.run_id)
        if run is None or run.status != RunStatus.SUCCEEDED or run.model_version is None:
            return  # cancelled or changed while it swapped
        if outcome.error is not None:
            exc = outcome.error
            if isinstance(exc, FencedError):
                raise exc
            if isinstance(exc, StreamtuneError):
                self._update(run, status=RunStatus.FAILED, error=f"swap failed: {exc}")
            else:
                self._promotion_failed(run, exc)
            return
        swap, wanted, run_id = outcome.report, run.model_version, run.run_id
        if swap.version != run.model_version:  # the swap went back (SwapReport.version is what serves): keep the alias
            self._update(run, status=RunStatus.FAILED,
                         error=f"swap failed: version {swap.version} serves, not {run.model_version} "
                               f"({swap.reason or 'rolled back'})")
            self.events.emit(lambda: swap_outcome(spec.name, swap, wanted=wanted, app=spec.serve.app, run_id=run_id))
            return
        kill_point("promote.after_swap")
        self.registry.set_alias(spec.name, "champion", run.model_version, reason=f"run {run.run_id} hot-swapped")
        self._update(run, status=RunStatus.PROMOTED,
                     timings={"swap_load_s": swap.load_s, "swap_flip_s": swap.flip_s, "swap_total_s": swap.total_s})
        log.info("run %s promoted: %s v%d is serving", run.run_id, spec.name, run.model_version)
        self.events.emit(lambda: swap_outcome(spec.name, swap, wanted=wanted, app=spec.serve.app, run_id=run_id,
                                              reason=f"run {run_id} hot-swapped"))

    def _promotion_failed(self, run: RunRecord, exc: BaseException) -> None:
        """An unexpected error while promoting: tried again next step, and the run fails after a few."""
        failures = int(run.timings.get("promote_failures", 0)) + 1
        log.error("promotion of run %s failed (%d of %d): %s", run.run_id, failures, MAX_PROMOTION_FAILURES,
                  describe(exc), exc_info=exc)
        if failures >= MAX_PROMOTION_FAILURES:
            self._update(run, status=RunStatus.FAILED, timings={"promote_failures": failures},
                         error=f"promotion failed {failures} times: {describe(exc)}")
        else:
            self._update(run, timings={"promote_failures": failures})

    def _update(self, run: RunRecord, **fields: Any) -> RunRecord:
        if "timings" in fields:
            fields["timings"] = {**run.timings, **fields["timings"]}
        updated = self.registry.update_run(run.run_id, **fields)
        if updated.status != run.status:
            self.events.emit(lambda: run_finished(updated))  # None (nothing emitted) unless the run has ended
        return updated


def _by_hand(run: RunRecord) -> bool:
    """Whether a command asked for the run (``run-now``, ``replay``): an exploratory run, not an event's window."""
    return run.command_id is not None


def start_order(pending: Sequence[RunRecord]) -> list[RunRecord]:
    """The order a spec's pending runs start in, one at a time: the runs events triggered (trigger windows, and
    their retries) before the runs a command asked for by hand (``run-now``, ``replay``), each group oldest first.
    A run asked for by hand therefore waits while windows keep arriving; a retried window keeps its place at the
    head (it is older than the windows behind it). Duplicates (one run read twice) are dropped.

    Example:
        >>> run = lambda i, t, command=None: RunRecord(run_id=f"r-{i}", spec_name="s", dataset="d", created_at=t,
        ...                                            command_id=command)
        >>> queue = [run(1, 1.0, "c-1"), run(2, 2.0), run(3, 3.0, "c-2"), run(4, 4.0), run(2, 2.0)]
        >>> [r.run_id for r in start_order(queue)]
        ['r-2', 'r-4', 'r-1', 'r-3']
    """
    unique = {run.run_id: run for run in pending}
    return sorted(unique.values(), key=lambda run: (_by_hand(run), run.created_at, run.run_id))


def with_run_checks(gate: dict[str, Any], result: SweepResult) -> dict[str, Any]:
    """The model gate's report (as JSON) with the run's own checks added: the data gate's report, and the smoke
    test, whose failure fails the gate with its reason first.

    Example:
        >>> from streamtune.validation.smoke import SmokeReport
        >>> r = SweepResult.model_construct(data_gate=None, smoke=SmokeReport(
        ...     passed=False, reason="smoke test failed: prediction 0 of 4 is nan", rows=4, seconds=0.1))
        >>> g = with_run_checks({"passed": True, "reasons": ["ok"]}, r)
        >>> g["passed"], g["reasons"][0]
        (False, 'smoke test failed: prediction 0 of 4 is nan')
    """
    out = dict(gate)
    if result.data_gate is not None:
        out["data_gate"] = result.data_gate.model_dump(mode="json")
    smoke = result.smoke
    if smoke is not None:
        out["smoke"] = smoke.model_dump(mode="json")
        reasons = list(out.get("reasons") or [])
        if smoke.passed:
            out["reasons"] = [*reasons, smoke.reason]
        else:
            out["passed"] = False
            out["reasons"] = [smoke.reason, *reasons]
    return out


def final_error(label: str, attempts: Sequence[RunAttempt]) -> str:
    """The error of a run that failed for good: its last attempt's, then each earlier attempt's reason.

    Example:
        >>> a = [RunAttempt(attempt=1, submission_id="r", error="ValueError: x"),
        ...      RunAttempt(attempt=2, submission_id="r-a2", error="KeyError: y")]
        >>> final_error("KeyError: y (attempt 2 of 2)", a)
        'KeyError: y (attempt 2 of 2); earlier: attempt 1: ValueError: x'
    """
    earlier = [f"attempt {a.attempt}: {a.error[:200]}" for a in attempts[:-1]]
    return f"{label}; earlier: {'; '.join(earlier)}" if earlier else label


def retry_failed_run(registry: Registry, run_id: str, actor: str) -> RunRecord:
    """Start a new attempt of a failed run at once (the ``retry`` command): back to pending, first in its queue.

    Raises:
        CommandFailed: no such run, or it did not fail (only a failed run can be retried).

    Example:
        >>> from streamtune.registry import open_registry
        >>> reg = open_registry("sqlite:///:memory:")
        >>> _ = reg.commit_window("g", {}, {}, [RunRecord(run_id="r-1", spec_name="s", dataset="d",
        ...                                                status=RunStatus.FAILED, error="ValueError: x")])
        >>> run = retry_failed_run(reg, "r-1", "ana")
        >>> run.status.value, run.attempt, run.submission_id, run.attempts[0].error
        ('pending', 2, 'r-1-a2', 'ValueError: x')
        >>> try:
        ...     retry_failed_run(reg, "r-1", "ana")
        ... except CommandFailed as exc:
        ...     print(exc.headline)
        run r-1 is pending; only a failed run can be retried
    """
    run = registry.get_run(run_id)
    if run is None:
        raise NotFoundError(f'Got "{run_id}" for run; no such run', fix="list runs with `streamtune runs`")
    if run.status != RunStatus.FAILED:
        raise CommandFailed(f"run {run_id} is {run.status.value}; only a failed run can be retried",
                            fix="wait for it to end" if run.status not in (RunStatus.PROMOTED, RunStatus.REJECTED,
                                                                            RunStatus.CANCELLED) else None)
    attempts = list(run.attempts)
    if not any(a.attempt == run.attempt for a in attempts):  # failed without an attempt record (e.g. a swap)
        attempts.append(RunAttempt(attempt=run.attempt, submission_id=run.submission_id,
                                   error=run.error or "failed", started_at=run.timings.get("submitted_at")))
    log.info("run %s retried by %s as attempt %d", run_id, actor, run.attempt + 1)
    return registry.update_run(run_id, status=RunStatus.PENDING, attempt=run.attempt + 1, attempts=attempts,
                               retry_at=None, error=f"retry asked by {actor} after: {run.error or 'failed'}")


def approve_run(registry: Registry, run_id: str, actor: str, reason: str = "") -> RunRecord:
    """Approve a run that passed the gate under ``promotion: manual`` (the ``approve`` command).

    The run becomes ``succeeded`` with ``gate["approval"] = {"by", "reason", "at"}`` and ``timings.approved_at``;
    the advancer then registers and swaps it as usual, and the model's lineage keeps ``approved_by``. A rerun
    after a failover finds it approved already and changes nothing.

    Raises:
        NotFoundError: no such run.
        CommandFailed: the run is not awaiting approval, or another run of its spec is in flight.

    Example:
        >>> from streamtune.registry import open_registry
        >>> reg = open_registry("sqlite:///:memory:")
        >>> _ = reg.commit_window("g", {}, {}, [RunRecord(run_id="r-1", spec_name="s", dataset="d",
        ...                                                status=RunStatus.AWAITING_APPROVAL, gate={"passed": True})])
        >>> run = approve_run(reg, "r-1", "ana", "looks good")
        >>> run.status.value, run.gate["approval"]["by"]
        ('succeeded', 'ana')
    """
    run = registry.get_run(run_id)
    if run is None:
        raise NotFoundError(f'Got "{run_id}" for run; no such run', fix="list runs with `streamtune runs`")
    approval = (run.gate or {}).get("approval")
    if approval is not None and run.status in (RunStatus.SUCCEEDED, RunStatus.PROMOTED):
        return run  # approved already (a rerun of the command)
    if run.status != RunStatus.AWAITING_APPROVAL:
        raise CommandFailed(f"run {run_id} is {run.status.value}; only a run awaiting approval can be approved",
                            fix="approval applies to specs with promotion: manual, after the gate passed")
    busy = [r for r in registry.list_runs(run.spec_name, status=list(ACTIVE), limit=5) if r.run_id != run_id]
    if busy:
        raise CommandFailed(f"run {busy[0].run_id} of spec {run.spec_name} is {busy[0].status.value}; approve "
                            f"run {run_id} after it ends", fix="wait for it, or cancel it")
    now = time.time()
    log.info("run %s approved by %s", run_id, actor)
    return registry.update_run(run_id, status=RunStatus.SUCCEEDED,
                               gate={**(run.gate or {}), "approval": {"by": actor, "reason": reason, "at": now}},
                               timings={**run.timings, "approved_at": now})


# What Ray Tune adds to every reported result; the model's metrics are what the job reported.
_TUNE_AUTOFILLED = {"training_iteration", "iterations_since_restore", "time_this_iter_s", "time_total_s",
                    "time_since_restore", "timestamp", "pid", "done", "trial_id", "date", "hostname", "node_ip",
                    "experiment_tag"}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if k not in _TUNE_AUTOFILLED and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _lineage(run: RunRecord, result: SweepResult, spec: JobSpec) -> dict[str, Any]:
    """What a model version came from; ``node_id`` is the Ray node the winning trial ran on, ``trial_nodes``
    every trial's node by trial id (None where unknown), ``spent`` what the sweep spent and what stopped it
    (:class:`~streamtune.sweeps.schema.SweepSpend`)."""
    return {
        "run_id": run.run_id, "event_ids": run.event_ids, "offsets": run.offsets, "uris": run.uris,
        "snapshot_fingerprint": result.snapshot.get("fingerprint"), "snapshot_rows": result.snapshot.get("num_rows"),
        "trial_id": result.best.trial_id, "trials": len(result.trials), "trigger_reason": run.reason,
        "code_uri": spec.job.code_uri, "command_id": run.command_id,
        "node_id": result.best.node_id, "trial_nodes": {t.trial_id: t.node_id for t in result.trials},
        "approved_by": ((run.gate or {}).get("approval") or {}).get("by"),  # promotion: manual
        "reference_uri": result.reference_uri,  # the drift trigger's reference while this version is champion
        "training_policy": spec.dataset.training.policy,
        "training_windows": result.snapshot.get("windows", []),  # earlier windows read: run id, files, offsets
        "refit": None if result.refit is None else {"trial_id": result.refit.trial_id,
                                                    "trial_artifact_uri": result.refit.trial_artifact_uri,
                                                    "rows": result.refit.rows},
        "spent": None if result.spent is None else result.spent.model_dump(mode="json"),  # and what stopped it
        "attempt": run.attempt,  # the attempt whose result this is; resume: the trials it kept from dead ones
        "resume": None if result.resume is None else result.resume.model_dump(mode="json"),
    }
