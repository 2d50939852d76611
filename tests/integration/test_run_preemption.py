"""An exploratory sweep (asked for by hand) is pre-empted by an event-triggered window, then resumed.

The controller's run advancer (``RunAdvancer``, real SQLite registry, local artifact store) submits real sweep Ray
Jobs to the session cluster (``RayJobRunner``). A run asked for by hand starts; once its first trial has ended and
its second runs, a window arrives: the advancer stops the manual run's Ray Job, puts the run back in the queue as
its next attempt, and starts the window. When the window's sweep is judged, the manual run's next attempt is
submitted; its driver died without an ``error.json``, so it resumes the Tune experiment (sweeps/resume.py): the
first trial is kept from attempt 1, the second runs again, and the budget's spend carries over. Each sweep is 2
trials of ``testjobs.sweep_kinds:SweepKinds`` (tests/assets/testjobs), one at a time. ``promotion: manual``, so
nothing is swapped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures_ray import stored_code
from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.runs import RunAdvancer
from streamtune.registry import SqliteRegistry
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.sweeps import RayJobRunner, SweepResult
from streamtune.sweeps.progress import read_progress

pytestmark = pytest.mark.integration
TESTJOBS = Path(__file__).resolve().parents[1] / "assets" / "testjobs" / "testjobs"
JUDGED = (RunStatus.AWAITING_APPROVAL, RunStatus.REJECTED)
"""Where a run that ran its sweep to the end stops with promotion: manual (the gate passed, or not)."""


def _spec(code_uri: str) -> JobSpec:
    spec = JobSpec.parse({
        "name": "preempt", "dataset": {"name": "toy", "label": "target", "features": ["x"]},
        "job": {"entrypoint": "testjobs.sweep_kinds:SweepKinds", "code": str(TESTJOBS),
                "params": {"steps": 4, "sleep_s": 0.5}},
        "sweep": {"metric": "rmse", "mode": "min", "search": "random", "scheduler": "none", "num_samples": 2,
                  "max_concurrent": 1, "max_t": 4, "grace_period": 1, "resources": {"cpu": 1}, "retries": 0,
                  "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}, "time_budget": 120},
        "promotion": "manual", "serve": {"app": "preempt"},
    })
    return spec.model_copy(update={"job": spec.job.model_copy(update={"code_uri": code_uri})})


def _until(what: str, check: Any, step: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step()
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not {what} after {timeout}s")


def test_a_window_preempts_a_manual_sweep_in_flight_which_resumes_after_it(ray_services: Any, tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, 200)
    window_file = tmp_path / "store" / "data" / "w.parquet"
    window_file.parent.mkdir(parents=True)
    pq.write_table(pa.table({"x": x, "target": 2 * x + rng.normal(0, 0.1, 200)}), window_file)
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    record = reg.put_spec(_spec(stored_code(TESTJOBS, tmp_path / "store")))
    jobs = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    adv = RunAdvancer(reg, jobs, services=None, store=store)

    def run(run_id: str, t: float, **kw: Any) -> RunRecord:
        return RunRecord(run_id=run_id, spec_name=record.name, dataset="toy", num_rows=200, uris=[str(window_file)],
                         offsets={"t:0": [int(t), int(t)]}, created_at=t, updated_at=t, **kw)

    def step() -> None:
        adv.step({record.name: record})

    def get(run_id: str) -> RunRecord:
        found = reg.get_run(run_id)
        assert found is not None
        return found

    manual = run("r-preempt-manual", time.time(), reason="manual", command_id="c-0000000000000001")
    reg.commit_window("", {}, {}, [manual])
    out = adv.out_uri(manual)
    _until("the manual sweep's first trial ended and its second running", lambda: _second_running(out), step)
    assert jobs.status(manual.run_id) == "RUNNING"

    window = run("r-preempt-window", time.time())
    reg.commit_window("g", {}, {}, [window])
    step()
    preempted = get(manual.run_id)
    assert preempted.status == RunStatus.PENDING and preempted.attempt == 2
    assert [(a.attempt, a.submission_id, a.preempted_by) for a in preempted.attempts] == [
        (1, manual.run_id, window.run_id)]
    assert get(window.run_id).status == RunStatus.SUBMITTED
    _until("the manual run's first job stopped", lambda: jobs.status(manual.run_id) == "STOPPED", lambda: None, 60)

    _until("the window judged", lambda: get(window.run_id).status in JUDGED, step, 180)
    assert get(manual.run_id).status == RunStatus.PENDING  # it waited for the window
    _until("the manual run resumed and judged", lambda: get(manual.run_id).status in JUDGED, step, 180)
    resumed, judged_window = get(manual.run_id), get(window.run_id)
    assert resumed.attempt == 2 and resumed.submission_id == f"{manual.run_id}-a2"
    # judged once its result.json was whole, which can be a moment before its Ray Job exits
    _until("the resumed attempt's Ray Job ended", lambda: jobs.status(resumed.submission_id) != "RUNNING",
           lambda: None, 60)
    assert jobs.status(resumed.submission_id) == "SUCCEEDED"
    assert resumed.timings["submitted_at"] >= judged_window.updated_at  # resumed only after the window's verdict
    assert not (Path(out) / "error.json").exists()  # stopped, not failed: attempt 2 resumed the experiment
    result = SweepResult.model_validate(resumed.sweep)
    assert len([t for t in result.trials if t.artifact_uri]) == 2 and result.best.artifact_uri
    assert sorted(t.attempt for t in result.trials) == [1, 2]  # the first trial kept from attempt 1, not rerun
    spent = result.spent
    assert spent is not None and spent.stopped_by == "completed" and spent.trials_completed == 2
    assert spent.cpu_hours * 3600 >= 2 * 4 * 0.5  # both trials' sleeps: attempt 1's spend carried over


def _second_running(out_uri: str) -> bool:
    progress = read_progress(out_uri)
    return progress is not None and progress.counts()["done"] == 1 and progress.counts()["running"] == 1
