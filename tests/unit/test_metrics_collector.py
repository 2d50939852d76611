"""The Prometheus collector reads the registry, the controller's counters and serving at scrape time."""

from __future__ import annotations

import pathlib

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.observe import EventBus, GateVerdict, IngestProgress, Promoted
from streamtune.observe.drift import holdout_histogram, psi
from streamtune.observe.metrics import METRICS, PSI_MIN_PREDICTIONS, StreamtuneCollector, render
from streamtune.registry import open_registry
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.serving.records import RequestCounts, prediction_histogram
from streamtune.sweeps.scoring import read_scores, write_scores
from streamtune.validation.holdout import scores_table

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spec() -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="sales-gbdt", base_dir=str(ROOT / "configs"))
    return JobSpec.parse(data)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _registry_with_one_promoted_run(tmp_path):
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    reg.put_spec(_spec())
    rng = np.random.default_rng(3)
    holdout = rng.normal(250, 40, 2000)
    uri = write_scores(store.join("sales-gbdt", "r-1"), scores_table("rmse", holdout + 1, holdout, None, {}))
    runs = [RunRecord(run_id=f"r-{i}", spec_name="sales-gbdt", dataset="sales") for i in (1, 2, 3)]
    reg.commit_window("g", {}, {}, runs)
    sweep = {"trials": [{}] * 6, "holdout": {"metric": "rmse", "challenger": 7.0, "rows": 2000, "scores_uri": uri}}
    reg.update_run("r-1", status=RunStatus.PROMOTED, sweep=sweep, timings={"sweep_s": 12.0}, model_version=1)
    reg.update_run("r-2", status=RunStatus.REJECTED)
    reg.register_model("sales-gbdt", "r-1", str(tmp_path / "m1"), {}, {}, {})
    reg.set_alias("sales-gbdt", "challenger", 1, reason="passed")
    reg.set_alias("sales-gbdt", "champion", 1, reason="hot-swapped")
    return reg, store, holdout, uri


def test_registry_figures_are_read_at_scrape_time(tmp_path):
    reg, store, _, _ = _registry_with_one_promoted_run(tmp_path)
    collector = StreamtuneCollector(reg, store, serving=None)
    samples = _samples(render(collector).decode())
    assert _value(samples, "streamtune_runs", spec="sales-gbdt", status="promoted") == 1
    assert _value(samples, "streamtune_runs", spec="sales-gbdt", status="rejected") == 1
    assert _value(samples, "streamtune_runs", spec="sales-gbdt", status="pending") == 1
    assert _value(samples, "streamtune_model_versions", model="sales-gbdt") == 1
    assert _value(samples, "streamtune_champion_version", model="sales-gbdt") == 1
    assert _value(samples, "streamtune_alias_changes_total", model="sales-gbdt", alias="champion") == 1
    assert _value(samples, "streamtune_sweep_trials_per_second", spec="sales-gbdt") == 0.5
    reg.update_run("r-3", status=RunStatus.FAILED)  # nothing cached: the next scrape sees it
    samples = _samples(render(collector).decode())
    assert _value(samples, "streamtune_runs", spec="sales-gbdt", status="failed") == 1
    assert _value(samples, "streamtune_runs", spec="sales-gbdt", status="pending") == 0


def test_process_counters_come_from_the_controllers_bus(tmp_path):
    reg, store, _, _ = _registry_with_one_promoted_run(tmp_path)
    bus = EventBus()
    bus.emit(IngestProgress(records=7, events=6, dead_lettered=1, windows_closed=2, runs_inserted=2))
    bus.emit(GateVerdict(spec="sales-gbdt", run_id="r-1", passed=True, metric="rmse"))
    bus.emit(Promoted(spec="sales-gbdt", version=1, swap_s=3.0, load_s=2.0, flip_s=0.02))
    samples = _samples(render(StreamtuneCollector(reg, store, events=bus, serving=None)).decode())
    assert _value(samples, "streamtune_events_consumed_total") == 6
    assert _value(samples, "streamtune_dead_letters_total") == 1
    assert _value(samples, "streamtune_windows_closed_total") == 2
    assert _value(samples, "streamtune_gate_verdicts_total", spec="sales-gbdt", verdict="passed") == 1
    labels = {"spec": "sales-gbdt", "kind": "promote", "phase": "total"}
    assert _value(samples, "streamtune_swap_seconds_count", **labels) == 1
    assert _value(samples, "streamtune_swap_seconds_sum", **labels) == 3.0
    assert _value(samples, "streamtune_swap_seconds_bucket", le="5.0", **labels) == 1
    assert _value(samples, "streamtune_swap_seconds_bucket", le="2.5", **labels) == 0


def test_serving_figures_and_the_psi_against_the_version_holdout(tmp_path):
    reg, store, holdout, uri = _registry_with_one_promoted_run(tmp_path)
    rng = np.random.default_rng(4)
    shifted = prediction_histogram(list(rng.normal(330, 40, 500)))
    live = {1: RequestCounts.timed([4.0] * 499 + [90.0], errors=2).model_copy(update={"predictions": shifted}),
            2: RequestCounts(requests=5, predictions=prediction_histogram([250.0] * (PSI_MIN_PREDICTIONS - 1)))}

    def serving(app: str):
        assert app == "sales"
        return live

    samples = _samples(render(StreamtuneCollector(reg, store, serving=serving)).decode())
    v1 = {"spec": "sales-gbdt", "app": "sales", "version": "1"}
    assert _value(samples, "streamtune_serving_requests_total", **v1) == 500
    assert _value(samples, "streamtune_serving_model_errors_total", **v1) == 2
    assert _value(samples, "streamtune_serving_error_rate", **v1) == 0.004
    assert _value(samples, "streamtune_serving_p99_ms", **v1) == 5.0
    assert _value(samples, "streamtune_serving_latency_seconds_count", **v1) == 500
    assert _value(samples, "streamtune_serving_latency_seconds_bucket", le="0.005", **v1) == 499
    expected = psi(holdout_histogram(read_scores(uri)), shifted)
    assert expected is not None and expected > 0.25
    assert _value(samples, "streamtune_prediction_psi", **v1) == expected
    v2 = {"spec": "sales-gbdt", "app": "sales", "version": "2"}
    assert _value(samples, "streamtune_serving_predictions_total", **v2) == PSI_MIN_PREDICTIONS - 1
    assert _value(samples, "streamtune_prediction_psi", **v2) is None  # too few predictions to say


def test_a_failing_part_is_reported_and_the_rest_still_scraped(tmp_path):
    reg, store, _, _ = _registry_with_one_promoted_run(tmp_path)

    def serving(app: str):
        raise TimeoutError("board did not answer")

    text = render(StreamtuneCollector(reg, store, serving=serving)).decode()
    samples = _samples(text)
    assert _value(samples, "streamtune_scrape_errors", part="serving:sales") == 1
    assert _value(samples, "streamtune_runs", spec="sales-gbdt", status="promoted") == 1
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {m.name for m in METRICS} <= names  # every family is there, samples or not
