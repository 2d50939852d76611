"""The gate's decisions and the snapshot's checks and split."""

import pyarrow.parquet as pq
import pytest

from conformance.validator_suite import ValidatorConformance
from streamtune.config import DatasetSpec, ValidationSpec
from streamtune.data import Snapshot
from streamtune.dev.synthetic import make_sales
from streamtune.errors import DataError
from streamtune.validation.gate import GateEvidence, MetricGate
from streamtune.validation.metrics import get_metric, rmse


def _ev(**kw):
    base = dict(metric="rmse", mode="min", challenger=1.0, champion=None, holdout_rows=100, snapshot_rows=500)
    return GateEvidence(**{**base, **kw})


def test_first_model_needs_only_the_threshold():
    gate = MetricGate(ValidationSpec(threshold=2.0, min_rows=100))
    assert gate.validate(_ev()).passed
    report = gate.validate(_ev(challenger=2.5))
    assert not report.passed and "threshold" in report.reasons[0]


def test_challenger_must_beat_champion_on_the_same_holdout():
    gate = MetricGate(ValidationSpec(must_beat_champion_by=0.05, min_rows=10, bootstrap=False))
    assert gate.validate(_ev(challenger=0.9, champion=1.0)).passed
    worse = gate.validate(_ev(challenger=0.97, champion=1.0))
    assert not worse.passed and "vs champion" in worse.reasons[0]
    assert worse.numbers["improvement"] == pytest.approx(0.03)


def test_a_tie_does_not_beat_the_champion_and_max_mode_flips():
    gate = MetricGate(ValidationSpec(min_rows=10, bootstrap=False))
    assert not gate.validate(_ev(challenger=1.0, champion=1.0)).passed
    assert gate.validate(_ev(metric="accuracy", mode="max", challenger=0.9, champion=0.8)).passed


def test_unscorable_or_nan_challenger_and_small_data_are_rejected():
    gate = MetricGate(ValidationSpec(min_rows=1000))
    assert not gate.validate(_ev(challenger=None, error="boom")).passed
    assert not gate.validate(_ev(challenger=float("nan"))).passed
    report = gate.validate(_ev(snapshot_rows=10))
    assert not report.passed and "min 1000" in report.reasons[0]


def test_metrics():
    assert rmse([0, 0], [3, 4]) == pytest.approx(3.5355, rel=1e-3)
    assert get_metric("accuracy")([1, 0, 1], [0.9, 0.2, 0.4]) == pytest.approx(2 / 3)


def _write(tmp_path, name, table):
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def test_snapshot_reads_files_fingerprints_and_splits_reproducibly(tmp_path):
    uris = [_write(tmp_path, f"p{i}.parquet", make_sales(200, seed=i)) for i in range(3)]
    spec = DatasetSpec(name="sales", label="sales", uri_roots=[str(tmp_path)])
    snap = Snapshot.from_parts(spec, uris)
    assert snap.num_rows == 600 and "sales" not in snap.features
    assert snap.fingerprint == Snapshot.from_parts(spec, reversed(uris)).fingerprint
    a, b = snap.split(0.2, 0.25), snap.split(0.2, 0.25)
    assert a.holdout.equals(b.holdout)
    assert a.holdout.num_rows == 120 and a.valid.num_rows == 120 and a.train.num_rows == 360


def test_snapshot_rejects_files_outside_roots_and_missing_labels(tmp_path):
    uri = _write(tmp_path, "p.parquet", make_sales(10))
    with pytest.raises(DataError, match="it must lie under /elsewhere/"):
        Snapshot.from_parts(DatasetSpec(name="s", label="sales", uri_roots=["/elsewhere/"]), [uri])
    with pytest.raises(DataError, match="it must lie under"):  # no uri_roots: the platform's own folders only
        Snapshot.from_parts(DatasetSpec(name="s", label="sales"), [uri], platform_roots=["/srv/streamtune"])
    with pytest.raises(DataError, match='label "target" is missing'):
        Snapshot.from_parts(DatasetSpec(name="s", label="target"), [uri], platform_roots=[str(tmp_path)])
    with pytest.raises(DataError, match="cannot read"):
        Snapshot.from_parts(DatasetSpec(name="s", label="sales"), [str(tmp_path / "nope.parquet")],
                            platform_roots=[str(tmp_path)])


class TestMetricGateConformance(ValidatorConformance):
    @pytest.fixture
    def validator(self):
        return MetricGate(ValidationSpec(min_rows=10))
