"""A sweep's budgets: limits on wall time, CPU-hours and GPU-hours that stop it cleanly, and what it spent.

``sweep.num_samples`` caps the trials; ``sweep.time_budget`` (seconds), ``sweep.cpu_hours`` and
``sweep.gpu_hours`` cap what they may take. A :class:`SweepBudget` keeps a :class:`SpendLedger` of each trial's
CPUs and GPUs (its placement group's) times the seconds it held them, from Tune starting its actor to the trial
ending, failing or being paused, fed by a Tune callback (:meth:`SweepBudget.tune_callback`). Tune asks its
stopper (:meth:`SweepBudget.tune_stopper`, a public ``ray.tune.Stopper``) after every step whether to stop all
trials. Once a limit is reached the searcher makes no more trials and the running ones are stopped; the sweep
then ends as usual: the trials that saved a model compete for the winner (the best so far), and
:meth:`SweepBudget.spent` says what the sweep spent and which limit stopped it (:class:`SweepSpend`).

Wall time counts from Tune's first step, as Tune's own ``time_budget_s`` does. Across a restored Tune experiment
(a retried attempt that resumes the sweep) what was spent carries over through the callback's state
(``Callback.get_state``/``set_state``), and a stopper or callback unpickled by Tune binds to this process's live
budget of the same key (the run's folder), so the limits hold for the run as a whole.

Example:
    >>> clock = iter([0.0, 1800.0, 3600.0, 3600.0]).__next__
    >>> budget = SweepBudget(cpu_hours=1.0, planned=4, clock=clock)
    >>> budget.ledger.start("t1", cpu=1.0, gpu=0.0, now=clock())
    >>> budget.check(), budget.check()  # half an hour on one CPU, then an hour
    (None, 'cpu_hours')
    >>> s = budget.spent([], wall_s=3600.0)
    >>> s.stopped_by, s.cpu_hours, s.trials_started, s.trials_stopped
    ('cpu_hours', 1.0, 1, 1)
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from streamtune.config.jobspec import SweepSpec
from streamtune.sweeps.schema import StopReason, SweepSpend, TrialSummary

__all__ = ["SpendLedger", "SpendState", "SweepBudget"]


@dataclass
class _Held:
    """A trial that holds its resources now: since when, and how many."""

    since: float
    cpu: float
    gpu: float


class SpendLedger:
    """CPU- and GPU-seconds of a sweep's trials: each trial's resources times the seconds it has held them.

    Starting a trial that already holds its resources, or ending one that does not, changes nothing, so the
    ledger can follow Tune's events and a scan of the trials' states at once.

    Example:
        >>> ledger = SpendLedger()
        >>> ledger.start("a", cpu=2.0, gpu=1.0, now=0.0)
        >>> ledger.start("b", cpu=1.0, gpu=0.0, now=10.0)
        >>> ledger.stop("a", now=20.0)
        >>> ledger.cpu_seconds(now=30.0), ledger.gpu_seconds(now=30.0), ledger.running(), sorted(ledger.started)
        (60.0, 20.0, ['b'], ['a', 'b'])
    """

    def __init__(self) -> None:
        self.started: set[str] = set()
        self._held: dict[str, _Held] = {}
        self._cpu_s = 0.0
        self._gpu_s = 0.0

    def start(self, trial_id: str, *, cpu: float, gpu: float, now: float) -> None:
        """The trial holds ``cpu`` CPUs and ``gpu`` GPUs from ``now`` (again, after a pause)."""
        self.started.add(trial_id)
        if trial_id not in self._held:
            self._held[trial_id] = _Held(since=now, cpu=cpu, gpu=gpu)

    def stop(self, trial_id: str, *, now: float) -> None:
        """The trial gave its resources back at ``now`` (ended, failed, or paused)."""
        held = self._held.pop(trial_id, None)
        if held is not None:
            seconds = max(0.0, now - held.since)
            self._cpu_s += held.cpu * seconds
            self._gpu_s += held.gpu * seconds

    def running(self) -> list[str]:
        """The trials holding resources now, in the order they started."""
        return list(self._held)

    def cpu_seconds(self, *, now: float) -> float:
        """CPU-seconds spent up to ``now``, the running trials' included."""
        return self._cpu_s + sum(h.cpu * max(0.0, now - h.since) for h in self._held.values())

    def gpu_seconds(self, *, now: float) -> float:
        """GPU-seconds spent up to ``now``, the running trials' included."""
        return self._gpu_s + sum(h.gpu * max(0.0, now - h.since) for h in self._held.values())


class SpendState(BaseModel):
    """What a sweep had spent when Tune checkpointed its experiment: carried into a restored one."""

    cpu_s: float = Field(0.0, ge=0, description="CPU-seconds the trials held.")
    gpu_s: float = Field(0.0, ge=0, description="GPU-seconds the trials held.")
    elapsed_s: float = Field(0.0, ge=0, description="Wall seconds the sweep ran (from Tune's first step).")
    started: list[str] = Field(default_factory=list, description="Trials started, by Tune trial id.")


_LIVE: weakref.WeakValueDictionary[str, SweepBudget] = weakref.WeakValueDictionary()
"""This process's budget per key, which a stopper or callback unpickled by Tune binds to."""


def _live_budget(key: str, time_s: float | None, cpu_hours: float | None, gpu_hours: float | None,
                 planned: int, workers: tuple[float, float] = (0.0, 0.0)) -> SweepBudget:
    """Unpickle a budget: this process's live one of ``key``, else a new one (spent nothing yet) made live."""
    live = _LIVE.get(key)
    if live is not None:
        return live
    return SweepBudget(time_s=time_s, cpu_hours=cpu_hours, gpu_hours=gpu_hours, planned=planned, key=key,
                       workers=workers)


class SweepBudget:
    """The limits of one sweep and what it spent; Tune checks it through :meth:`tune_stopper`.

    Args:
        time_s: Wall-clock limit in seconds (``sweep.time_budget``), counted from the first :meth:`check`.
        cpu_hours: Limit on the trials' CPU-hours (``sweep.cpu_hours``).
        gpu_hours: Limit on the trials' GPU-hours (``sweep.gpu_hours``).
        planned: Trials the sweep would run without a budget (``sweep.planned_trials``).
        workers: The CPUs and GPUs each trial's Ray Train workers hold beside its Tune reservation
            (``resources.workers`` x ``cpu``/``gpu`` when ``workers`` > 1; a multi-worker trial itself reserves
            only its 0.01-CPU driver).
        key: What a pickled copy of it binds to when Tune unpickles it in this process (the run's folder);
            None: a copy is a budget of its own.
        clock: Seconds, monotonic (tests pass their own).

    Example:
        >>> clock = iter([0.0, 5.0, 11.0]).__next__
        >>> budget = SweepBudget(time_s=10.0, planned=2, clock=clock)
        >>> [budget.check() for _ in range(3)]
        [None, None, 'time_budget']
        >>> budget.elapsed_s
        11.0
    """

    def __init__(self, *, time_s: float | None = None, cpu_hours: float | None = None,
                 gpu_hours: float | None = None, planned: int = 1, key: str | None = None,
                 clock: Callable[[], float] = time.monotonic, workers: tuple[float, float] = (0.0, 0.0)) -> None:
        self.time_s, self.cpu_hours, self.gpu_hours, self.planned = time_s, cpu_hours, gpu_hours, planned
        self.workers = workers
        self.key, self.clock = key, clock
        self.ledger = SpendLedger()
        self.carried = SpendState()
        self.stopped_by: StopReason | None = None
        self.cut: set[str] = set()
        self._elapsed = 0.0
        self._last: float | None = None
        if key is not None:
            _LIVE[key] = self

    @classmethod
    def from_spec(cls, sweep: SweepSpec, key: str | None = None) -> SweepBudget:
        """The budget a sweep spec sets.

        Example:
            >>> sweep = SweepSpec(metric="rmse", mode="min", num_samples=4, time_budget="10m", cpu_hours=2,
            ...                   space={"a": {"type": "int", "low": 1, "high": 3}})
            >>> b = SweepBudget.from_spec(sweep)
            >>> b.time_s, b.cpu_hours, b.gpu_hours, b.planned, b.workers
            (600.0, 2.0, None, 4, (0.0, 0.0))
            >>> wide = sweep.model_copy(update={"resources": sweep.resources.model_copy(update={"workers": 2})})
            >>> SweepBudget.from_spec(wide).workers  # two Train workers of 1 CPU each, per trial
            (2.0, 0.0)
        """
        res = sweep.resources
        workers = (res.workers * res.cpu, res.workers * res.gpu) if res.workers > 1 else (0.0, 0.0)
        return cls(time_s=sweep.time_budget, cpu_hours=sweep.cpu_hours, gpu_hours=sweep.gpu_hours,
                   planned=sweep.planned_trials, key=key, workers=workers)

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self.key is None:
            return super().__reduce__()
        return _live_budget, (self.key, self.time_s, self.cpu_hours, self.gpu_hours, self.planned, self.workers)

    @property
    def elapsed_s(self) -> float:
        """Wall seconds the sweep has run, earlier attempts' included."""
        return self.carried.elapsed_s + self._elapsed

    def cpu_seconds(self, now: float) -> float:
        """CPU-seconds the trials held up to ``now``, earlier attempts' included."""
        return self.carried.cpu_s + self.ledger.cpu_seconds(now=now)

    def gpu_seconds(self, now: float) -> float:
        """GPU-seconds the trials held up to ``now``, earlier attempts' included."""
        return self.carried.gpu_s + self.ledger.gpu_seconds(now=now)

    def snapshot(self) -> SpendState:
        """What was spent up to now, earlier attempts' included (what Tune checkpoints)."""
        now = self.clock()
        earlier = set(self.carried.started)
        return SpendState(cpu_s=self.cpu_seconds(now), gpu_s=self.gpu_seconds(now), elapsed_s=self.elapsed_s,
                          started=sorted(earlier) + sorted(self.ledger.started - earlier))

    def carry(self, state: SpendState) -> None:
        """Take what an earlier attempt had spent (a restored experiment's checkpoint) as the starting point.

        Example:
            >>> b = SweepBudget(cpu_hours=1.0, clock=lambda: 0.0)
            >>> b.carry(SpendState(cpu_s=3600.0, started=["t1"]))
            >>> b.check(), b.spent([]).trials_started
            ('cpu_hours', 1)
        """
        self.carried = state

    def tick(self) -> float:
        """Count the wall time since the last tick (none before the first) and return the clock's now."""
        now = self.clock()
        if self._last is not None:
            self._elapsed += max(0.0, now - self._last)
        self._last = now
        return now

    def check(self) -> StopReason | None:
        """The limit the sweep has reached, if any: the first reached stays, and the trials running then are
        the ones the budget cut (:attr:`cut`)."""
        now = self.tick()
        if self.stopped_by is None:
            reason = self._over(now)
            if reason is not None:
                self.stopped_by, self.cut = reason, set(self.ledger.running())
        return self.stopped_by

    def _over(self, now: float) -> StopReason | None:
        if self.time_s is not None and self.elapsed_s >= self.time_s:
            return "time_budget"
        if self.cpu_hours is not None and self.cpu_seconds(now) >= self.cpu_hours * 3600:
            return "cpu_hours"
        if self.gpu_hours is not None and self.gpu_seconds(now) >= self.gpu_hours * 3600:
            return "gpu_hours"
        return None

    def finish(self) -> None:
        """The sweep ended: count the last wall seconds and close every open interval."""
        now = self.tick()
        for trial_id in self.ledger.running():
            self.ledger.stop(trial_id, now=now)

    def spent(self, trials: Sequence[TrialSummary], *, wall_s: float | None = None) -> SweepSpend:
        """What the sweep spent, by the trials' summaries and the ledger (call it after the sweep ended).

        A trial is completed when it saved a model without an error, failed when it raised, stopped when it was
        running as a budget ran out, and pruned otherwise (ended early by the scheduler). ``stopped_by`` names a
        budget only when one ended the sweep before every planned trial completed. ``wall_s`` defaults to the
        seconds the budget counted.

        Example:
            >>> budget = SweepBudget(planned=2, clock=lambda: 0.0)
            >>> done = TrialSummary(trial_id="t1", params={}, artifact_uri="s3://b/t1")
            >>> cut = TrialSummary(trial_id="t2", params={}, iterations=1)
            >>> s = budget.spent([done, cut], wall_s=3.0)
            >>> s.stopped_by, s.trials_started, s.trials_completed, s.trials_pruned, s.wall_s
            ('completed', 2, 1, 1, 3.0)
        """
        now = self.clock()
        ids = {t.trial_id for t in trials} | self.ledger.started | set(self.carried.started)
        failed = {t.trial_id for t in trials if t.error}
        completed = {t.trial_id for t in trials if t.artifact_uri and not t.error}
        stopped = (self.cut - completed - failed) if self.stopped_by else set()
        bound = self.stopped_by is not None and (bool(stopped) or len(completed | failed) < self.planned)
        return SweepSpend(
            trials_planned=self.planned, trials_started=len(ids), trials_completed=len(completed),
            trials_pruned=len(ids - completed - failed - stopped), trials_failed=len(failed),
            trials_stopped=len(stopped), wall_s=round(self.elapsed_s if wall_s is None else wall_s, 3),
            cpu_hours=round(self.cpu_seconds(now) / 3600, 6), gpu_hours=round(self.gpu_seconds(now) / 3600, 6),
            stopped_by=self.stopped_by if bound and self.stopped_by else "completed",
            time_budget_s=self.time_s, cpu_hours_budget=self.cpu_hours, gpu_hours_budget=self.gpu_hours,
        )

    def tune_stopper(self) -> Any:
        """A ``ray.tune.Stopper`` whose ``stop_all`` is true once a limit is reached."""
        from ray.tune import Stopper

        budget = self

        class BudgetStopper(Stopper):
            def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
                return False

            def stop_all(self) -> bool:
                return budget.check() is not None

        return BudgetStopper()

    def tune_callback(self) -> Any:
        """A ``ray.tune.Callback`` that feeds the ledger: a trial holds its placement group's CPUs and GPUs from
        its actor's start until it ends, fails, or is seen not running after a step (paused). Its state (what
        was spent) is checkpointed with the experiment and carried into a restored one."""
        from ray.tune import Callback

        budget = self

        def resources(trial: Any) -> tuple[float, float]:
            held = trial.placement_group_factory.required_resources  # + what its Train workers hold
            return float(held.get("CPU", 0.0)) + budget.workers[0], float(held.get("GPU", 0.0)) + budget.workers[1]

        held: dict[str, Any] = {}  # the trials that hold resources now, by id: checked after each step

        class Spending(Callback):
            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                cpu, gpu = resources(trial)
                held[trial.trial_id] = trial
                budget.ledger.start(trial.trial_id, cpu=cpu, gpu=gpu, now=budget.clock())

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                held.pop(trial.trial_id, None)
                budget.ledger.stop(trial.trial_id, now=budget.clock())

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                held.pop(trial.trial_id, None)
                budget.ledger.stop(trial.trial_id, now=budget.clock())

            def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
                # only the trials that hold resources (at most the sweep's concurrency), not every trial:
                # a scan of all trials at every step of Tune's loop grows with the sweep
                now = budget.clock()
                for trial_id in budget.ledger.running():
                    trial = held.get(trial_id)
                    if trial is None or trial.status != "RUNNING":
                        budget.ledger.stop(trial_id, now=now)
                        held.pop(trial_id, None)

            def get_state(self) -> dict[str, Any] | None:
                return budget.snapshot().model_dump()

            def set_state(self, state: dict[str, Any]) -> None:
                budget.carry(SpendState.model_validate(state))

        return Spending()
