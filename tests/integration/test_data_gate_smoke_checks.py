"""Issue 9 on real Ray: the data gate stops a bad batch before any trial, the smoke test stops a NaN model, and a
spec whose job module is missing is refused by the submit check (a Ray task with the spec's runtime_env)."""

import json
import pathlib
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures_ray import stored_code
from streamtune.config import JobSpec, load_jobspec
from streamtune.dev.synthetic import write_batch
from streamtune.errors import ConfigError
from streamtune.runtime.ray import join_ray
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.checks import RaySpecChecker
from streamtune.sweeps.failures import JobFailure, error_uri

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTJOBS = ROOT / "tests" / "assets" / "testjobs" / "testjobs"


def _wait(runner, sid, timeout=240):
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = runner.status(sid)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {sid} still {status} after {timeout}s:\n{runner.logs_tail(sid)}")


def _run(runner, tmp, run_id, spec, uris, claimed_rows=None, code=None):
    out = tmp / run_id
    out.mkdir(parents=True)
    req = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json"), uris=uris, out_uri=str(out),
                       trusted_roots=[str(tmp)], claimed_rows=claimed_rows)
    (out / "request.json").write_text(req.model_dump_json())
    assert runner.submit(run_id, str(out / "request.json"), stored_code(code or spec.code_dir(), tmp / "store"))
    return out, _wait(runner, run_id)


def _demo_with_schema():
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    schema = {c: {"type": "double"} for c in ("price", "temp", "sales")}
    schema |= {"promo": {"type": "int64"}, "weekday": {"type": "int64"}, "region": {"type": "int64"}}
    data = spec.model_dump(mode="json", by_alias=True)
    return JobSpec.model_validate({**data, "dataset": {**data["dataset"], "schema": schema}})


@pytest.mark.parametrize("case", ["wrong_type", "false_num_rows"])
def test_the_data_gate_fails_a_bad_batch_before_any_trial_and_is_not_retried(ray_services, tmp_path, case):
    spec = _demo_with_schema()
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    uris = write_batch(tmp_path / "b", 1, 800, drift=0.0, seed=5)
    table = pq.read_table(uris[0])
    real = pa.Table.from_pydict({n: table[n].to_pylist() for n in table.column_names})
    types = {f.name: str(f.type) for f in real.schema}
    assert types == {k: v.type for k, v in spec.dataset.schema_.items()}, types  # the good batch fits the schema
    if case == "wrong_type":  # price arrives as text
        bad = real.set_column(real.column_names.index("price"), "price",
                              pa.array([str(v) for v in real["price"].to_pylist()]))
        pq.write_table(bad, uris[0])
        claimed, words = 800, "column price: type string, but dataset.schema says double"
    else:
        claimed, words = 5000, "events claimed num_rows 5000 in total; 800 rows were read"
    run_id = f"r-datagate-{case.replace('_', '')}"
    out, status = _run(runner, tmp_path, run_id, spec, uris, claimed_rows=claimed)
    assert status == "FAILED"
    failure = JobFailure.model_validate_json(pathlib.Path(error_uri(str(out))).read_text())
    assert failure.type == "DataGateFailed" and failure.retryable is False
    assert failure.data_gate is not None and not failure.data_gate.passed
    assert failure.data_gate.reasons[0].startswith(words), failure.data_gate.reasons
    assert words in failure.headline
    assert not (out / "trials").exists() and not (out / "tune").exists()  # no trial ever started


def test_the_smoke_test_fails_a_model_that_predicts_nan(ray_services, tmp_path):
    spec = JobSpec.model_validate({
        "name": "nan-model", "dataset": {"name": "sales", "label": "sales"},
        "job": {"entrypoint": "testjobs.nan_job:NanJob", "code": str(TESTJOBS)},
        "sweep": {"metric": "rmse", "mode": "min", "num_samples": 1, "max_t": 2, "grace_period": 1,
                  "space": {"rounds": {"type": "choice", "values": [2]}}},
        "validation": {"min_rows": 10}, "serve": {"app": "nan-model"},
    })
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    uris = write_batch(tmp_path / "b", 1, 200, drift=0.0, seed=6)
    out, status = _run(runner, tmp_path, "r-smoke-nan000001", spec, uris, claimed_rows=200)
    assert status == "SUCCEEDED", runner.logs_tail("r-smoke-nan000001")
    result = SweepResult.model_validate_json((out / "result.json").read_text())
    assert result.smoke is not None and result.smoke.passed is False
    assert result.smoke.reason == "smoke test failed: prediction 0 of 40 is nan; predictions must be finite numbers"
    assert result.data_gate is not None and result.data_gate.passed
    json.dumps(result.model_dump(mode="json"))


def test_submit_check_refuses_a_missing_module_in_a_ray_task(ray_services, tmp_path):
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    code_uri = stored_code(spec.code_dir(), tmp_path / "store")
    checker = RaySpecChecker(connect=lambda: join_ray(ray_services), timeout_s=120)
    good = spec.model_copy(update={"job": spec.job.model_copy(update={"code_uri": code_uri})})
    checker.check(good)  # the demo spec fits its job
    missing = good.model_copy(update={"job": good.job.model_copy(update={"entrypoint": "jobs.no_such_job:Job"})})
    with pytest.raises(ConfigError, match=r'Got "jobs.no_such_job:Job" for job.entrypoint; module jobs.no_such_job '
                                          "cannot be imported"):
        checker.check(missing)
    bad_mode = good.model_copy(update={"sweep": good.sweep.model_copy(update={"mode": "max"})})
    with pytest.raises(ConfigError, match="metric rmse is better when lower, so mode must be min"):
        checker.check(bad_mode)
