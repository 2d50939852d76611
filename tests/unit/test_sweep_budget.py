"""Sweep budgets (sweeps/budget.py): the spend accounting, when a limit stops the sweep, what the result says,
what carries over a restored experiment, and the JobSpec's checks on the limits.

Pure logic: a scripted clock, and Tune's trial objects stood in for by the three attributes the callback reads
(``trial_id``, ``status``, ``placement_group_factory.required_resources``). The real sweep stopped by a budget is
tests/integration/test_sweep_budget_stop.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from ray import cloudpickle

from streamtune.artifacts import ArtifactStore
from streamtune.config import load_jobspec
from streamtune.config.jobspec import JobSpec, SweepSpec
from streamtune.controller.runs import RunAdvancer, _lineage
from streamtune.errors import ConfigError, SweepError
from streamtune.registry import SqliteRegistry
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.sweeps.budget import SpendLedger, SpendState, SweepBudget
from streamtune.sweeps.driver import _pick_winner, budget_line, result_uri
from streamtune.sweeps.schema import HoldoutScores, SweepResult, SweepSpend, TrialSummary

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"a": {"type": "int", "low": 1, "high": 3}}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trial(trial_id: str, status: str = "RUNNING", cpu: float = 1.0, gpu: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status,
                           placement_group_factory=SimpleNamespace(required_resources={"CPU": cpu, "GPU": gpu}))


def test_ledger_counts_each_trials_resources_times_its_held_seconds() -> None:
    ledger = SpendLedger()
    ledger.start("a", cpu=2.0, gpu=0.5, now=10.0)
    ledger.start("a", cpu=2.0, gpu=0.5, now=15.0)  # started again while holding: still from 10
    ledger.start("b", cpu=1.0, gpu=0.0, now=20.0)
    assert ledger.cpu_seconds(now=30.0) == 2.0 * 20 + 1.0 * 10
    ledger.stop("a", now=40.0)
    ledger.stop("a", now=90.0)  # ended twice: the second changes nothing
    assert ledger.running() == ["b"]
    assert ledger.cpu_seconds(now=50.0) == 2.0 * 30 + 1.0 * 30
    assert ledger.gpu_seconds(now=50.0) == 0.5 * 30
    ledger.start("a", cpu=2.0, gpu=0.5, now=60.0)  # resumed after a pause: a second interval
    assert ledger.gpu_seconds(now=70.0) == 0.5 * 30 + 0.5 * 10
    assert ledger.started == {"a", "b"}


@pytest.mark.parametrize(("limits", "reason", "at"), [
    ({"cpu_hours": 0.01}, "cpu_hours", 18.0),   # 2 CPUs: 36 CPU-seconds after 18 s
    ({"gpu_hours": 0.005}, "gpu_hours", 36.0),  # 0.5 GPU: 18 GPU-seconds after 36 s
    ({"time_s": 25.0}, "time_budget", 25.0),
])
def test_each_limit_stops_the_sweep_once_reached(limits: dict, reason: str, at: float) -> None:
    clock = Clock()
    budget = SweepBudget(planned=4, clock=clock, **limits)
    callback, stopper = budget.tune_callback(), budget.tune_stopper()
    trial = _trial("t1", cpu=2.0, gpu=0.5)
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    stops = []
    for second in range(0, 60):
        clock.now = float(second)
        if stopper.stop_all():
            stops.append(second)
    assert stops[0] == at
    assert budget.stopped_by == reason and budget.cut == {"t1"}


def test_a_paused_trial_stops_spending_until_it_runs_again() -> None:
    clock = Clock()
    budget = SweepBudget(cpu_hours=1.0, clock=clock)
    callback = budget.tune_callback()
    a, b = _trial("a"), _trial("b")
    callback.on_trial_start(iteration=0, trials=[a, b], trial=a)
    callback.on_trial_start(iteration=0, trials=[a, b], trial=b)
    clock.now = 10.0
    a.status = "PAUSED"  # HyperBand paused it: Tune gave its resources back
    callback.on_step_end(iteration=1, trials=[a, b])
    clock.now = 30.0
    callback.on_trial_complete(iteration=2, trials=[a, b], trial=b)
    assert budget.cpu_seconds(30.0) == 10.0 + 30.0
    a.status = "RUNNING"
    callback.on_trial_start(iteration=3, trials=[a, b], trial=a)
    clock.now = 35.0
    callback.on_trial_error(iteration=4, trials=[a, b], trial=a)
    assert budget.cpu_seconds(100.0) == 10.0 + 30.0 + 5.0


def test_spent_sorts_trials_and_names_the_budget_that_cut_the_sweep_short() -> None:
    clock = Clock()
    budget = SweepBudget(cpu_hours=0.01, planned=4, clock=clock)
    for trial_id in ("t1", "t2", "t3"):
        budget.ledger.start(trial_id, cpu=1.0, gpu=0.0, now=0.0)
    clock.now = 12.0
    budget.ledger.stop("t1", now=12.0)  # finished
    budget.ledger.stop("t2", now=12.0)  # pruned by the scheduler
    budget.check()
    clock.now = 40.0
    assert budget.check() == "cpu_hours" and budget.cut == {"t3"}
    budget.finish()
    trials = [TrialSummary(trial_id="t1", params={}, artifact_uri="s3://b/t1"),
              TrialSummary(trial_id="t2", params={}, iterations=1),
              TrialSummary(trial_id="t3", params={}, iterations=2)]
    spent = budget.spent(trials)
    assert (spent.trials_planned, spent.trials_started, spent.trials_completed, spent.trials_pruned,
            spent.trials_stopped, spent.trials_failed) == (4, 3, 1, 1, 1, 0)
    assert spent.stopped_by == "cpu_hours" and spent.cpu_hours_budget == 0.01
    assert spent.cpu_hours == pytest.approx((12 + 12 + 40) / 3600, abs=1e-6)
    assert spent.wall_s == 28.0  # from the first check, as Tune's own time budget counts


def test_a_budget_reached_after_every_planned_trial_completed_stopped_nothing() -> None:
    budget = SweepBudget(time_s=1.0, planned=1, clock=Clock())
    budget.stopped_by = "time_budget"  # reached on the step the last trial ended
    spent = budget.spent([TrialSummary(trial_id="t1", params={}, artifact_uri="s3://b/t1")])
    assert spent.stopped_by == "completed" and spent.trials_completed == 1


def test_what_was_spent_carries_into_a_restored_experiment() -> None:
    """Tune checkpoints the callback's state and unpickles its stopper on restore: both reach the live budget."""
    clock = Clock()
    first = SweepBudget(cpu_hours=0.01, planned=4, key="s3://b/runs/r-1", clock=clock)
    callback, stopper = first.tune_callback(), first.tune_stopper()
    callback.on_trial_start(iteration=0, trials=[], trial=_trial("t1"))
    clock.now = 30.0
    assert stopper.stop_all() is False
    state, pickled = callback.get_state(), cloudpickle.dumps(stopper)

    second = SweepBudget(cpu_hours=0.01, planned=4, key="s3://b/runs/r-1", clock=clock)  # the next attempt
    restored = cloudpickle.loads(pickled)
    second.tune_callback().set_state(state)
    assert second.carried == SpendState(cpu_s=30.0, elapsed_s=0.0, started=["t1"])
    clock.now = 31.0
    second.ledger.start("t2", cpu=1.0, gpu=0.0, now=31.0)
    clock.now = 37.0
    assert restored.stop_all() is True and second.stopped_by == "cpu_hours"  # 30 + 6 CPU-seconds
    assert first.stopped_by is None  # the earlier attempt's budget is not the one checked
    assert second.spent([]).trials_started == 2


def test_a_budget_without_a_key_pickles_as_itself() -> None:
    budget = SweepBudget(time_s=5.0, planned=2)
    copy = cloudpickle.loads(cloudpickle.dumps(budget))
    assert copy is not budget and (copy.time_s, copy.planned) == (5.0, 2)


def test_a_budget_that_ran_out_before_any_model_says_so() -> None:
    spec = _spec(cpu_hours=0.001)
    budget = SweepBudget.from_spec(spec.sweep, key=None)
    budget.stopped_by, budget.cut = "cpu_hours", {"t1"}
    spent = budget.spent([TrialSummary(trial_id="t1", params={"a": 1}, metrics={"rmse": 1.0}, iterations=2)],
                         wall_s=4.0)
    with pytest.raises(SweepError) as info:
        _pick_winner([TrialSummary(trial_id="t1", params={"a": 1}, metrics={"rmse": 1.0}, iterations=2)], spec,
                     spent)
    assert str(info.value).startswith(budget_line(spent) + " before any trial saved a model")
    assert "sweep.cpu_hours of 0.001 ran out" in str(info.value) and "raise sweep.cpu_hours" in str(info.value)


def test_the_winner_is_the_best_trial_that_saved_a_model_when_a_budget_stopped_the_sweep() -> None:
    spec = _spec(time_budget=10)
    trials = [TrialSummary(trial_id="t1", params={"a": 1}, metrics={"rmse": 2.0}, artifact_uri="s3://b/t1"),
              TrialSummary(trial_id="t2", params={"a": 2}, metrics={"rmse": 1.0}, artifact_uri="s3://b/t2"),
              TrialSummary(trial_id="t3", params={"a": 3}, metrics={"rmse": 0.5}, iterations=1)]  # cut, no model
    budget = SweepBudget.from_spec(spec.sweep)
    budget.stopped_by, budget.cut = "time_budget", {"t3"}
    best, _ = _pick_winner(trials, spec, budget.spent(trials))
    assert best.trial_id == "t2"


def _spec(**sweep: object) -> JobSpec:
    return JobSpec.parse({
        "name": "budgets", "dataset": {"name": "d", "label": "y"}, "job": {"entrypoint": "a.b:C"},
        "sweep": {"metric": "rmse", "mode": "min", "num_samples": 4, "space": SPACE, **sweep},
        "serve": {"app": "budgets"},
    })


@pytest.mark.parametrize(("field", "value"), [
    ("cpu_hours", 0), ("gpu_hours", -1.5), ("time_budget", 0), ("time_budget", "0s"), ("cpu_hours", float("nan")),
])
def test_a_budget_must_be_above_zero(field: str, value: object) -> None:
    extra = {"resources": {"gpu": 1}} if field == "gpu_hours" else {}
    with pytest.raises(ConfigError) as info:
        _spec(**{field: value}, **extra)
    assert info.value.headline == f'Got "{value}" for sweep.{field}; a budget must be greater than 0; null for no limit'


def test_gpu_hours_needs_trials_that_hold_a_gpu() -> None:
    with pytest.raises(ConfigError) as info:
        _spec(gpu_hours=2)
    assert info.value.headline.startswith('Got "2" for sweep.gpu_hours with sweep.resources.gpu 0; trials that hold '
                                          "no GPU never spend GPU-hours")
    sweep = _spec(gpu_hours=2, cpu_hours="1", time_budget="90m", resources={"gpu": 0.5}).sweep
    assert (sweep.gpu_hours, sweep.cpu_hours, sweep.time_budget) == (2.0, 1.0, 5400.0)


def test_budgets_default_to_the_time_budget_only() -> None:
    sweep = SweepSpec(metric="rmse", mode="min", space=SPACE)
    assert (sweep.time_budget, sweep.cpu_hours, sweep.gpu_hours) == (3600.0, None, None)
    assert SweepSpec(metric="rmse", mode="min", space=SPACE, time_budget=None).time_budget is None


def test_the_spend_reaches_the_run_record_and_the_models_lineage(tmp_path: Path) -> None:
    """What the controller stores: the run's sweep result (read back by Client.run) and the version's lineage."""
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    spec = spec.model_copy(update={"job": spec.job.model_copy(update={"code_uri": "/store/code/0123.zip"})})
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    record = reg.put_spec(spec)
    jobs = SimpleNamespace(submit=lambda *a, **k: True, status=lambda sid: "SUCCEEDED", stop=lambda sid: None)
    adv = RunAdvancer(reg, jobs, services=None, store=ArtifactStore(str(tmp_path / "a")))  # type: ignore[arg-type]
    run = RunRecord(run_id="r-0000000000000001", spec_name=spec.name, dataset="sales", status=RunStatus.RUNNING)
    reg.commit_window("g", {}, {}, [run])
    budget = SweepBudget(cpu_hours=0.5, planned=4, clock=Clock())
    budget.stopped_by, budget.cut = "cpu_hours", {"t2"}
    best = TrialSummary(trial_id="t1", params={"a": 1}, metrics={spec.sweep.metric: 1.0}, artifact_uri="/m/t1")
    spent = budget.spent([best, TrialSummary(trial_id="t2", params={"a": 2}, iterations=1)], wall_s=12.0)
    result = SweepResult(run_id=run.run_id, best=best, trials=[best], spent=spent,
                         holdout=HoldoutScores(metric=spec.sweep.metric, challenger=1.0, rows=10),
                         snapshot={"fingerprint": "f", "num_rows": 10})
    adv.store.put_text(result_uri(adv.out_uri(run)), result.model_dump_json())
    adv.step_spec(record)
    stored = reg.get_run(run.run_id)
    assert stored is not None and stored.sweep is not None
    assert SweepSpend.model_validate(stored.sweep["spent"]) == spent and spent.stopped_by == "cpu_hours"
    assert _lineage(stored, result, spec)["spent"] == spent.model_dump(mode="json")
