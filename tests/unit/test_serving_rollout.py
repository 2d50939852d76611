"""Pure logic of serving that keeps serving: rollout deadlines and limits, live figures, the judgement of a
candidate, endpoint input checks. No Ray is started (the Serve and Ray-backed modules only import)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace as NS

import pyarrow as pa
import pytest
import yaml

from streamtune.config.jobspec import ColumnSpec, JobSpec, RolloutSpec, ServeSpec
from streamtune.errors import ConfigError
from streamtune.serving.deployment import _check_features, _missing_column, _non_finite, _parse_rows, _Refused
from streamtune.serving.hub import input_schema
from streamtune.serving.records import InputSchema, RequestCounts, SwapReport
from streamtune.serving.service import ModelService
from streamtune.serving.swaps import _breach

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_observe_without_an_upper_bound_is_refused_at_parse() -> None:
    data = yaml.safe_load(DEMO.read_text())
    data["serve"]["rollout"] = {"canary_percent": 10, "observe": "11m"}
    with pytest.raises(ConfigError, match=r'Got "660.0" for serve.rollout.observe; .*less than or equal to 600'):
        JobSpec.parse(data)
    with pytest.raises(ValueError, match="less than or equal to 600"):
        RolloutSpec(observe="11m")
    with pytest.raises(ValueError, match="canary or shadow needs observe > 0"):
        RolloutSpec(canary_percent=10)
    rollout = RolloutSpec(canary_percent=10, observe="2m", load_timeout="5m", ack_timeout="10s", watch="5m")
    assert (rollout.observe, rollout.load_timeout, rollout.ack_timeout, rollout.watch) == (120, 300, 10, 300)


def test_separate_deadlines_default_to_load_120s_ack_30s_and_no_watch() -> None:
    rollout = RolloutSpec()
    assert (rollout.load_timeout, rollout.ack_timeout, rollout.watch, rollout.min_requests) == (120, 30, 0, 10)


def test_replica_memory_becomes_rays_memory_request() -> None:
    svc = ModelService("m", ServeSpec(app="m", replica_memory_mb=512), "jobs.x:Job", "/code.zip")
    assert svc._deployment_options()["ray_actor_options"]["memory"] == 512 * 1024 * 1024
    plain = ModelService("m", ServeSpec(app="m"), "jobs.x:Job", "/code.zip")
    assert "memory" not in plain._deployment_options()["ray_actor_options"]


def test_live_figures_add_over_replicas_and_give_percentiles() -> None:
    a = RequestCounts.timed([4.0] * 50)
    b = RequestCounts.timed([4.0] * 48 + [250.0, 250.0], errors=1)
    total = a + b
    assert (total.requests, total.errors, total.p50_ms, total.p99_ms) == (100, 1, 5.0, 300.0)
    window = total - a
    assert (window.requests, window.p99_ms) == (50, 300.0)
    assert RequestCounts().p99_ms is None and RequestCounts().figures(1).p50_ms is None


def test_a_candidate_is_judged_on_model_errors_and_latency_only_past_min_requests() -> None:
    rollout = RolloutSpec(min_requests=10, max_error_rate=0.05, max_p99_ms=100)
    assert _breach(RequestCounts.timed([5.0] * 9, errors=9), rollout) is None  # too few to judge
    client_mistakes = RequestCounts(requests=20, errors=0, client_errors=500, latency_ms=RequestCounts.timed(
        [5.0] * 20).latency_ms)
    assert _breach(client_mistakes, rollout) is None  # 4xx never count against the model
    assert "model error rate" in (_breach(RequestCounts.timed([5.0] * 20, errors=2), rollout) or "")
    assert "p99 latency 300 ms" in (_breach(RequestCounts.timed([250.0] * 20), rollout) or "")


def test_swap_report_says_what_serves_after_a_rollback() -> None:
    report = SwapReport(version=1, previous=1, load_s=0.1, flip_s=0.0, total_s=3, replicas=2, rolled_back=True,
                        candidate=2, reason="live watch after promotion: p99 latency 300 ms ...")
    assert report.version == 1 and report.candidate == 2


def test_missing_and_mistyped_features_are_422_naming_the_column() -> None:
    schema = InputSchema(columns={"x": "double", "y": "string"})
    with pytest.raises(_Refused) as missing:
        _check_features(pa.table({"x": [1.0]}), schema, None)
    assert missing.value.status == 422 and 'feature column "y"' in missing.value.message
    with pytest.raises(_Refused) as mistyped:
        _check_features(pa.table({"x": ["abc"], "y": ["a"]}), schema, None)
    assert mistyped.value.status == 422 and 'feature column "x" holds string' in mistyped.value.message
    ok = _check_features(pa.table({"x": [1], "y": ["a"], "z": [True]}), schema, None)
    assert ok.schema.field("x").type == pa.float64()
    declared = NS(features=["a"])
    with pytest.raises(_Refused, match='feature column "a"'):
        _check_features(pa.table({"x": [1.0]}), None, declared)
    assert _missing_column(KeyError('Field "z" does not exist in schema'), ["x"]) == "z"
    assert _missing_column(KeyError('Field "x" does not exist in schema'), ["x"]) is None  # the model's own bug


def test_rows_that_mix_types_get_422_naming_the_column() -> None:
    with pytest.raises(_Refused) as mixed:
        _parse_rows(b'{"rows": [{"x": 1.0}, {"x": "b"}]}', max_rows=10)
    assert mixed.value.status == 422 and 'column "x"' in mixed.value.message


def test_nan_and_inf_are_found_anywhere_in_the_predictions() -> None:
    assert _non_finite([1.0, 2.0]) is None
    assert _non_finite([1.0, math.inf]) == 1
    assert _non_finite([[0.1, math.nan]]) == 0
    assert _non_finite(["a", None, 3]) is None


def test_the_endpoint_schema_comes_from_the_spec_features_and_schema() -> None:
    spec = NS(dataset=NS(features=["x"], schema_={"x": ColumnSpec(type="double")}, label="y"))
    assert input_schema(spec) == InputSchema(columns={"x": "double"})
    assert input_schema(NS(dataset=NS(features=None, schema_=None, label="y"))) is None
