"""The :class:`ControlPlane` interface: what a caller can read, and the commands it can ask for.

Implementations supply a few primitives (reads, ``append``, ``publish``, ``predict``, ``status``); the
operations users call (``submit``, ``promote``, ``rollback``, ``cancel``, ``run_now``, ``pause``,
``resume``, ``wait``) are built on them here once, so every implementation behaves the same.

Example:
    >>> from streamtune.control import LocalControlPlane
    >>> from streamtune.config.settings import Settings
    >>> import tempfile
    >>> cp = LocalControlPlane(Settings(home=tempfile.mkdtemp()))
    >>> cp.pause("ctr", wait=False).command.describe()
    'pause spec ctr'
    >>> cp.status().pending_commands
    1
"""

from __future__ import annotations

import getpass
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamtune.config._format import format_validation_error
from streamtune.config.jobspec import JobSpec, load_jobspec
from streamtune.control.records import ControlStatus, Prediction, PublishedEvent, RunLogs
from streamtune.errors import CommandFailed, NotFoundError, ServiceError, StreamtuneError
from streamtune.events.schema import DataArrival
from streamtune.registry.commands import (
    ApproveRun,
    CancelRun,
    Command,
    CommandRecord,
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
from streamtune.registry.records import TERMINAL_STATUSES, AliasEvent, ModelVersion, RunRecord, RunStatus, SpecRecord
from streamtune.sweeps.progress import SweepProgress

_NO_CONTROLLER_AFTER_S = 3.0


class ControlPlane(ABC):
    """What every streamtune client can do, locally or (later) over HTTP.

    Args:
        actor: Who asks, recorded with every command (default: the OS user).
        command_timeout_s: How long the command methods wait for the controller by default.
    """

    def __init__(self, *, actor: str | None = None, command_timeout_s: float = 300.0) -> None:
        self.actor = actor or getpass.getuser()
        self.command_timeout_s = command_timeout_s

    # -- primitives ----------------------------------------------------------------------------------

    @abstractmethod
    def specs(self) -> list[SpecRecord]:
        """Every submitted spec, by name."""

    @abstractmethod
    def runs(self, spec: str | None = None, status: RunStatus | str | list[RunStatus | str] | None = None,
             limit: int = 50) -> list[RunRecord]:
        """Runs, newest first, optionally of one spec and of the given status(es)."""

    @abstractmethod
    def find_run(self, run_id: str) -> RunRecord | None:
        """One run, or None."""

    @abstractmethod
    def models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions, by name then version."""

    @abstractmethod
    def champion(self, name: str) -> ModelVersion | None:
        """The version the champion alias of ``name`` points at, or None."""

    @abstractmethod
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Alias changes of model ``name`` (of one alias if given), oldest first, with who asked and why."""

    @abstractmethod
    def commands(self, limit: int = 50) -> list[CommandRecord]:
        """Commands, newest first."""

    @abstractmethod
    def find_command(self, command_id: str) -> CommandRecord | None:
        """One command, or None."""

    @abstractmethod
    def status(self) -> ControlStatus:
        """The controller's lease, every spec at a glance, and the command queue."""

    @abstractmethod
    def append(self, command: Command, *, reason: str = "", actor: str | None = None) -> CommandRecord:
        """Append a command for the active controller, as ``actor`` (default :attr:`actor`)."""

    @abstractmethod
    def publish(self, events: Iterable[DataArrival], topic: str | None = None) -> list[PublishedEvent]:
        """Send data-arrival events to Kafka (the default events topic unless ``topic`` is given)."""

    @abstractmethod
    def predict(self, name: str, rows: list[dict[str, Any]], timeout_s: float = 10) -> Prediction:
        """Ask the model (spec) ``name``'s Serve app for predictions of ``rows``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def sweep_progress(self, run: RunRecord) -> SweepProgress | None:
        """The run's sweep progress as the job last wrote it (a primitive; see :meth:`progress`).

        Raises:
            ServiceError: this control plane cannot read the run's folder.
        """
        raise ServiceError("this control plane cannot read sweep progress")

    def progress(self, run_id: str) -> SweepProgress | None:
        """The sweep's progress while it runs: trials done, running, pruned and failed, each one's curve of the
        sweep metric, and the best so far; None before the sweep's first report.

        Raises:
            NotFoundError: no such run.

        Example:
            >>> p = client.progress("r-0123456789abcdef")  # doctest: +SKIP
            >>> p.counts(), p.best  # doctest: +SKIP
            ({'running': 2, 'done': 3, 'pruned': 1, 'error': 0}, 2.71)
        """
        return self.sweep_progress(self.run(run_id))

    def job_logs(self, run: RunRecord, attempt: int) -> RunLogs:
        """The Ray Job log of attempt ``attempt`` of ``run`` (a primitive; see :meth:`logs`).

        Raises:
            ServiceError: this control plane cannot reach the cluster's job logs.
        """
        raise ServiceError(f"{type(self).__name__} cannot read Ray Job logs",
                           fix="use a Client of the platform's API (STREAMTUNE_URL) or one beside its registry")

    def ship_code(self, spec: JobSpec) -> JobSpec:
        """Make the spec's job code reachable by the platform; returns the spec to submit (here: unchanged).

        A client on another machine overrides this to upload the code and point ``job.code`` at the copy.
        """
        return spec

    # -- reads built on the primitives ---------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord:
        """One run.

        Raises:
            NotFoundError: no run has that id.
        """
        run = self.find_run(run_id)
        if run is None:
            raise NotFoundError(f'Got "{run_id}" for run; no such run', fix="list runs with `streamtune runs`")
        return run

    def command(self, command_id: str) -> CommandRecord:
        """One command.

        Raises:
            NotFoundError: no command has that id.
        """
        record = self.find_command(command_id)
        if record is None:
            raise NotFoundError(f'Got "{command_id}" for command; no such command')
        return record

    # -- commands ------------------------------------------------------------------------------------

    def submit(self, spec: JobSpec | str | Path, *, reason: str = "", wait: bool = True,
               timeout_s: float | None = None) -> CommandRecord:
        """Submit a JobSpec (object or YAML path); the controller stores it and watches its topic.

        Raises:
            ConfigError: the YAML or the spec is invalid (checked here, before anything is sent).
            CommandFailed: the controller refused it (e.g. its job code folder does not exist).
        """
        if not isinstance(spec, JobSpec):
            spec = load_jobspec(spec)
        return self._ask(SubmitSpec(spec=self.ship_code(spec)), reason, wait, timeout_s)

    def pause(self, name: str, *, reason: str = "", wait: bool = True) -> CommandRecord:
        """Stop starting runs of spec ``name``; windows still close into pending runs."""
        return self._ask(PauseSpec(spec=name), reason, wait, None)

    def resume(self, name: str, *, reason: str = "", wait: bool = True) -> CommandRecord:
        """Start runs of a paused spec again."""
        return self._ask(ResumeSpec(spec=name), reason, wait, None)

    def delete_spec(self, name: str, *, force: bool = False, reason: str = "", wait: bool = True) -> CommandRecord:
        """Remove spec ``name``: its events are no longer trained on (they are dead-lettered), its open window is
        discarded and its pending runs are cancelled. Its model versions stay in the registry, and its Serve app
        keeps serving the last champion.

        Raises:
            NotFoundError: no spec has that name (checked here first).
            CommandFailed: a run of it is in flight and ``force`` is False (``force`` stops and cancels it).

        Example:
            >>> cp.delete_spec("ctr", force=True, wait=False).command.describe()  # doctest: +SKIP
            'delete spec ctr (force)'
        """
        if all(s.name != name for s in self.specs()):
            names = ", ".join(s.name for s in self.specs()) or "none"
            raise NotFoundError(f'Got "{name}" for spec; no spec of that name is stored (specs: {names})')
        return self._ask(DeleteSpec(spec=name, force=force), reason, wait, None)

    def promote(self, name: str, version: int, *, reason: str = "", wait: bool = True,
                timeout_s: float | None = None) -> CommandRecord:
        """Hot-swap a registered version into serving and make it the champion; ``outcome.swap`` has the numbers.

        Raises:
            NotFoundError: no such model or version (checked here first).
            CommandFailed: the swap failed; the previous version keeps serving.
        """
        self._require_version(name, version)
        return self._ask(Promote(model=name, version=version), reason, wait, timeout_s)

    def rollback(self, name: str, *, reason: str = "", wait: bool = True,
                 timeout_s: float | None = None) -> CommandRecord:
        """Swap back to the champion before the current one.

        Raises:
            NotFoundError: the model has no previous champion (checked here first).
            CommandFailed: the swap failed; the current version keeps serving.
        """
        history = [e for e in self.alias_history(name, "champion") if e.version is not None]
        if not history or history[-1].previous is None:
            raise NotFoundError(f"model {name} has no previous champion to roll back to",
                                fix="promote a version by number instead")
        return self._ask(Rollback(model=name), reason, wait, timeout_s)

    def cancel(self, run_id: str, *, reason: str = "", wait: bool = True) -> CommandRecord:
        """End a run that has not passed the gate yet (its Ray Job is stopped)."""
        self.run(run_id)
        return self._ask(CancelRun(run_id=run_id), reason, wait, None)

    def retry(self, run_id: str, *, reason: str = "", wait: bool = True) -> CommandRecord:
        """Start a new attempt of a failed run at once: a new Ray Job (``<run_id>-a<N>``) over the same window.

        Raises:
            NotFoundError: no run has that id (checked here first).
            CommandFailed: the run did not fail (checked here first, and again by the controller).

        Example:
            >>> client.retry("r-0123456789abcdef").outcome.message  # doctest: +SKIP
            'run r-0123456789abcdef queued again as attempt 2 (Ray Job r-0123456789abcdef-a2)'
        """
        run = self.run(run_id)
        if run.status != RunStatus.FAILED:
            raise CommandFailed(f"run {run_id} is {run.status.value}; only a failed run can be retried",
                                fix="see `streamtune runs` for failed runs")
        return self._ask(RetryRun(run_id=run_id), reason, wait, None)

    def approve(self, run_id: str, *, reason: str = "", wait: bool = True) -> CommandRecord:
        """Approve a run awaiting approval (``promotion: manual``): it is promoted next, and this client's actor
        is recorded as the approver (``run.gate["approval"]``, the model's ``lineage["approved_by"]``).

        Raises:
            NotFoundError: no run has that id (checked here first).
            CommandFailed: the run is not awaiting approval (checked here first, and again by the controller).

        Example:
            >>> client.approve("r-0123456789abcdef", reason="checked the slices").outcome.message  # doctest: +SKIP
            'run r-0123456789abcdef approved by ana; it is promoted next'
        """
        run = self.run(run_id)
        if run.status != RunStatus.AWAITING_APPROVAL:
            raise CommandFailed(f"run {run_id} is {run.status.value}; only a run awaiting approval can be approved",
                                fix="see `streamtune runs` for runs awaiting_approval")
        return self._ask(ApproveRun(run_id=run_id), reason, wait, None)

    def logs(self, run_id: str, *, attempt: int | None = None) -> RunLogs:
        """The Ray Job log of a run's attempt (default: its current attempt), with the attempt's error if any.

        Raises:
            NotFoundError: no such run or attempt, or the cluster no longer has the job (Ray restarted).

        Example:
            >>> print(client.logs("r-0123456789abcdef", attempt=1).text[-80:])  # doctest: +SKIP
            ValueError: boom
        """
        run = self.run(run_id)
        number = run.attempt if attempt is None else attempt
        if not 1 <= number <= run.attempt:
            raise NotFoundError(f'Got "{number}" for attempt of run {run_id}; it has attempts 1 to {run.attempt}')
        return self.job_logs(run, number)

    def run_now(self, name: str, *, reason: str = "", wait: bool = True) -> CommandRecord:
        """Queue a manual run over the data of spec ``name``'s most recent window; ``outcome.run_id`` names it."""
        return self._ask(RunNow(spec=name), reason, wait, None)

    def replay(self, name: str, *, from_offset: int | None = None, from_time: float | None = None,
               reason: str = "", wait: bool = True) -> CommandRecord:
        """Rebuild spec ``name``'s windows from Kafka's retained history as replay runs (a backfill).

        Exactly one of ``from_offset`` (every partition) and ``from_time`` (Unix seconds) says where to start;
        the replay reads to the topic's end at that moment. Replay runs never collide with live windows and
        skip live deduplication (see :class:`~streamtune.registry.commands.Replay`).

        Example:
            >>> client.replay("sales-gbdt", from_offset=0).outcome.message  # doctest: +SKIP
            'replay of sales-gbdt: 3 window(s), 6000 rows, 3 run(s) queued'
        """
        try:
            command = Replay(spec=name, from_offset=from_offset, from_time=from_time)
        except ValidationError as exc:
            raise format_validation_error(exc, prefix="replay") from None
        return self._ask(command, reason, wait, None)

    def _ask(self, command: Command, reason: str, wait: bool, timeout_s: float | None) -> CommandRecord:
        record = self.append(command, reason=reason)
        return self.wait_command(record.id, timeout_s) if wait else record

    def _require_version(self, name: str, version: int) -> None:
        versions = [m.version for m in self.models(name)]
        if not versions:
            specs = ", ".join(s.name for s in self.specs()) or "none"
            raise NotFoundError(f'Got "{name}" for model; no model of that name is registered (specs: {specs})')
        if version not in versions:
            raise NotFoundError(f'Got "{version}" for version of model {name}; registered versions: '
                                f"{', '.join(map(str, versions))}")

    # -- waiting -------------------------------------------------------------------------------------

    def wait_command(self, command_id: str, timeout_s: float | None = None) -> CommandRecord:
        """Wait until the controller has carried out a command; return it, or raise if it failed.

        Raises:
            CommandFailed: the controller recorded an error (its headline is the error's).
            ServiceError: no controller is active to carry it out, or ``timeout_s`` passed. The command stays
                queued either way and runs once a controller is active.
        """
        timeout_s = self.command_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        while True:
            record = self.command(command_id)
            if record.done:
                if record.error is not None:
                    raise CommandFailed(record.error)
                return record
            waited = time.monotonic() - started
            if waited > _NO_CONTROLLER_AFTER_S and record.started_at is None:
                self._require_controller(record)
            if waited > timeout_s:
                raise ServiceError(f"command {command_id} ({record.command.describe()}) did not finish within "
                                   f"{timeout_s:.0f}s; it is {record.status.value}",
                                   fix="check `streamtune status` and the controller log")
            time.sleep(0.1)

    def _require_controller(self, record: CommandRecord) -> None:
        controller = self.status().controller
        if controller is None or not controller.active:
            since = "" if controller is None else f" (the last lease lapsed {-controller.expires_in_s:.0f}s ago)"
            raise ServiceError(
                f"no active controller to carry out command {record.id} ({record.command.describe()}){since}",
                fix="start one with `streamtune up`; the command stays queued and runs when a controller is active",
            )

    def wait(self, run_id: str | None = None, *, spec: str | None = None, event_ids: Iterable[str] = (),
             timeout_s: float = 600, on_change: Callable[[RunRecord], None] | None = None,
             on_progress: Callable[[RunRecord, SweepProgress], None] | None = None) -> RunRecord:
        """Wait for a run to end (promoted, rejected, failed or cancelled).

        Name the run by ``run_id``, or by the ``event_ids`` it must contain, or take the newest run of
        ``spec``. ``on_change`` is called with the run each time its status changes; ``on_progress`` with the
        run and its sweep's progress (trials done, running and pruned, the best so far) each time the sweep
        writes new progress.

        Raises:
            StreamtuneError: the run did not end within ``timeout_s``.

        Example:
            >>> client.wait(spec="sales-gbdt", on_progress=lambda run, p: print(p.counts(), p.best))  # doctest: +SKIP
            {'running': 2, 'done': 0, 'pruned': 0, 'error': 0} 3.12
        """
        wanted = set(event_ids)
        deadline = time.monotonic() + timeout_s
        last: RunStatus | None = None
        seen_progress = 0.0
        while time.monotonic() < deadline:
            run = self.find_run(run_id) if run_id else self._newest(spec, wanted)
            if run is not None and run.status != last:
                last = run.status
                if on_change:
                    on_change(run)
            if run is not None and on_progress and run.status in (RunStatus.SUBMITTED, RunStatus.RUNNING):
                seen_progress = self._report_progress(run, on_progress, seen_progress)
            if run is not None and run.status in TERMINAL_STATUSES:
                return run
            time.sleep(0.25)
        raise StreamtuneError(f"run {run_id or spec or sorted(wanted)[:3]} did not finish within {timeout_s:.0f}s",
                              fix="check `streamtune runs` and the logs under STREAMTUNE_HOME/logs")

    def _report_progress(self, run: RunRecord, on_progress: Callable[[RunRecord, SweepProgress], None],
                         seen: float) -> float:
        """Call ``on_progress`` if the sweep wrote progress newer than ``seen``; return the newest time seen."""
        try:
            progress = self.sweep_progress(run)
        except StreamtuneError:  # progress is a view; waiting goes on without it
            return seen
        if progress is not None and progress.updated_at > seen:
            on_progress(run, progress)
            return progress.updated_at
        return seen

    def _newest(self, spec: str | None, wanted: set[str]) -> RunRecord | None:
        for run in self.runs(spec, limit=50):
            if not wanted or wanted & set(run.event_ids):
                return run
        return None
