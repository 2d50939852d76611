"""Issue 10, multi-worker trials: 2-worker Ray Train trials on CPU, torch DDP and LightGBM, on the session cluster.

- torch: ``run_tune`` (the sweep job's own code) in a Ray task whose runtime_env ships ``jobs/`` by URI, with
  ``jobs.torch_mlp:Job`` and ``sweep.resources.workers: 2``. Each trial is a ``TorchTrainer`` run (DDP over gloo);
  its per-epoch reports reach Tune from rank 0, and ASHA stops the second, worse trial at its first rung.
- LightGBM: the whole sweep Ray Job (the driver) with ``jobs.tabular_gbdt:Job``, ``workers: 2`` and ``gpu: 1`` on
  this cluster without a GPU: the request trains on CPU, with the warning in ``SweepResult.warnings``; each trial is
  a ``LightGBMTrainer`` run (data-parallel over 2 machines); the refit (one process), holdout and smoke test follow.
- ``require_gpu: true`` is refused at submit by the controller's check on this cluster.

Both sweeps start together when the module's first test asks for them (2 workers of 0.5 or 0.4 CPU per trial, one
trial at a time per sweep: under 2 of the cluster's 4 CPUs), so the module costs about as long as the slower one.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures_ray import finished_sweep, stored_code
from needs_torch import require_torch
from streamtune.config import JobSpec
from streamtune.dev.synthetic import make_sales
from streamtune.errors import ConfigError
from streamtune.job import load_for_serving
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.checks import RaySpecChecker
from streamtune.sweeps.runner import run_tune
from streamtune.sweeps.schema import TrialSummary

pytestmark = pytest.mark.integration
require_torch()  # the torch extra: skipped without it, except under make test / CI, where a missing torch fails
JOBS = Path(__file__).resolve().parents[2] / "jobs"
FEATURES = ["price", "promo", "temp", "weekday", "region"]
EPOCHS = 3
GBDT_RUN = "r-multiworker-gbdt"


def _spec(name: str, entrypoint: str, params: dict[str, Any], sweep: dict[str, Any]) -> JobSpec:
    return JobSpec.parse({
        "name": name, "dataset": {"name": "sales", "label": "sales", "features": FEATURES},
        "job": {"entrypoint": entrypoint, "code": str(JOBS), "params": params},
        "sweep": {"metric": "rmse", "mode": "min", "num_samples": 2, "max_concurrent": 1, "grace_period": 1,
                  "time_budget": 240, "seed": 3, **sweep},
        "validation": {"min_rows": 100},
        "serve": {"app": name},
    })


TORCH = _spec("mlp-ddp", "jobs.torch_mlp:Job", {"epochs": EPOCHS, "hidden": 16, "batch_size": 64, "seed": 1}, {
    # a grid of two points, run one after the other: lr 1e-7 learns nothing in an epoch, so whichever ran second
    # is either the better one or is stopped by ASHA at its first rung (the seed fixes the order: see the test)
    "search": "grid", "scheduler": "asha", "max_t": EPOCHS,
    "space": {"lr": {"type": "loguniform", "low": 1e-7, "high": 0.05, "values": [0.05, 1e-7]}},
    "resources": {"cpu": 0.5, "workers": 2}})
GBDT = _spec("gbdt-data-parallel", "jobs.tabular_gbdt:Job",
             {"num_boost_round": 20, "report_every": 5, "num_threads": 1, "min_data_in_leaf": 5}, {
                 "search": "random", "scheduler": "none", "max_t": 4, "num_samples": 1,
                 "space": {"learning_rate": {"type": "uniform", "low": 0.1, "high": 0.3}},
                 "resources": {"cpu": 0.4, "gpu": 1, "workers": 2}})  # 0.4: its workers' bundles differ from torch's


@pytest.fixture(scope="module")
def sweeps(ray_services: Any) -> dict[str, Any]:
    """Start both sweeps; name -> what to wait on, with the folders and tables the tests read."""
    import ray

    from streamtune.artifacts.store import ray_uri

    root = Path(tempfile.mkdtemp(prefix="multiworker-"))
    code_uri = stored_code(JOBS, root / "store")
    train, valid = make_sales(1000, seed=1), make_sales(300, seed=2)
    task = ray.remote(num_cpus=0, max_retries=0, runtime_env={"py_modules": [ray_uri(code_uri)]})(run_tune)
    torch_ref = task.remote(TORCH, train, valid, FEATURES, str(root / "torch"), seed=7)  # type: ignore[call-arg]
    runner = _submit_gbdt(ray_services, root, code_uri)
    return {"root": root, "code_uri": code_uri, "torch": torch_ref, "train": train, "valid": valid,
            "gbdt": (runner, root / "gbdt")}


def _submit_gbdt(ray_services: Any, root: Path, code_uri: str) -> RayJobRunner:
    """The LightGBM sweep as the controller submits it: a request over a Parquet window, the driver as a Ray Job."""
    pq.write_table(make_sales(1500, seed=5), root / "window.parquet")
    out = root / "gbdt"
    out.mkdir(parents=True)
    req = SweepRequest(run_id=GBDT_RUN, spec=GBDT.model_dump(mode="json"), uris=[str(root / "window.parquet")],
                       out_uri=str(out), trusted_roots=[str(root)])
    (out / "request.json").write_text(req.model_dump_json())
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    assert runner.submit(GBDT_RUN, str(out / "request.json"), code_uri) is True
    return runner


def _gbdt_result(sweeps: dict[str, Any], timeout: float = 300) -> SweepResult:
    runner, out = sweeps["gbdt"]
    return finished_sweep(runner, GBDT_RUN, out, timeout)


def _wait_no_placement_group(bundles: list[dict[str, float]], timeout: float = 30) -> None:
    """Wait until no placement group with ``bundles`` holds resources (Ray removes a dead owner's groups)."""
    from ray.util import placement_group_table

    def held() -> list[Any]:
        return [pg for pg in placement_group_table().values()
                if pg["state"] != "REMOVED" and list(pg["bundles"].values()) == bundles]

    deadline = time.monotonic() + timeout
    while held() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not held(), held()


def _rmse(predicted: Any, table: pa.Table) -> float:
    truth = np.asarray(table.column("sales").to_numpy(), dtype=float)
    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=float) - truth) ** 2)))


def test_a_two_worker_torch_ddp_trial_reports_every_epoch_to_tune_and_saves_a_model_that_serves(sweeps):
    import ray

    trials: list[TrialSummary] = ray.get(sweeps["torch"], timeout=300)
    assert len(trials) == 2 and all(t.error is None for t in trials), [t.error for t in trials]
    assert [t.workers for t in trials] == [2, 2] and all(t.node_id for t in trials)  # rank 0's reports, via Tune
    [first] = [t for t in trials if t.params["lr"] == 0.05]  # the seed runs this grid point first
    [second] = [t for t in trials if t.params["lr"] == 1e-7]
    assert first.iterations == EPOCHS and first.metrics["epoch"] == EPOCHS and first.artifact_uri
    # DDP: each of the 2 workers trained on its half of the rows (DistributedSampler), the gradients averaged
    assert first.metrics["train_rows"] == math.ceil(sweeps["train"].num_rows / 2)
    assert second.iterations == 1 and second.artifact_uri is None  # worse at the first rung: ASHA stopped it
    assert second.metrics["rmse"] > first.metrics["rmse"]
    assert len(list((sweeps["root"] / "torch" / "train").iterdir())) == 2  # each trial was a Ray Train run
    _wait_no_placement_group([{"CPU": 0.5}, {"CPU": 0.5}])  # the stopped trial's workers went with its actor
    predictor, folder = load_for_serving("jobs.torch_mlp:Job", first.artifact_uri,
                                         manifest_sha256=first.manifest_sha256)
    valid = sweeps["valid"]
    rmse = _rmse(predictor.predict(valid.drop_columns(["sales"])), valid)
    assert rmse == pytest.approx(first.metrics["rmse"], rel=1e-4)  # what serving predicts is what Tune was told
    assert rmse < 0.6 * float(np.std(valid.column("sales").to_numpy()))  # it learned (the mean scores 1.0)


def test_a_two_worker_lightgbm_trial_on_a_cluster_without_gpu_trains_on_cpu_and_says_so(sweeps):
    result = _gbdt_result(sweeps)
    [warning] = result.warnings
    assert warning.startswith('Got "1" for sweep.resources.gpu; no node of the cluster has a GPU, so the trials '
                              "train on CPU (gpu 0) with 0.4 CPU each per worker (2 workers)")
    [trial] = result.trials
    assert trial.error is None and trial.workers == 2 and trial.iterations == 4 and trial.artifact_uri
    assert result.refit is not None and result.smoke is not None and result.smoke.passed
    trial_model = Path(result.refit.trial_artifact_uri) / "model.txt"
    assert "[num_machines: 2]" in trial_model.read_text()  # one booster, trained over both workers' rows
    assert "[tree_learner: data]" in trial_model.read_text()  # data_parallel, as LightGBM names it
    predictor, _ = load_for_serving("jobs.tabular_gbdt:Job", result.best.artifact_uri,
                                    manifest_sha256=result.best.manifest_sha256)
    holdout = make_sales(200, seed=9)
    assert _rmse(predictor.predict(holdout.drop_columns(["sales"])), holdout) < 5.0
    assert result.holdout.challenger is not None and result.holdout.challenger < 5.0


def test_require_gpu_is_refused_at_submit_on_a_cluster_without_gpu(sweeps):
    spec = GBDT.model_copy(update={
        "sweep": GBDT.sweep.model_copy(update={"resources": GBDT.sweep.resources.model_copy(
            update={"require_gpu": True})}),
        "job": GBDT.job.model_copy(update={"code_uri": sweeps["code_uri"]})})
    checker = RaySpecChecker(connect=lambda: None)
    with pytest.raises(ConfigError) as caught:
        checker.check(spec)
    assert caught.value.headline.startswith('spec gbdt-data-parallel cannot run on this cluster: Got "true" for '
                                            "sweep.resources.require_gpu (gpu 1); no node of the cluster has a GPU")
    checker.check(GBDT.model_copy(update={"job": spec.job}))  # without require_gpu: stored, trains on CPU
