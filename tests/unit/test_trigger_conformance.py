"""Every built-in trigger runs the Trigger conformance suite, on real windows, files, registry and models."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conformance.job_suite import RecordingContext
from conformance.trigger_suite import TriggerConformance, ask
from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.data.stats import reference_stats
from streamtune.dev.synthetic import FEATURES, make_sales
from streamtune.registry import open_registry
from streamtune.triggers.base import RowsTrigger, ScheduleTrigger, WaitTrigger
from streamtune.triggers.drift import DegradationTrigger, DriftTrigger, WindowMonitor
from streamtune.triggers.window import Window, WindowEvent
from streamtune.validation.live import score_rows


def _spec(**trigger) -> JobSpec:
    return JobSpec.parse({
        "name": "sales-gbdt", "dataset": {"name": "sales", "label": "sales", "features": FEATURES},
        "trigger": {"topic": "t", "min_rows": 1000, "max_wait": "1m", **trigger},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job", "params": {"num_boost_round": 30}},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"num_leaves": {"type": "int", "low": 7, "high": 15}}},
        "serve": {"app": "sales"},
    })


def _window(rows: int, opened_at: float = 0.0, uris: list[str] | None = None) -> Window:
    events = [WindowEvent(f"e{i}", "t", 0, i, rows // 2, list(uris or [])[i:i + 1]) for i in range(2)]
    return Window("sales-gbdt", "sales", opened_at, events)


class TestRowsTrigger(TriggerConformance):
    @pytest.fixture
    def trigger(self):
        return RowsTrigger()

    @pytest.fixture
    def firing(self):
        return _spec(), _window(1000), 5.0

    @pytest.fixture
    def quiet(self):
        return _spec(), _window(998), 5.0


class TestWaitTrigger(TriggerConformance):
    @pytest.fixture
    def trigger(self):
        return WaitTrigger()

    @pytest.fixture
    def firing(self):
        return _spec(), _window(10, opened_at=100.0), 160.0

    @pytest.fixture
    def quiet(self):
        return _spec(), _window(10, opened_at=100.0), 159.9


def _utc(day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.UTC).timestamp()


class TestScheduleTrigger(TriggerConformance):
    """Injected clock: the trigger first sees the spec at 01:00 on the 26th; the slot is 02:30 daily."""

    @pytest.fixture
    def clock(self):
        return {"now": _utc(26, 1)}

    @pytest.fixture
    def trigger(self, clock):
        trig = ScheduleTrigger(clock=lambda: clock["now"])
        assert trig.on_tick(_spec(schedule="30 2 * * *"), None, now=0.0) is None  # first seen at 01:00
        clock["now"] = _utc(26, 2, 31)
        return trig

    @pytest.fixture
    def firing(self):
        return _spec(schedule="30 2 * * *"), None, 0.0  # no open window: the latest window is trained again

    @pytest.fixture
    def quiet(self):
        return _spec(schedule=None), _window(10), 0.0

    def test_each_slot_fires_once_and_only_after_it_is_stored(self, trigger, clock):
        spec = _spec(schedule="30 2 * * *")
        first = trigger.on_tick(spec, _window(10), 0.0)
        assert (first.kind, first.slot, first.rows) == ("schedule", _utc(26, 2, 30), 10)
        assert trigger.on_tick(spec, None, 0.0) == first.model_copy(update={"rows": 0})  # not stored yet: again
        trigger.adopt([(spec.name, first)])
        assert trigger.on_tick(spec, None, 0.0) is None
        clock["now"] = _utc(27, 2, 29)
        assert trigger.on_tick(spec, None, 0.0) is None
        clock["now"] = _utc(27, 2, 30)
        assert trigger.on_tick(spec, None, 0.0).slot == _utc(27, 2, 30)

    def test_a_slot_missed_before_the_spec_was_seen_is_not_made_up(self, clock):
        clock["now"] = _utc(26, 3)
        trig = ScheduleTrigger(clock=lambda: clock["now"])
        assert trig.on_tick(_spec(schedule="30 2 * * *"), None, 0.0) is None  # 02:30 passed before 03:00


def _write(folder, name: str, table: pa.Table) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)
    return str(folder / name)


def _settle(trigger, spec, window, now, monitor: WindowMonitor):
    """Ask until the monitor has measured this window as it is (at most 20 s), then answer."""
    deadline = time.monotonic() + 20
    while True:
        detail = ask(trigger, spec, window, now)
        reading = monitor.reading(spec.name, window.opened_at)
        if detail is not None or (reading is not None and reading.events == len(window.events)):
            return ask(trigger, spec, window, now)
        assert time.monotonic() < deadline, f"no reading of the window: {reading}"
        time.sleep(0.05)


@pytest.fixture
def champion(tmp_path):
    """A real LightGBM champion trained on undrifted sales, registered with its reference statistics."""
    train = make_sales(1500, seed=1)
    ctx = RecordingContext(train, make_sales(300, seed=2), "sales", tmp_path / "model")
    from jobs.tabular_gbdt import Job

    Job().train({"num_boost_round": 40, "learning_rate": 0.1}, ctx)
    store = ArtifactStore(str(tmp_path / "store"))
    ref_uri = store.put_text(store.join("ref.json"), reference_stats(train, FEATURES).model_dump_json())
    holdout = make_sales(400, seed=3)
    reference_rmse = score_rows("jobs.tabular_gbdt:Job", str(tmp_path / "model"), None, holdout, "sales", "rmse")
    reg = open_registry(f"sqlite:///{tmp_path}/r.db")
    mv = reg.register_model("sales-gbdt", "r-1", str(tmp_path / "model"), {}, {"holdout_rmse": reference_rmse},
                            {"reference_uri": ref_uri})
    reg.set_alias("sales-gbdt", "champion", mv.version)
    yield reg
    reg.close()


class _Monitored(TriggerConformance):
    monitor: WindowMonitor

    def settle(self, trigger, spec, window, now):
        return _settle(trigger, spec, window, now, trigger.monitor)

    def settle_quiet(self, trigger, spec, window, now):
        return _settle(trigger, spec, window, now, trigger.monitor)


class TestDriftTrigger(_Monitored):
    @pytest.fixture
    def trigger(self, champion):
        monitor = WindowMonitor(champion, interval_s=0.0)
        yield DriftTrigger(monitor)
        monitor.close()

    @pytest.fixture
    def firing(self, tmp_path):
        uris = [_write(tmp_path / "d", f"drift{i}.parquet", make_sales(300, drift=1.0, seed=10 + i)) for i in range(2)]
        return _spec(drift={"threshold": 0.25, "min_rows": 400}), _window(600, 1.0, uris), 2.0

    @pytest.fixture
    def quiet(self, tmp_path):
        uris = [_write(tmp_path / "s", f"same{i}.parquet", make_sales(300, seed=20 + i)) for i in range(2)]
        return _spec(drift={"threshold": 0.25, "min_rows": 400}), _window(600, 2.0, uris), 3.0

    def test_the_detail_names_each_feature_and_the_drifted_one_passes(self, trigger, firing):
        detail = self.settle(trigger, *firing)
        assert set(detail.drift) == set(FEATURES) and detail.drift_method == "psi" and detail.threshold == 0.25
        assert detail.drift["temp"] > 0.25 > detail.drift["weekday"]  # drift=1.0 moves temp by 8 degrees


class TestDegradationTrigger(_Monitored):
    @pytest.fixture
    def trigger(self, champion):
        def scorer(spec, champ, rows):
            return score_rows(spec.job.entrypoint, champ.artifact_uri, champ.manifest_sha256, rows,
                              spec.dataset.label, spec.sweep.metric)

        monitor = WindowMonitor(champion, scorer=scorer, interval_s=0.0)
        yield DegradationTrigger(monitor)
        monitor.close()

    @pytest.fixture
    def firing(self, tmp_path):
        uris = [_write(tmp_path / "d", f"drift{i}.parquet", make_sales(200, drift=1.0, seed=30 + i)) for i in range(2)]
        return _spec(degradation={"threshold": 0.2, "min_rows": 300}), _window(400, 1.0, uris), 2.0

    @pytest.fixture
    def quiet(self, tmp_path):
        uris = [_write(tmp_path / "s", f"same{i}.parquet", make_sales(200, seed=40 + i)) for i in range(2)]
        return _spec(degradation={"threshold": 0.2, "min_rows": 300}), _window(400, 2.0, uris), 3.0

    def test_the_detail_compares_the_live_metric_with_the_holdout_one(self, trigger, firing, champion):
        detail = self.settle(trigger, *firing)
        deg = detail.degradation
        reference = champion.get_alias("sales-gbdt", "champion").metrics["holdout_rmse"]
        assert (deg.metric, deg.rows, deg.version, deg.reference) == ("rmse", 400, 1, reference)
        assert deg.live > reference and deg.relative == pytest.approx((deg.live - reference) / reference, abs=1e-5)
        assert deg.relative > 0.2

    def test_a_window_without_labels_is_not_scored(self, trigger, tmp_path):
        rows = make_sales(200, drift=1.0, seed=50).drop_columns(["sales"])
        uris = [_write(tmp_path / "n", f"nolabel{i}.parquet", rows) for i in range(2)]
        spec, window = _spec(degradation={"threshold": 0.2, "min_rows": 300}), _window(400, 9.0, uris)
        assert self.settle(trigger, spec, window, 10.0) is None
        assert trigger.monitor.reading(spec.name, 9.0).degradation is None
