"""The sweep as a real Ray Job: Optuna TPE proposes, ASHA prunes, the winner is scored on the holdout."""

import json
import pathlib
import time

import pytest

from fixtures_ray import stored_code
from streamtune.config import load_jobspec
from streamtune.dev.synthetic import write_batch
from streamtune.registry.manifest import verify_manifest
from streamtune.sweeps import ChampionRef, RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.failures import JobFailure

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _wait(runner, run_id, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = runner.status(run_id)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {run_id} still {status} after {timeout}s:\n{runner.logs_tail(run_id)}")


def _submit(runner, tmp, run_id, spec, uris, champion=None):
    out = tmp / run_id
    out.mkdir(parents=True)
    req = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json"), uris=uris, out_uri=str(out),
                       champion=champion, trusted_roots=[str(tmp)])  # the test's data folder is the platform's
    (out / "request.json").write_text(req.model_dump_json())
    assert runner.submit(run_id, str(out / "request.json"), _code(tmp, spec)) is True
    return out


def _code(tmp, spec):
    """The job package by URI, as submit stores it: the job finds its code only through runtime_env."""
    return stored_code(spec.code_dir(), tmp / "store")


def test_sweep_runs_as_an_idempotent_ray_job_and_scores_champion_on_same_holdout(ray_services, tmp_path):
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    uris = write_batch(tmp_path / "b1", 2, 800, drift=0.0, seed=3)
    run_id = "r-sweeptest0000001"  # fixed: the sampler seed derives from it, so the sweep is reproducible
    out = _submit(runner, tmp_path, run_id, spec, uris)
    assert runner.submit(run_id, str(out / "request.json"), _code(tmp_path, spec)) is False  # same id: a no-op
    assert _wait(runner, run_id) == "SUCCEEDED", runner.logs_tail(run_id)
    result = SweepResult.model_validate_json((out / "result.json").read_text())
    assert len(result.trials) == spec.sweep.num_samples
    assert {t.trial_id for t in result.trials} == {t.trial_id for t in result.trials if t.params}
    pruned = [t for t in result.trials if t.iterations < spec.sweep.max_t]
    assert pruned, "ASHA pruned no trial"
    assert result.best.iterations == spec.sweep.max_t
    verify_manifest(result.best.artifact_uri)
    assert result.holdout.challenger is not None and result.holdout.challenger < 5.0
    assert result.holdout.rows == round(1600 * spec.validation.holdout_fraction)
    assert set(result.best.params) == set(spec.sweep.space)

    # second sweep on drifted data, with the first winner as champion: both scored on the new holdout
    uris2 = write_batch(tmp_path / "b2", 2, 800, drift=1.0, seed=4)
    champ = ChampionRef(version=1, artifact_uri=result.best.artifact_uri)
    out2 = _submit(runner, tmp_path, run_id + "b", spec, uris2, champion=champ)
    assert _wait(runner, run_id + "b") == "SUCCEEDED", runner.logs_tail(run_id + "b")
    result2 = json.loads((out2 / "result.json").read_text())
    hold = result2["holdout"]
    assert hold["champion_version"] == 1 and hold["champion"] > hold["challenger"], hold


def test_a_failing_sweep_is_reported_failed(ray_services, tmp_path):
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    run_id = "r-sweeptestbad0001"
    _submit(runner, tmp_path, run_id, spec, [str(tmp_path / "missing.parquet")])
    assert _wait(runner, run_id) == "FAILED"
    assert "DataError" in runner.logs_tail(run_id, 40)
    failure = JobFailure.model_validate_json((tmp_path / run_id / "error.json").read_text())
    assert failure.type == "DataError" and failure.headline.startswith("DataError: ") and failure.retryable
    assert "Traceback (most recent call last)" in failure.traceback
    assert runner.logs(run_id).rstrip().splitlines()[-1] == failure.headline


@pytest.mark.parametrize("resources,headline", [
    ({"cpu": 64.0}, "InfeasibleResources: trial needs {'CPU': 64.0}; no node of the cluster has that: nodes have "
                    "CPU up to"),
    # a GPU request alone trains on CPU here (tests/integration/test_sweep_multiworker.py); require_gpu refuses that
    ({"gpu": 1.0, "require_gpu": True}, 'GpuRequired: Got "true" for sweep.resources.require_gpu (gpu 1); no node '
                                        "of the cluster has a GPU"),
], ids=["cpu", "require_gpu"])
def test_trial_resources_the_cluster_lacks_fail_the_job_fast_with_that_reason(ray_services, tmp_path, resources,
                                                                               headline):
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    sweep = spec.sweep.model_copy(update={"resources": spec.sweep.resources.model_copy(update=resources)})
    spec = spec.model_copy(update={"sweep": sweep})
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    uris = write_batch(tmp_path / "b1", 1, 600, drift=0.0, seed=3)  # enough rows for the data gate (min_rows 500)
    run_id = f"r-sweeptestres-{'-'.join(resources)}".replace("_", "")
    started = time.monotonic()
    _submit(runner, tmp_path, run_id, spec, uris)
    assert _wait(runner, run_id, timeout=90) == "FAILED"  # never a hang waiting for resources that do not exist
    assert time.monotonic() - started < 90
    failure = JobFailure.model_validate_json((tmp_path / run_id / "error.json").read_text())
    assert failure.headline.startswith(headline), failure.headline
    assert failure.retryable is False
