"""Carry out the commands callers appended: submit, pause, resume, delete, promote, rollback, cancel, run now.

The active controller runs pending commands oldest first, each under the registry's fence, and records the
outcome or the error with the command. Each one is idempotent: a controller that died half-way through one
leaves it ``running``, and the next active controller simply runs it again.

Example:
    >>> from streamtune.registry import open_registry
    >>> from streamtune.registry.commands import PauseSpec
    >>> reg = open_registry("sqlite:///:memory:")
    >>> cmd = reg.append_command(PauseSpec(spec="nope"), actor="ana", reason="try")
    >>> [c.status.value for c in CommandExecutor(reg, jobs=None, services=None, holder="me").step()]
    ['failed']
    >>> reg.get_command(cmd.id).error
    'Got "nope" for spec; no spec of that name is stored'
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from streamtune.artifacts.code import pack_code, store_code
from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.controller.ports import Jobs, Serving
from streamtune.controller.promotions import COMMAND_PREFIX, PromotionWorker
from streamtune.controller.replay import HistoryReader, build_replay_runs
from streamtune.controller.runs import approve_run, retry_failed_run
from streamtune.errors import CommandFailed, FencedError, StreamtuneError
from streamtune.faults import kill_point
from streamtune.observe.bus import EventBus
from streamtune.observe.events import swap_outcome
from streamtune.registry.base import Registry
from streamtune.registry.commands import (
    ApproveRun,
    CancelRun,
    CommandOutcome,
    CommandRecord,
    CommandStatus,
    DeleteSpec,
    PauseSpec,
    Promote,
    Replay,
    ResumeSpec,
    RetryRun,
    Rollback,
    RunNow,
    SubmitSpec,
)
from streamtune.registry.records import (
    TERMINAL_STATUSES,
    ModelVersion,
    RunRecord,
    RunStatus,
    SpecRecord,
    TriggerDetail,
)
from streamtune.serving.records import ModelRef
from streamtune.sweeps.checks import SpecChecks

log = logging.getLogger(__name__)

_IN_FLIGHT = (RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
"""Run statuses that make a delete refuse unless forced: a Ray Job exists, or a promotion is under way."""


class CommandExecutor:
    """Runs the registry's pending commands as the active controller.

    Args:
        registry: The controller's (fenced) registry.
        jobs: Where sweeps run (to stop a cancelled run's job).
        services: Serving (promote and rollback swap through it).
        holder: This controller's lease holder id, recorded with each command.
        store: The artifact store (submitted job code is stored there).
        promotions: When given, ``promote`` and ``rollback`` swap in this worker, off the caller's thread: the
            command stays ``running`` until a later :meth:`step` finds the swap done and records it (the
            controller passes its run advancer's worker, so one spec never has two swaps at once).
        history: Reads a topic's retained history for ``replay`` (the controller passes
            :func:`~streamtune.events.history.read_history` on its broker); None: replays are refused.
        platform_roots: The platform's own data folders, for the URI checks of replayed events.
        events: Where the swaps of promote and rollback commands are emitted (default: a bus of its own).
        checks: When given, ``submit`` checks the spec against its job before storing it (entrypoint and class
            exist, metric known with the direction of ``sweep.mode``, no unknown param); the controller passes a
            :class:`~streamtune.sweeps.checks.RaySpecChecker`, so the job's code is imported only in a Ray task,
            never in this process.
    """

    def __init__(self, registry: Registry, jobs: Jobs | Any, services: Serving | Any, holder: str,
                 store: ArtifactStore | None = None, *, promotions: PromotionWorker | None = None,
                 checks: SpecChecks | None = None, history: HistoryReader | None = None,
                 platform_roots: Sequence[str] = (), events: EventBus | None = None) -> None:
        self.registry = registry
        self.events = events or EventBus()  # promote and rollback swaps are emitted (streamtune.observe)
        self.history = history
        self.platform_roots = list(platform_roots)
        self.jobs = jobs
        self.services = services
        self.holder = holder
        self.store = store
        self.promotions = promotions
        self.checks = checks
        self._swaps: dict[str, tuple[str, ModelVersion, str]] = {}

    def step(self, limit: int = 20) -> list[CommandRecord]:
        """Run up to ``limit`` pending (or interrupted) commands, oldest first; return those that finished."""
        queue = self.registry.list_commands([CommandStatus.PENDING, CommandStatus.RUNNING], limit, oldest_first=True)
        done = [self.execute(command) for command in queue]
        return [c for c in done if c.status in (CommandStatus.SUCCEEDED, CommandStatus.FAILED)]

    def execute(self, record: CommandRecord) -> CommandRecord:
        """Run one command and record its outcome or error; a lost lease (FencedError) propagates.

        A promote or rollback whose swap is still in the worker comes back ``running``.
        """
        started = record  # _dispatch sees the record as read: RUNNING there means interrupted, or swapping
        if record.status != CommandStatus.RUNNING or record.controller != self.holder:
            started = self.registry.start_command(record.id, self.holder)
            kill_point("command.after_start")
        try:
            outcome = self._dispatch(record)
        except FencedError:
            raise
        except StreamtuneError as exc:
            log.warning("command %s (%s) failed: %s", record.id, record.command.describe(), exc.headline)
            return self.registry.finish_command(record.id, error=exc.headline)
        except Exception as exc:  # a bug: record it with the command rather than retry it forever
            log.exception("command %s (%s) raised", record.id, record.command.describe())
            return self.registry.finish_command(record.id, error=f"internal error: {type(exc).__name__}: {exc}")
        if outcome is None:
            return started
        log.info("command %s by %s: %s", record.id, record.actor, outcome.message)
        return self.registry.finish_command(record.id, outcome=outcome)

    def _dispatch(self, record: CommandRecord) -> CommandOutcome | None:
        command = record.command
        if isinstance(command, SubmitSpec):
            return self._submit(command)
        if isinstance(command, PauseSpec | ResumeSpec):
            paused = isinstance(command, PauseSpec)
            stored = self.registry.set_spec_paused(command.spec, paused)
            if not paused and stored.error is not None:  # resume also retries a spec in error at once
                self.registry.set_spec_health(command.spec, error=None)
            return CommandOutcome(message=f"spec {command.spec} {'paused' if paused else 'resumed'}")
        if isinstance(command, DeleteSpec):
            return self._delete(command, record)
        if isinstance(command, Promote | Rollback):
            return self._promote(record)
        if isinstance(command, CancelRun):
            return self._cancel(command.run_id, record)
        if isinstance(command, ApproveRun):
            run = approve_run(self.registry, command.run_id, record.actor, record.reason)
            return CommandOutcome(message=f"run {run.run_id} approved by {record.actor}; it is promoted next",
                                  run_id=run.run_id)
        if isinstance(command, RetryRun):
            run = retry_failed_run(self.registry, command.run_id, _who(record))
            return CommandOutcome(message=f"run {run.run_id} queued again as attempt {run.attempt} "
                                          f"(Ray Job {run.submission_id})", run_id=run.run_id)
        if isinstance(command, Replay):
            return self._replay(command, record)
        return self._run_now(command, record)

    # -- specs -------------------------------------------------------------------------------------

    def _submit(self, command: SubmitSpec) -> CommandOutcome:
        spec = self._with_stored_code(command.spec)
        if self.checks is not None:
            self.checks.check(spec)  # in a Ray task with the job's code; raises ConfigError naming what is wrong
        before = self.registry.get_spec(spec.name)
        stored = self.registry.put_spec(spec)
        if stored.error is not None and before is not None and before.spec != spec:  # a fix is tried at once
            self.registry.set_spec_health(spec.name, error=None)
        verb = "stored" if before is None else ("unchanged" if before.spec == spec else "replaced")
        return CommandOutcome(message=f"spec {spec.name} {verb}: watching topic {spec.trigger.topic} "
                                      f"for dataset {spec.dataset.name}")

    def _with_stored_code(self, spec: JobSpec) -> JobSpec:
        """The spec with ``job.code_uri`` pointing at its code in the store: stored now if it came as a folder."""
        if self.store is None:
            raise CommandFailed("this controller has no artifact store to keep job code in")
        uri = spec.job.code_uri
        if uri is not None:
            if not self.store.exists(uri):
                raise CommandFailed(f'Got "{uri}" for job.code_uri of spec {spec.name}; nothing is stored there',
                                    fix="submit the spec again so its code is uploaded")
            return spec
        if not spec.code_dir().is_dir():
            raise CommandFailed(
                f'Got "{spec.job.code}" for job.code of spec {spec.name}; no such folder at {spec.code_dir()}',
                fix="point job.code at the package that holds the entrypoint",
            )
        uri = store_code(self.store, pack_code(spec.code_dir()))
        return spec.model_copy(update={"job": spec.job.model_copy(update={"code_uri": uri})})

    def _delete(self, command: DeleteSpec, record: CommandRecord) -> CommandOutcome:
        """Remove a spec; a run in flight refuses it unless ``force`` (then its job is stopped). Idempotent."""
        name = command.spec
        if self.registry.get_spec(name) is None:
            if record.status == CommandStatus.RUNNING:  # interrupted after the delete: a rerun after a failover
                return CommandOutcome(message=f"spec {name} already deleted")
            raise CommandFailed(f'Got "{name}" for spec; no spec of that name is stored',
                                fix="see `streamtune specs` for the stored specs")
        in_flight = self.registry.list_runs(name, status=list(_IN_FLIGHT), limit=100)
        if in_flight and not command.force:
            runs = ", ".join(f"{r.run_id} ({r.status.value})" for r in in_flight)
            raise CommandFailed(f"spec {name} has a run in flight: {runs}; refused to delete it",
                                fix="wait for the run to end, cancel it, or delete with --force (stops it)")
        why = f"spec {name} deleted by {_who(record)}"
        for run in in_flight:
            if run.status in (RunStatus.SUBMITTED, RunStatus.RUNNING):
                self.jobs.stop(run.submission_id)
            self.registry.update_run(run.run_id, status=RunStatus.CANCELLED, error=why)
        pending = self.registry.list_runs(name, status=[RunStatus.PENDING, RunStatus.AWAITING_APPROVAL], limit=10_000)
        for run in pending:
            self.registry.update_run(run.run_id, status=RunStatus.CANCELLED, error=why)
        self.registry.delete_spec(name)
        stopped = f", stopped {len(in_flight)} run(s) in flight" if in_flight else ""
        return CommandOutcome(
            message=f"spec {name} deleted ({len(pending)} pending run(s) cancelled{stopped}); its model versions "
                    "stay in the registry and its Serve app keeps serving the last champion",
        )

    def _spec(self, name: str) -> SpecRecord:
        record = self.registry.get_spec(name)
        if record is None:
            names = ", ".join(s.name for s in self.registry.list_specs()) or "none"
            raise CommandFailed(f'Got "{name}" for model; no spec or model of that name (specs: {names})')
        return record

    # -- serving -----------------------------------------------------------------------------------

    def _model(self, name: str, version: int) -> ModelVersion:
        model = self.registry.get_model(name, version)
        if model is None:
            have = [m.version for m in self.registry.list_models(name)]
            raise CommandFailed(
                f'Got "{version}" for version of model {name}; registered versions: '
                f"{', '.join(map(str, have)) or 'none'}"
            )
        return model

    def _promote(self, record: CommandRecord) -> CommandOutcome | None:
        """Swap the command's version in, then move the champion alias; None while the swap is in the worker."""
        command = record.command
        assert isinstance(command, Promote | Rollback)
        name = command.model
        if self.promotions is not None:
            key = COMMAND_PREFIX + record.id
            current = self.promotions.running(name)
            if current == key:
                return self._swap_taken(record, name, key)
            if current is not None:  # the spec's run promotion, or an older command, swaps first
                return None
        if isinstance(command, Promote):
            version, reason = command.version, f"promoted by {_who(record)}"
        else:
            version, reason = self._previous_champion(name), f"rollback by {_who(record)}"
        spec = self._spec(name).spec
        model = self._model(name, version)
        ref = ModelRef(version=model.version, uri=model.artifact_uri, manifest_sha256=model.manifest_sha256)
        if self.promotions is None:
            return self._promoted(name, model, reason, self.services.swap(spec, ref), record)
        self._swaps[record.id] = (name, model, reason)
        self.promotions.start(name, COMMAND_PREFIX + record.id, lambda: self.services.swap(spec, ref))
        return None

    def _swap_taken(self, record: CommandRecord, name: str, key: str) -> CommandOutcome | None:
        assert self.promotions is not None
        outcome = self.promotions.take(name)
        if outcome is None:
            if self.promotions.running(name) == key:
                return None  # still swapping
            self._swaps.pop(record.id, None)  # dropped (an older lease term): the next step swaps again
            return None
        name, model, reason = self._swaps.pop(record.id)
        if outcome.error is not None:
            raise outcome.error
        return self._promoted(name, model, reason, outcome.report, record)

    def _promoted(self, name: str, model: ModelVersion, reason: str, report: Any,
                  record: CommandRecord) -> CommandOutcome:
        self.events.emit(lambda: swap_outcome(name, report, wanted=model.version, command_id=record.id, reason=reason,
                                              rollback=isinstance(record.command, Rollback)))
        if report.version != model.version:  # the swap went back (SwapReport.version is what serves): keep the alias
            raise CommandFailed(f"swap of {name} to v{model.version} was rolled back; v{report.version} serves "
                                f"({report.reason or 'rolled back'})")
        kill_point("promote.after_swap")
        self.registry.set_alias(name, "champion", model.version, reason=reason)
        return CommandOutcome(message=f"{name} v{model.version} serving (was v{report.previous})",
                              version=model.version, swap=report)

    def _previous_champion(self, name: str) -> int:
        self._spec(name)
        history = [e for e in self.registry.alias_history(name, "champion") if e.version is not None]
        if not history or history[-1].previous is None:
            raise CommandFailed(f"model {name} has no previous champion to roll back to",
                                fix="promote a version by number instead")
        return history[-1].previous

    # -- runs --------------------------------------------------------------------------------------

    def _cancel(self, run_id: str, record: CommandRecord) -> CommandOutcome:
        run = self.registry.get_run(run_id)
        if run is None:
            raise CommandFailed(f'Got "{run_id}" for run; no such run')
        if run.status in TERMINAL_STATUSES:
            raise CommandFailed(f"run {run_id} already ended ({run.status.value}); nothing to cancel")
        if run.status == RunStatus.SUCCEEDED:
            raise CommandFailed(f"run {run_id} already passed the gate and is being promoted",
                                fix="roll back after it if you do not want it serving")
        if run.status in (RunStatus.SUBMITTED, RunStatus.RUNNING):
            self.jobs.stop(run.submission_id)
        self.registry.update_run(run_id, status=RunStatus.CANCELLED, error=f"cancelled by {_who(record)}")
        return CommandOutcome(message=f"run {run_id} cancelled (was {run.status.value})", run_id=run_id)

    def _run_now(self, command: RunNow, record: CommandRecord) -> CommandOutcome:
        self._spec(command.spec)
        latest = self.registry.list_runs(command.spec, limit=1)
        if not latest:
            raise CommandFailed(f"spec {command.spec} has no closed window yet to run over",
                                fix="publish data first; run-now repeats the most recent window")
        source = latest[0]
        run = _manual_run(source, record)
        self.registry.commit_window("", {}, {}, [run])  # idempotent: a rerun of this command inserts nothing
        return CommandOutcome(message=f"manual run {run.run_id} queued over the data of run {source.run_id}",
                              run_id=run.run_id)


    def _replay(self, command: Replay, record: CommandRecord) -> CommandOutcome:
        spec = self._spec(command.spec).spec
        if self.history is None or self.store is None:
            raise CommandFailed(f"this controller cannot replay {command.spec}: it has no broker to read history from")
        records = self.history(spec.trigger.topic, command)
        runs = build_replay_runs(spec, command, record.id, records, self.store, self.platform_roots)
        if not runs:
            raise CommandFailed(f"replay of {command.spec} found no events of dataset {spec.dataset.name} on "
                                f"{spec.trigger.topic} from {command.describe().split(' from ', 1)[1]}",
                                fix="check the start, and the topic's retention (retention.ms)")
        inserted = self.registry.commit_window("", {}, {}, runs)  # idempotent: carried out again, inserts nothing
        rows = sum(r.num_rows for r in runs)
        return CommandOutcome(message=f"replay of {command.spec}: {len(runs)} window(s), {rows} rows, "
                                      f"{len(inserted)} run(s) queued", run_id=runs[0].run_id)


def _manual_run(source: RunRecord, record: CommandRecord) -> RunRecord:
    digest = hashlib.sha256(f"manual:{record.id}".encode()).hexdigest()[:16]
    return RunRecord(
        run_id=f"r-{digest}", spec_name=source.spec_name, dataset=source.dataset, reason="manual",
        event_ids=source.event_ids, offsets=source.offsets, num_rows=source.num_rows, uris=source.uris,
        command_id=record.id, trigger_detail=TriggerDetail(kind="manual", rows=source.num_rows, command_id=record.id),
    )


def _who(record: CommandRecord) -> str:
    return f"{record.actor}: {record.reason}" if record.reason else record.actor
