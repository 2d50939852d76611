"""Which windows a run trains on (dataset.training), picked from a real SQLite registry's runs."""

from __future__ import annotations

import pathlib

import pytest

from streamtune.config import JobSpec, load_jobspec
from streamtune.controller.history import training_windows
from streamtune.errors import ConfigError
from streamtune.registry import RunRecord, open_registry
from streamtune.registry.records import RunStatus

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spec(**training) -> JobSpec:
    data = load_jobspec(ROOT / "configs" / "demo.yaml").model_dump(mode="json", by_alias=True)
    data["dataset"]["training"] = training
    return JobSpec.parse(data)


@pytest.fixture
def reg(tmp_path):
    """Five windows of spec sales-gbdt a day apart (w0..w4), 100 rows each, w2's data gate failed; one run of
    another spec; and a manual run that re-reads w3's file."""
    reg = open_registry(f"sqlite:///{tmp_path}/r.db")
    runs = [RunRecord(run_id=f"w{i}", spec_name="sales-gbdt", dataset="sales", uris=[f"/d/{i}.parquet"],
                      offsets={"t:0": [10 * i, 10 * i + 9]}, num_rows=100, created_at=1000.0 + 86400 * i)
            for i in range(5)]
    runs.append(RunRecord(run_id="other", spec_name="other", dataset="sales", uris=["/d/x.parquet"],
                          num_rows=100, created_at=1000.0))
    runs.append(RunRecord(run_id="manual", spec_name="sales-gbdt", dataset="sales", uris=["/d/3.parquet"],
                          num_rows=100, created_at=1000.0 + 86400 * 3 + 5, command_id="c-1"))
    reg.commit_window("g", {}, {}, runs)
    reg.update_run("w2", status=RunStatus.FAILED, gate={"passed": False, "reasons": ["null labels"],
                                                        "data_gate": {"passed": False}})
    yield reg
    reg.close()


def _ids(reg, spec, run_id):
    return [w.run_id for w in training_windows(reg, spec, reg.get_run(run_id))]


def test_window_policy_reads_only_the_runs_own_window(reg):
    assert _ids(reg, _spec(), "w4") == []


def test_expanding_reads_every_earlier_window_but_refused_and_repeated_ones(reg):
    windows = training_windows(reg, _spec(policy="expanding"), reg.get_run("w4"))
    assert [w.run_id for w in windows] == ["w0", "w1", "w3"]  # w2's rows were refused; a manual run is no window
    assert [w.uris for w in windows] == [["/d/0.parquet"], ["/d/1.parquet"], ["/d/3.parquet"]]
    assert windows[0].offsets == {"t:0": [0, 9]} and sum(w.num_rows for w in windows) == 300
    assert _ids(reg, _spec(policy="expanding"), "w1") == ["w0"]  # never a window stored after the run
    assert _ids(reg, _spec(policy="expanding"), "w0") == []
    assert _ids(reg, _spec(policy="expanding"), "manual") == ["w0", "w1"]  # its own files are w3's


def test_sliding_by_count_counts_the_runs_own_window(reg):
    assert _ids(reg, _spec(policy="sliding", windows=2), "w4") == ["w3"]
    assert _ids(reg, _spec(policy="sliding", windows=3), "w4") == ["w1", "w3"]
    assert _ids(reg, _spec(policy="sliding", windows=1), "w4") == []


def test_sliding_by_span_and_by_both(reg):
    assert _ids(reg, _spec(policy="sliding", span="2d"), "w4") == ["w3"]  # w2 is within 2 days but was refused
    assert _ids(reg, _spec(policy="sliding", span="3d"), "w4") == ["w1", "w3"]
    assert _ids(reg, _spec(policy="sliding", span="30d", windows=2), "w4") == ["w3"]


def test_a_policy_that_cannot_work_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r'dataset.training; policy "sliding" needs windows, span or both'):
        _spec(policy="sliding")
    with pytest.raises(ConfigError, match=r"dataset.training.policy"):
        _spec(policy="everything")
    with pytest.raises(ConfigError, match=r'windows and span apply to policy "sliding" only'):
        _spec(policy="expanding", windows=3)
