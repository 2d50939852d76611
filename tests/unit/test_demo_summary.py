"""The demo's verdict: ok only if both runs were promoted, v2 serves, and no request failed."""

from types import SimpleNamespace

import pytest

from streamtune.config import load_jobspec
from streamtune.dev.demo import _summary
from streamtune.registry.records import RunRecord, RunStatus


def _run(i, status=RunStatus.PROMOTED):
    return RunRecord(run_id=f"r-{i:016d}", spec_name="sales-gbdt", dataset="sales", status=status,
                     model_version=i if status == RunStatus.PROMOTED else None, num_rows=2200,
                     timings={"sweep_job_s": 5.0, "submitted_at": 1e9, "swap_flip_s": 0.01})


class _Client:
    def __init__(self, champion):
        self._champion = champion

    def champion(self, name):
        return SimpleNamespace(version=self._champion) if self._champion else None


LOAD_OK = {"requests": 100, "ok": 100, "failed": 0, "versions": {"1": 60, "2": 40}, "last_version": "2"}


@pytest.fixture
def spec():
    import pathlib

    return load_jobspec(pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def test_ok_when_v2_serves_and_nothing_failed(spec):
    summary = _summary(_Client(2), spec, [_run(1), _run(2)], LOAD_OK, 10.0)
    assert summary["ok"] and summary["versions"][1]["timings"] == {"sweep_job_s": 5.0, "swap_flip_s": 0.01}


@pytest.mark.parametrize("case", ["failed_request", "rejected", "old_champion", "v1_last"])
def test_not_ok(spec, case):
    runs, load, champ = [_run(1), _run(2)], dict(LOAD_OK), 2
    if case == "failed_request":
        load["failed"] = 1
    elif case == "rejected":
        runs[1] = _run(2, RunStatus.REJECTED)
    elif case == "old_champion":
        champ = 1
    else:
        load["last_version"] = "1"
    assert not _summary(_Client(champ), spec, runs, load, 10.0)["ok"]
