"""Budgets stop a real sweep cleanly: the best trial so far wins, and the result reports what was spent.

Two sweeps run as whole sweep Ray Jobs on the session cluster (the driver: Tune, refit, holdout, smoke test),
started together when the module's first test asks for them: one under ``sweep.cpu_hours``, one under
``sweep.time_budget``. Each plans 4 trials, one at a time, of the test job ``testjobs.sweep_kinds:SweepKinds``
(tests/assets/testjobs), which reports ``STEPS`` times ``SLEEP_S`` apart and saves its model at the end, so a
trial takes at least ``STEPS * SLEEP_S`` seconds on one CPU. Each budget is a few trials' worth, less than four:
the first trial always completes, the fourth never does, and the budget cuts the sweep short.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures_ray import finished_sweep, stored_code
from streamtune.config import JobSpec
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.progress import read_progress
from streamtune.sweeps.runner import pick_best

pytestmark = pytest.mark.integration
TESTJOBS = Path(__file__).resolve().parents[1] / "assets" / "testjobs" / "testjobs"
STEPS, SLEEP_S = 4, 0.5
TRIAL_S = STEPS * SLEEP_S
"""Least seconds one trial runs (one CPU): 2 CPU-seconds."""
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu_hours": {"cpu_hours": 2.75 * TRIAL_S / 3600},
    "time_budget": {"time_budget": 3.75 * TRIAL_S},  # counted from Tune's first step: the first actor's start too
}


def _spec(name: str, budget: dict[str, Any]) -> JobSpec:
    return JobSpec.parse({
        "name": f"budget-{name.replace('_', '-')}", "dataset": {"name": "toy", "label": "target", "features": ["x"]},
        "job": {"entrypoint": "testjobs.sweep_kinds:SweepKinds", "code": str(TESTJOBS),
                "params": {"steps": STEPS, "sleep_s": SLEEP_S}},
        "sweep": {"metric": "rmse", "mode": "min", "search": "random", "scheduler": "none", "num_samples": 4,
                  "max_concurrent": 1, "max_t": STEPS, "grace_period": 1, "resources": {"cpu": 1},
                  "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}, "seed": 3, "time_budget": 120,
                  **budget},
        "serve": {"app": "toy"},
    })


@pytest.fixture(scope="module")
def budget_sweeps(ray_services: Any) -> dict[str, tuple[JobSpec, Path, RayJobRunner, str]]:
    """Submit one sweep Ray Job per budget; name -> (spec, out folder, runner, job id)."""
    root = Path(tempfile.mkdtemp(prefix="sweep-budget-"))
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, 200)
    pq.write_table(pa.table({"x": x, "target": 2 * x + rng.normal(0, 0.1, 200)}), root / "window.parquet")
    code_uri = stored_code(TESTJOBS, root / "store")
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    started = {}
    for name, budget in BUDGETS.items():
        spec, out, run_id = _spec(name, budget), root / name, f"r-budget-{name.replace('_', '-')}"
        out.mkdir()
        req = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json"), uris=[str(root / "window.parquet")],
                           out_uri=str(out), trusted_roots=[str(root)])
        (out / "request.json").write_text(req.model_dump_json())
        assert runner.submit(run_id, str(out / "request.json"), code_uri) is True
        started[name] = (spec, out, runner, run_id)
    return started


def _result(budget_sweeps: dict[str, tuple[JobSpec, Path, RayJobRunner, str]], name: str,
            timeout: float = 180) -> tuple[JobSpec, SweepResult]:
    spec, out, runner, run_id = budget_sweeps[name]
    return spec, finished_sweep(runner, run_id, out, timeout)


@pytest.mark.parametrize("name", list(BUDGETS))
def test_a_budget_stops_the_sweep_and_the_best_trial_so_far_wins(budget_sweeps: Any, name: str) -> None:
    spec, result = _result(budget_sweeps, name)
    spent = result.spent
    assert spent is not None and spent.stopped_by == name, spent
    saved = [t for t in result.trials if t.artifact_uri]
    assert 1 <= len(saved) == spent.trials_completed < spent.trials_planned == 4
    assert spent.trials_started < 4 or spent.trials_stopped >= 1  # cut short: a trial stopped, or one never ran
    assert spent.trials_failed == 0 and spent.trials_pruned == 0  # scheduler none: nothing else ends a trial
    assert spent.trials_completed + spent.trials_stopped == spent.trials_started
    assert spent.trials_started >= len(result.trials)  # a trial stopped before its first report has no summary
    assert all(t.iterations == STEPS for t in saved)  # every completed trial ran to its end
    # the winner (refit on train + valid) is the best of the trials that saved a model before the budget ran out
    assert result.refit is not None and result.refit.trial_id == pick_best(saved, "rmse", "min").trial_id
    assert result.smoke is not None and result.smoke.passed and result.holdout.challenger is not None


def test_the_spend_is_each_trials_cpu_seconds_within_the_limit_it_ran_under(budget_sweeps: Any) -> None:
    spec, result = _result(budget_sweeps, "cpu_hours")
    spent = result.spent
    assert spent is not None and spent.cpu_hours_budget == spec.sweep.cpu_hours
    limit_s = float(spec.sweep.cpu_hours or 0) * 3600
    # one CPU per trial, one trial at a time: CPU-seconds are the trials' running seconds, at least a trial's
    # sleeps each; the stop comes within a few of Tune's steps after the limit
    assert limit_s <= spent.cpu_hours * 3600 <= limit_s + 3.0, spent
    assert spent.cpu_hours * 3600 >= spent.trials_completed * TRIAL_S
    assert spent.gpu_hours == 0.0 and spent.wall_s >= spent.cpu_hours * 3600 - 0.5  # one at a time: wall >= CPU


def test_a_time_budget_stops_the_sweep_at_its_wall_clock_limit(budget_sweeps: Any) -> None:
    spec, result = _result(budget_sweeps, "time_budget")
    spent = result.spent
    assert spent is not None and spent.time_budget_s == spec.sweep.time_budget
    assert float(spec.sweep.time_budget or 0) <= spent.wall_s <= float(spec.sweep.time_budget or 0) + 10.0, spent
    assert spent.cpu_hours * 3600 <= spent.wall_s + 0.5  # one CPU at a time never spends more than the wall time


def test_the_progress_file_shows_no_trial_running_after_a_budget_stop(budget_sweeps: Any) -> None:
    for name in BUDGETS:
        _, result = _result(budget_sweeps, name)
        spent, progress = result.spent, read_progress(str(budget_sweeps[name][1]))
        assert spent is not None and progress is not None and progress.finished
        counts = progress.counts()
        assert counts["running"] == 0 and counts["done"] == spent.trials_completed, counts
        assert counts["pruned"] == spent.trials_stopped, counts  # cut by the budget: ended early
