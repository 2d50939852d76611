"""Issue 10, search from the JobSpec: samplers, schedulers, conditional spaces, grids and Pareto fronts (no Ray).

The sweeps themselves run in tests/integration/test_sweep_search_kinds.py; here: what the JobSpec accepts and how
it refuses (field, value, rule), the define-by-run space, the grid, the schedulers' construction, the Pareto front
and the winner, and the submit check for PBT.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
import pytest

from streamtune.config import JobSpec, ObjectiveSpec, ParamSpec, SweepSpec
from streamtune.config.jobspec import condition_order
from streamtune.errors import ConfigError, SweepError
from streamtune.job import Job
from streamtune.sweeps.checks import contract_problems
from streamtune.sweeps.runner import pareto_front, pick_winner
from streamtune.sweeps.schema import SweepResult, TrialSummary
from streamtune.sweeps.space import DefineByRun, grid_space, make_sampler, make_scheduler, make_searcher

optuna.logging.set_verbosity(optuna.logging.WARNING)
INT = {"type": "int", "low": 1, "high": 3}
X = {"type": "uniform", "low": 0.0, "high": 1.0}


def _parse(source: str | None = None, **sweep: Any) -> JobSpec:
    body = {"metric": "rmse", "mode": "min", "space": {"a": INT}, **sweep}
    return JobSpec.parse({"name": "s", "dataset": {"name": "d", "label": "y"}, "job": {"entrypoint": "m:J"},
                          "serve": {"app": "s"}, "sweep": body}, source=source)


def _refused(**sweep: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(**sweep)
    return info.value.headline


def _sweep(**kw: Any) -> SweepSpec:
    return SweepSpec.model_validate({"metric": "rmse", "mode": "min", "space": {"a": INT}, **kw})


# -- unknown sampler, scheduler, space type: the headline names field, value and the valid list -------------------

def test_an_unknown_sampler_is_refused_with_the_valid_ones():
    assert _refused(search="bohb") == 'Got "bohb" for sweep.search; must be one of tpe, cmaes, random, grid, nsga2'


def test_an_unknown_scheduler_is_refused_with_the_valid_ones():
    assert _refused(scheduler="pb2") == ('Got "pb2" for sweep.scheduler; must be one of asha, hyperband, median, pbt, '
                                         "none, fifo")


def test_an_unknown_space_type_is_refused_with_the_valid_ones_and_the_file():
    with pytest.raises(ConfigError) as info:
        _parse(source="spec.yaml", space={"lr": {"type": "normal", "low": 0, "high": 1}})
    assert info.value.headline == ('Got "normal" for sweep.space.lr.type; must be one of uniform, loguniform, int, '
                                   "choice in spec.yaml")


@pytest.mark.parametrize("search", ["tpe", "cmaes", "random", "grid"])
@pytest.mark.parametrize("scheduler", ["asha", "hyperband", "median", "none", "fifo"])
def test_every_sampler_and_scheduler_is_accepted(search, scheduler):
    sweep = _parse(search=search, scheduler=scheduler).sweep
    assert (sweep.search, sweep.scheduler) == (search, scheduler)


# -- schedulers ---------------------------------------------------------------------------------------------------

class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def _asha_stops(max_t: int, grace_period: int, rmse: Callable[[int, int], float]) -> list[int]:
    """Drive make_scheduler's ASHA with 8 trials one after the other, trial i reporting ``rmse(i, step)``: the
    step each one is stopped at (max_t + 1: never)."""
    asha = make_scheduler(_sweep(max_t=max_t, grace_period=grace_period))
    asha.set_search_properties("rmse", "min")
    stops = []
    for i in range(8):
        trial = _Trial(f"t{i}")
        asha.on_trial_add(None, trial)
        stop = max_t + 1
        for step in range(1, max_t + 1):
            if asha.on_trial_result(None, trial, {"training_iteration": step, "rmse": rmse(i, step)}) == "STOP":
                stop = step
                break
        stops.append(stop)
    return stops


# (20, 5) and (16, 1): max_t is grace times a power of 4, where Tune itself would put a rung at max_t
CASES = [(20, 5, 5), (16, 1, 1), (6, 2, 2)]


@pytest.mark.parametrize(("max_t", "grace_period", "first_rung"), CASES)
def test_asha_prunes_a_trial_worse_than_the_earlier_ones_at_its_first_rung(max_t, grace_period, first_rung):
    stops = _asha_stops(max_t, grace_period, lambda i, step: float(i))
    assert stops == [max_t + 1] + [first_rung] * 7


@pytest.mark.parametrize(("max_t", "grace_period", "first_rung"), CASES)
def test_asha_never_cuts_a_trial_at_its_last_step_before_its_save(max_t, grace_period, first_rung):
    # every later trial leads at each rung below max_t and is the worst at max_t: it must still reach its end
    stops = _asha_stops(max_t, grace_period, lambda i, step: 1.0 if i == 0 else (2.0 if step == max_t else 0.5))
    assert stops == [max_t + 1] * 8


def test_asha_with_grace_at_max_t_runs_every_trial_to_its_end():
    assert _asha_stops(4, 4, lambda i, step: float(i)) == [5] * 8




def test_hyperband_never_stops_a_trial_that_reached_max_t_and_counts_real_report_steps():
    hb = make_scheduler(_sweep(scheduler="hyperband", max_t=9))
    assert type(hb).__name__ == "HyperBandScheduler"
    assert hb._stop_last_trials is False and hb._max_t_attr == 9 and hb._time_attr == "training_iteration"


def test_median_stops_after_the_grace_period_and_never_pauses_a_trial():
    median = make_scheduler(_sweep(scheduler="median", grace_period=3, max_t=9))
    assert type(median).__name__ == "MedianStoppingRule"
    assert median._grace_period == 3.0 and median._min_time_slice == math.inf and median._hard_stop is True


@pytest.mark.parametrize("name", ["none", "fifo"])
def test_none_and_its_alias_fifo_run_every_trial_to_its_end(name):
    assert type(make_scheduler(_sweep(scheduler=name))).__name__ == "FIFOScheduler"


def test_pbt_perturbs_every_grace_period_steps_over_the_same_space_and_takes_no_searcher():
    sweep = _sweep(scheduler="pbt", search="random", grace_period=4, max_t=20, space={"a": INT, "x": X})
    pbt = make_scheduler(sweep)
    assert type(pbt).__name__ == "PopulationBasedTraining"
    assert pbt._perturbation_interval == 4 and set(pbt._hyperparam_mutations) == {"a", "x"}
    assert make_searcher(sweep, seed=0) is None  # Tune's PBT refuses a search algorithm


def test_pbt_needs_the_random_sampler_and_no_conditional_dimension():
    assert _refused(scheduler="pbt") == ('Got "tpe" for sweep.search with scheduler pbt; PBT draws its first '
                                         "population at random and takes no searcher (Ray Tune), so search must be "
                                         "random")
    space = {"k": {"type": "choice", "values": [1, 2]}, "a": {**INT, "when": {"k": 1}}}
    assert _refused(scheduler="pbt", search="random", space=space).startswith(
        'Got "pbt" for sweep.scheduler; dimension a is conditional (when)')


class _Declared(Job):
    params = frozenset({"a", "x"})
    metrics = {"rmse": "min", "mb": "min"}

    def train(self, config, ctx): ...

    def load(self, artifact_dir): ...


def test_submit_refuses_pbt_for_a_job_that_does_not_checkpoint_and_takes_it_for_one_that_does():
    spec = _parse(scheduler="pbt", search="random")
    assert contract_problems(spec, _Declared) == [
        'Got "pbt" for sweep.scheduler; job m:J does not checkpoint (Job.checkpoints is False), and PBT resumes '
        "trials from copies of other trials' checkpoints: use asha, hyperband, median or none"]

    class Checkpointing(_Declared):
        checkpoints = True

    assert contract_problems(spec, Checkpointing) == []
    assert Job.checkpoints is False


# -- samplers -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("search", "sampler"), [("tpe", "TPESampler"), ("random", "RandomSampler"),
                                                 ("cmaes", "CmaEsSampler"), ("grid", "TuneGridSampler")])
def test_each_search_is_an_optuna_sampler_over_the_define_by_run_space(search, sampler):
    searcher = make_searcher(_sweep(search=search, max_concurrent=3), seed=5)
    assert searcher.max_concurrent == 3
    assert type(searcher.searcher._sampler).__name__ == sampler
    assert isinstance(searcher.searcher._space, DefineByRun)
    assert (searcher.searcher.metric, searcher.searcher.mode) == ("rmse", "min")


def test_nsga2_optimises_every_objective_with_a_population_that_breeds_within_the_sweep():
    sweep = _sweep(search="nsga2", num_samples=40, objectives=[{"metric": "rmse", "mode": "min"},
                                                               {"metric": "mb", "mode": "min"}])
    searcher = make_searcher(sweep, seed=0).searcher
    assert (searcher.metric, searcher.mode) == (["rmse", "mb"], ["min", "min"])
    assert type(searcher._sampler).__name__ == "NSGAIISampler" and searcher._sampler._population_size == 10


def test_the_cmaes_sampler_needs_and_has_the_cmaes_package():
    import cmaes  # a dependency since the sampler needs it

    assert cmaes.__version__
    assert type(make_sampler(_sweep(search="cmaes", space={"x": X, "a": INT}), seed=1)).__name__ == "CmaEsSampler"


# -- grid ---------------------------------------------------------------------------------------------------------

def test_a_grid_refuses_a_continuous_dimension_without_values_naming_it():
    assert _refused(search="grid", space={"a": INT, "lr": {"type": "loguniform", "low": 0.01, "high": 0.3}}) == (
        'Got "grid" for sweep.search; dimension lr is loguniform without values, so it has no grid points: give '
        "sweep.space.lr.values (points within low..high), or make it an int or a choice")


def test_a_grid_takes_choices_ints_and_values_and_caps_num_samples_to_its_size():
    space = {"k": {"type": "choice", "values": ["a", "b"]}, "n": {"type": "int", "low": 2, "high": 4},
             "lr": {"type": "loguniform", "low": 0.01, "high": 0.3, "values": [0.03, 0.1]}}
    sweep = _parse(search="grid", num_samples=100, space=space).sweep
    assert grid_space(sweep.space) == {"k": ["a", "b"], "n": [2, 3, 4], "lr": [0.03, 0.1]}
    assert (sweep.grid_size(), sweep.planned_trials) == (12, 12)
    smaller = _parse(search="grid", num_samples=5, space=space).sweep
    assert smaller.planned_trials == 5  # a seeded random subset of the grid
    assert _parse(search="tpe", num_samples=100, space=space).sweep.planned_trials == 100  # values ignored


def test_grid_points_must_lie_in_low_high_and_be_whole_for_an_int():
    assert _refused(space={"lr": {**X, "values": [0.5, 2.0]}}) == (
        'Got "2.0" for sweep.space.lr.values[1]; a grid point must be a number within low (0) and high (1)')
    assert _refused(space={"n": {**INT, "values": [1.5]}}) == (
        'Got "1.5" for sweep.space.n.values[0]; a grid point of an int must be a whole number')


def test_a_grid_over_a_conditional_dimension_or_too_many_points_is_refused():
    space = {"k": {"type": "choice", "values": [1, 2]}, "a": {**INT, "when": {"k": 1}}}
    assert _refused(search="grid", space=space).startswith(
        'Got "grid" for sweep.search; dimension a is conditional (when), and a grid over conditional dimensions runs '
        "the same trial more than once")
    huge = {"a": {"type": "int", "low": 1, "high": 1000}, "b": {"type": "int", "low": 1, "high": 1000}}
    assert _refused(search="grid", space=huge) == (
        'Got "grid" for sweep.search over 1000000 points; a grid may have at most 100000: give int dimensions fewer '
        "values")


def test_the_grid_sampler_visits_every_point_once_and_does_not_stop_the_study_at_the_end():
    sweep = _sweep(search="grid", num_samples=20, space={"k": {"type": "choice", "values": ["a", "b"]}, "n": INT})
    study = optuna.create_study(sampler=make_sampler(sweep, seed=3))
    space = DefineByRun(sweep.space)
    for _ in range(sweep.planned_trials):
        trial = study.ask()
        space(trial)
        study.tell(trial, 1.0)  # Optuna's own GridSampler raises here at the last point (study.stop outside optimize)
    assert sorted((t.params["k"], t.params["n"]) for t in study.trials) == [(k, n) for k in "ab" for n in (1, 2, 3)]


# -- conditional parameters ---------------------------------------------------------------------------------------

def test_a_condition_is_stored_as_lists_and_ordered_after_what_it_names():
    sweep = _parse(space={"depth": {**INT, "when": {"kind": "tree"}},
                          "kind": {"type": "choice", "values": ["tree", "linear"]}}).sweep
    assert sweep.space["depth"].when == {"kind": ["tree"]}
    assert condition_order(sweep.space) == ["kind", "depth"]


def test_a_when_naming_an_unknown_parameter_is_refused_naming_both():
    assert _refused(space={"a": {**INT, "when": {"kinds": 1}}, "kind": INT}) == (
        'Got "kinds" for sweep.space.a.when; no such parameter in sweep.space (it has a, kind)')


@pytest.mark.parametrize(("space", "cycle"), [
    ({"a": {**INT, "when": {"a": 1}}}, "a when a"),
    ({"a": {**INT, "when": {"b": 1}}, "b": {**INT, "when": {"a": 1}}}, "a when b, b when a"),
    ({"a": {**INT, "when": {"b": 1}}, "b": {**INT, "when": {"c": 1}}, "c": {**INT, "when": {"a": 2}}},
     "a when b, b when c, c when a"),
])
def test_a_cycle_of_conditions_is_refused_naming_the_parameters(space, cycle):
    headline = _refused(space=space)
    assert headline.endswith(f"the conditions make a cycle: {cycle}"), headline
    assert headline.startswith('Got "a" for sweep.space.')


def test_a_condition_that_can_never_hold_is_refused():
    kind = {"type": "choice", "values": ["tree", "linear"]}
    assert _refused(space={"kind": kind, "a": {**INT, "when": {"kind": "forest"}}}) == (
        "Got \"forest\" for sweep.space.a.when.kind; kind takes only ['tree', 'linear']")
    assert _refused(space={"n": INT, "a": {**INT, "when": {"n": [2, 7]}}}) == (
        'Got "7" for sweep.space.a.when.n; n takes only whole numbers from 1 to 3')
    assert _refused(space={"x": X, "a": {**INT, "when": {"x": 0.5}}}).startswith(
        'Got "x" for sweep.space.a.when; x is uniform, and a condition on a continuous parameter never holds exactly')


def test_define_by_run_samples_a_conditional_parameter_only_when_its_whole_chain_holds():
    space = _parse(space={
        "kind": {"type": "choice", "values": ["tree", "linear"]},
        "boost": {"type": "choice", "values": ["gbdt", "dart"], "when": {"kind": "tree"}},
        "drop": {"type": "uniform", "low": 0.0, "high": 0.5, "when": {"boost": "dart", "kind": ["tree"]}},
        "lr": {"type": "loguniform", "low": 0.01, "high": 0.3}}).sweep.space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        DefineByRun(space)(trial)
        p = trial.params
        assert ("boost" in p) == (p["kind"] == "tree"), p
        assert ("drop" in p) == (p.get("boost") == "dart"), p
        seen.add(tuple(sorted(p)))
        study.tell(trial, 0.0)
    assert seen == {("kind", "lr"), ("boost", "kind", "lr"), ("boost", "drop", "kind", "lr")}


# -- multi-objective: the rules, the front, the winner ------------------------------------------------------------

OBJ = [{"metric": "rmse", "mode": "min"}, {"metric": "mb", "mode": "min"}]


def test_nsga2_needs_two_distinct_objectives_with_the_sweep_metric_among_them():
    assert _refused(search="nsga2") == ('Got "nsga2" for sweep.search with 0 objective(s); nsga2 needs '
                                        "sweep.objectives: two or more [{metric, mode}], sweep.metric among them")
    assert _refused(search="nsga2", objectives=OBJ[:1]).startswith('Got "nsga2" for sweep.search with 1 objective(s)')
    assert _refused(search="nsga2", objectives=[OBJ[0], OBJ[0]]) == (
        'Got "rmse" twice in sweep.objectives; each objective must be a different metric')
    assert _refused(search="nsga2", objectives=OBJ, metric="mae") == (
        'Got "mae" for sweep.metric; with search nsga2 it must be one of sweep.objectives (rmse, mb)')
    mixed = [{"metric": "rmse", "mode": "max"}, OBJ[1]]
    assert _refused(search="nsga2", objectives=mixed, metric="rmse", mode="min") == (
        'Got "min" for sweep.mode; sweep.objectives gives rmse mode "max", and the two must agree')
    assert _refused(search="tpe", objectives=OBJ) == (
        'Got "rmse" for sweep.objectives[0].metric with search tpe; objectives apply to search nsga2 only: set '
        "search: nsga2 or remove them")


def test_a_known_metric_in_the_objectives_must_have_its_direction():
    objectives = [OBJ[0], {"metric": "auc", "mode": "min"}]
    assert _refused(search="nsga2", objectives=objectives) == (
        'Got "min" for sweep.objectives[1].mode; metric auc is better when higher, so mode must be "max"')


def test_submit_checks_every_objective_against_what_the_job_reports():
    spec = _parse(search="nsga2", objectives=[OBJ[0], {"metric": "latency", "mode": "min"}])
    assert contract_problems(spec, _Declared) == [
        "Got \"latency\" for sweep.objectives[1].metric; job m:J reports only ['mb', 'rmse']"]
    assert contract_problems(_parse(search="nsga2", objectives=OBJ), _Declared) == []


def _t(i: int, rmse: float | None, mb: float | None, *, saved: bool = True) -> TrialSummary:
    metrics = {k: v for k, v in (("rmse", rmse), ("mb", mb)) if v is not None}
    return TrialSummary(trial_id=f"t{i}", params={}, metrics=metrics, artifact_uri=f"/m/t{i}" if saved else None)


def test_the_pareto_front_keeps_non_dominated_trials_that_saved_a_model_with_every_objective():
    objectives = [ObjectiveSpec(**o) for o in OBJ]
    trials = [_t(0, 1.0, 5.0), _t(1, 2.0, 2.0), _t(2, 3.0, 1.0), _t(3, 2.5, 2.5),  # t3 dominated by t1
              _t(4, 0.1, 0.1, saved=False),  # would dominate all, but saved no model
              _t(5, float("nan"), 0.5), _t(6, 0.5, None),  # an objective missing or not a number
              _t(7, 2.0, 2.0)]  # equal to t1: neither dominates the other
    assert pareto_front(trials, objectives) == ["t0", "t1", "t2", "t7"]
    maximise = [ObjectiveSpec(metric="rmse", mode="min"), ObjectiveSpec(metric="mb", mode="max")]
    assert pareto_front(trials, maximise) == ["t0"]  # best rmse and the largest mb at once


def test_the_winner_is_the_best_of_the_front_by_the_sweep_metric():
    sweep = _sweep(search="nsga2", objectives=OBJ, metric="mb", mode="min")
    best, front = pick_winner([_t(0, 1.0, 5.0), _t(1, 2.0, 2.0), _t(2, 3.0, 1.0), _t(3, 3.5, 1.0)], sweep)
    assert front == ["t0", "t1", "t2"] and best.trial_id == "t2"  # t3 ties t2 on mb but is dominated
    single, none = pick_winner([_t(0, 1.0, 5.0), _t(1, 2.0, 2.0)], _sweep())
    assert single.trial_id == "t0" and none == []


def test_no_trial_with_every_objective_fails_the_sweep_naming_the_missing_one():
    sweep = _sweep(search="nsga2", objectives=OBJ)
    with pytest.raises(SweepError, match=r"no trial of the sweep reported metric 'mb'"):
        pick_winner([_t(0, 1.0, None), _t(1, 2.0, None)], sweep)
    with pytest.raises(SweepError, match=r"every objective \(rmse, mb\) reported"):
        pick_winner([_t(0, 1.0, None), _t(1, None, 2.0)], sweep)


def test_a_sweep_result_carries_the_front_and_older_results_read_without_it():
    result = SweepResult.model_validate({
        "run_id": "r", "best": _t(0, 1.0, 1.0).model_dump(), "trials": [], "snapshot": {},
        "holdout": {"metric": "rmse", "challenger": 1.0, "rows": 10}})
    assert result.pareto == []
    assert result.model_copy(update={"pareto": ["t0"]}).model_dump()["pareto"] == ["t0"]


def test_param_spec_grid_values_and_when_shape():
    assert ParamSpec(type="int", low=1, high=4, values=[1, 3]).grid_values() == [1, 3]
    assert ParamSpec(type="choice", values=["a"], when={"k": [1, 2]}).when == {"k": [1, 2]}
    with pytest.raises(ValueError, match="'when' needs at least one condition"):
        ParamSpec(type="choice", values=["a"], when={})
