"""Issue 10, PBT for jobs that checkpoint: the pure parts (no Ray). The sweep itself runs in
tests/integration/test_sweep_pbt.py.

What PBT mutates (choices by neighbour, numbers kept within the space), at which steps a trial keeps a checkpoint,
what submit accepts (the MLP template) and refuses (the GBDT template, a dimension the job cannot change mid-trial,
several workers), and what a context that cannot checkpoint does.
"""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from jobs.tabular_gbdt import Job as Gbdt
from jobs.torch_mlp import Job as Mlp

from streamtune.config import JobSpec, ParamSpec
from streamtune.errors import ConfigError
from streamtune.job import Job, TrainContext
from streamtune.sweeps.checks import contract_problems
from streamtune.sweeps.runner import wants_checkpoint
from streamtune.sweeps.space import ClipToSpace, checkpoint_period, make_scheduler, pbt_mutations

LR = {"type": "loguniform", "low": 1e-4, "high": 0.05}


def _spec(entrypoint: str, space: dict[str, Any], **sweep: Any) -> JobSpec:
    return JobSpec.parse({"name": "p", "dataset": {"name": "d", "label": "y"}, "job": {"entrypoint": entrypoint},
                          "serve": {"app": "p"}, "sweep": {"metric": "rmse", "mode": "min", "search": "random",
                                                           "scheduler": "pbt", "space": space, **sweep}})


def test_submit_takes_pbt_for_the_mlp_over_what_it_can_change_mid_trial_and_refuses_it_for_the_gbdt():
    mlp = _spec("jobs.torch_mlp:Job", {"lr": LR, "weight_decay": {"type": "uniform", "low": 0, "high": 0.1},
                                       "dropout": {"type": "uniform", "low": 0, "high": 0.5},
                                       "batch_size": {"type": "choice", "values": [32, 64, 128]}})
    assert Mlp.checkpoints and contract_problems(mlp, Mlp) == []
    gbdt = _spec("jobs.tabular_gbdt:Job", {"learning_rate": LR})
    assert contract_problems(gbdt, Gbdt) == [
        'Got "pbt" for sweep.scheduler; job jobs.tabular_gbdt:Job does not checkpoint (Job.checkpoints is False), '
        "and PBT resumes trials from copies of other trials' checkpoints: use asha, hyperband, median or none"]


def test_submit_refuses_pbt_over_a_dimension_the_checkpoint_fixes():
    spec = _spec("jobs.torch_mlp:Job", {"lr": LR, "hidden": {"type": "int", "low": 8, "high": 64}})
    assert contract_problems(spec, Mlp) == [
        'Got "hidden" for a dimension of sweep.space with scheduler pbt; job jobs.torch_mlp:Job cannot change it '
        "when a trial resumes from a checkpoint, and PBT mutates every dimension: it can change only "
        "['batch_size', 'dropout', 'lr', 'weight_decay'] (Job.mutable_params), so fix hidden in job.params or use "
        "another scheduler"]
    asha = spec.model_copy(update={"sweep": spec.sweep.model_copy(update={"scheduler": "asha", "search": "tpe"})})
    assert contract_problems(asha, Mlp) == []  # other schedulers never change params mid-trial


def test_pbt_with_several_workers_is_refused_at_parse():
    with pytest.raises(ConfigError) as caught:
        _spec("jobs.torch_mlp:Job", {"lr": LR}, resources={"workers": 2, "cpu": 0.5})
    assert caught.value.headline.startswith('Got "2" for sweep.resources.workers with scheduler pbt; PBT copies Tune '
                                            "checkpoints between trials, and a multi-worker trial")


def test_pbt_moves_a_choice_to_a_neighbour_and_keeps_numbers_within_the_space():
    space = {"batch_size": ParamSpec(type="choice", values=[32, 64, 128]),
             "act": ParamSpec(type="choice", values=["relu", "tanh"]),
             "dropout": ParamSpec(type="uniform", low=0.0, high=0.5),
             "units": ParamSpec(type="int", low=8, high=16),
             "lr": ParamSpec(type="loguniform", low=1e-4, high=0.05)}
    mutations = pbt_mutations(space)
    assert mutations["batch_size"] == [32, 64, 128] and mutations["act"] == ["relu", "tanh"]
    spec = _spec("m:J", {"lr": LR}).sweep.model_copy(update={"space": space, "grace_period": 2})
    pbt = pickle.loads(pickle.dumps(make_scheduler(spec)))  # Tune pickles the scheduler with the experiment
    from ray.tune.schedulers.pbt import _explore

    random.seed(5)
    top = {"batch_size": 128, "act": "tanh", "dropout": 0.5, "units": 16, "lr": 0.05}
    for _ in range(200):
        new, _ = _explore(top, pbt._hyperparam_mutations, pbt._resample_probability, pbt._perturbation_factors,
                          pbt._custom_explore_fn)
        assert new["batch_size"] in (32, 64, 128) and new["act"] in ("relu", "tanh")
        assert 0.0 <= new["dropout"] <= 0.5 and 8 <= new["units"] <= 16 and 1e-4 <= new["lr"] <= 0.05
        assert isinstance(new["units"], int)
    assert ClipToSpace(space)({"dropout": -0.1, "units": 7.6, "act": "relu"}) == {"dropout": 0.0, "units": 8,
                                                                                 "act": "relu"}


def test_a_trial_keeps_a_checkpoint_at_each_pbt_step_before_its_last_and_none_under_other_schedulers():
    spec = _spec("m:J", {"lr": LR}, grace_period=2, max_t=7).sweep
    every = checkpoint_period(spec)
    assert [s for s in range(1, 8) if wants_checkpoint(s, every, spec.max_t)] == [2, 4, 6]
    assert [s for s in range(1, 7) if wants_checkpoint(s, every, 6)] == [2, 4]  # step 6 is the last: no copy of it
    asha = spec.model_copy(update={"scheduler": "asha"})
    assert checkpoint_period(asha) == 0 and not any(wants_checkpoint(s, 0, 7) for s in range(1, 8))


def test_a_context_that_cannot_checkpoint_reports_without_calling_the_writer_and_never_restores():
    class Plain(TrainContext):
        def __init__(self) -> None:
            self.reports: list[dict[str, float]] = []

        def report(self, metrics: dict[str, float]) -> None:
            self.reports.append(metrics)

        def save_model(self, writer: Any) -> None: ...

    def writer(folder: str) -> None:
        raise AssertionError("no checkpoint is kept here")

    ctx = Plain()
    ctx.report_checkpoint({"rmse": 2.0}, writer)
    assert ctx.reports == [{"rmse": 2.0}] and ctx.restored_checkpoint() is None
    assert Job.checkpoints is False and Job.mutable_params is None
