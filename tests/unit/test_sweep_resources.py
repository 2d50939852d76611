"""Issue 10, resources: multi-worker trials and GPU requests in the JobSpec, pure logic (no Ray).

What ``sweep.resources`` accepts (workers, require_gpu), the GPU decision on a cluster without GPUs (train on CPU
with a warning, or refuse when ``require_gpu``), what Tune and Ray Train are asked for, whether a multi-worker
trial fits the nodes, the submit checks (a job that cannot train on several workers; require_gpu with no GPU) and
a worker's shard. The sweeps themselves run in tests/integration/test_sweep_multiworker.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamtune.config import JobSpec
from streamtune.config.jobspec import ResourcesSpec
from streamtune.errors import ConfigError
from streamtune.job import Job, TrainContext
from streamtune.sweeps.checks import check_gpu_request, contract_problems
from streamtune.sweeps.distributed import scaling_kwargs
from streamtune.sweeps.failures import JobFailure, infeasible_reason
from streamtune.sweeps.resources import DRIVER_CPU, GpuRequired, plan_resources, trial_resources, with_resources
from streamtune.sweeps.schema import SweepResult, TrialSummary

CPU_NODES = [{"CPU": 2.0, "memory": 1e9}, {"CPU": 2.0, "memory": 1e9}]
GPU_NODES = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 2.0}]


def _spec(**resources: Any) -> JobSpec:
    return JobSpec.parse({"name": "s", "dataset": {"name": "d", "label": "y"}, "job": {"entrypoint": "m:J"},
                          "serve": {"app": "s"}, "sweep": {"metric": "rmse", "mode": "min", "resources": resources,
                                                           "space": {"a": {"type": "int", "low": 1, "high": 3}}}})


def _refused(**resources: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _spec(**resources)
    return info.value.headline


class OneProcess(Job):
    metrics = {"rmse": "min"}

    def train(self, config, ctx): ...

    def load(self, artifact_dir): ...


class Ddp(OneProcess):
    distributed = "torch"


def test_resources_default_to_one_process_on_cpu_and_take_workers_and_require_gpu():
    default = _spec().sweep.resources
    assert (default.cpu, default.gpu, default.workers, default.require_gpu) == (1.0, 0.0, 1, False)
    r = _spec(cpu=0.5, gpu=1, workers=4, require_gpu=True).sweep.resources
    assert (r.workers, r.require_gpu, r.total_cpu) == (4, True, 2.0)


def test_resources_refuse_no_workers_and_require_gpu_without_a_gpu_naming_field_value_and_rule():
    assert "sweep.resources.workers" in _refused(workers=0)
    headline = _refused(require_gpu=True)
    assert headline.startswith('Got "true" for sweep.resources.require_gpu with sweep.resources.gpu 0; ')
    assert "require_gpu needs a GPU request" in headline


def test_a_gpu_request_on_a_cluster_without_gpus_trains_on_cpu_and_says_so():
    plan = plan_resources(ResourcesSpec(cpu=1, gpu=0.5, workers=2), CPU_NODES)
    assert plan.degraded and plan.resources.gpu == 0.0
    assert (plan.resources.cpu, plan.resources.workers) == (1.0, 2)  # only the GPU changes
    [warning] = plan.warnings
    assert warning.startswith('Got "0.5" for sweep.resources.gpu; no node of the cluster has a GPU, so the trials '
                              "train on CPU (gpu 0) with 1 CPU each per worker (2 workers)")
    assert "require_gpu: true to fail instead" in warning


def test_a_gpu_request_on_a_cluster_with_a_gpu_and_a_cpu_request_are_kept_as_they_are():
    for resources, nodes in ((ResourcesSpec(gpu=1, require_gpu=True), GPU_NODES), (ResourcesSpec(cpu=2), CPU_NODES)):
        plan = plan_resources(resources, nodes)
        assert plan.resources == resources and not plan.degraded and plan.warnings == []


def test_require_gpu_on_a_cluster_without_gpus_fails_naming_field_value_and_rule_and_is_not_retried():
    with pytest.raises(GpuRequired) as caught:
        plan_resources(ResourcesSpec(gpu=1, require_gpu=True), CPU_NODES)
    assert caught.value.headline == ('Got "true" for sweep.resources.require_gpu (gpu 1); no node of the cluster has a '
                                     "GPU (nodes: 2, GPU up to 0), and require_gpu refuses to train on CPU")
    assert "require_gpu: false" in caught.value.fix
    assert JobFailure.from_exception(caught.value).retryable is False  # another attempt finds no GPU either


def test_the_degraded_spec_is_what_the_sweep_and_the_refit_ask_for():
    spec = _spec(gpu=1, workers=2)
    plan = plan_resources(spec.sweep.resources, CPU_NODES)
    degraded = with_resources(spec, plan.resources)
    assert degraded.sweep.resources.gpu == 0.0 and degraded.sweep.resources.workers == 2
    assert degraded.sweep.metric == spec.sweep.metric and spec.sweep.resources.gpu == 1.0  # the stored spec stays


def test_tune_reserves_a_one_process_trial_whole_and_only_a_driver_for_a_ray_train_run():
    assert trial_resources(ResourcesSpec(cpu=2, gpu=0.25)) == {"cpu": 2.0, "gpu": 0.25}
    assert trial_resources(ResourcesSpec(cpu=2, gpu=1, workers=3)) == {"cpu": DRIVER_CPU, "gpu": 0.0}
    assert scaling_kwargs(ResourcesSpec(cpu=2, gpu=1, workers=3)) == {
        "num_workers": 3, "use_gpu": True, "resources_per_worker": {"CPU": 2.0, "GPU": 1.0}}
    assert scaling_kwargs(ResourcesSpec(cpu=1, workers=2))["use_gpu"] is False


def test_a_multi_worker_trial_fits_when_the_nodes_hold_every_worker_and_the_driver():
    one = {"CPU": 1.0, "GPU": 0.0}
    assert infeasible_reason(one, CPU_NODES, count=3, driver_cpu=DRIVER_CPU) is None  # 2 + 1 workers, driver on 2nd
    assert infeasible_reason(one, CPU_NODES, count=4) is None
    reason = infeasible_reason(one, CPU_NODES, count=4, driver_cpu=DRIVER_CPU)
    assert reason == ("trial needs 4 workers of {'CPU': 1.0} and 0.01 CPU to drive them; the cluster holds 3 such "
                      "workers at most")
    assert infeasible_reason({"CPU": 1.5}, CPU_NODES, count=3).endswith("holds 2 such workers at most")
    assert infeasible_reason({"CPU": 1.0, "GPU": 1.0}, GPU_NODES, count=2) is None
    assert "no node of the cluster has that" in infeasible_reason({"CPU": 4.0, "GPU": 1.0}, CPU_NODES, count=2)


def test_submit_refuses_several_workers_for_a_job_that_trains_in_one_process():
    spec = _spec(workers=2)
    [problem] = contract_problems(spec, OneProcess)
    assert problem.startswith('Got "2" for sweep.resources.workers; job m:J trains in one process '
                              "(Job.distributed is None)")
    assert contract_problems(spec, Ddp) == []
    assert contract_problems(_spec(workers=1), OneProcess) == []


def test_submit_refuses_require_gpu_on_a_cluster_without_gpus_and_stores_a_plain_gpu_request(monkeypatch):
    import ray

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)  # a dead node's GPU does not count
    check_gpu_request(_spec(gpu=1))  # trains on CPU, with a warning in the run's result
    with pytest.raises(ConfigError) as caught:
        check_gpu_request(_spec(gpu=1, require_gpu=True))
    assert caught.value.headline.startswith('spec s cannot run on this cluster: Got "true" for '
                                            "sweep.resources.require_gpu (gpu 1); no node of the cluster has a GPU")
    nodes[1]["Alive"] = True
    check_gpu_request(_spec(gpu=1, require_gpu=True))


def test_a_worker_shard_is_every_world_size_th_row_and_the_shards_cover_every_row_once():
    class Ctx(TrainContext):
        def report(self, metrics): ...

        def save_model(self, writer): ...

    rows = list(range(11))
    shards = []
    for rank in range(3):
        ctx = Ctx()
        ctx.rank, ctx.world_size = rank, 3
        shards.append(rows[ctx.shard()])
    assert sorted(sum(shards, [])) == rows and {len(s) for s in shards} == {3, 4}
    assert rows[Ctx().shard()] == rows


def test_results_stored_before_workers_and_warnings_still_load():
    trial = TrialSummary.model_validate({"trial_id": "t", "params": {}})
    assert trial.workers == 1
    result = SweepResult.model_validate({"run_id": "r", "best": trial.model_dump(), "trials": [],
                                         "holdout": {"metric": "rmse", "challenger": 1.0, "rows": 1},
                                         "snapshot": {}})
    assert result.warnings == []
