"""Every sampler and scheduler of ``sweep.search`` / ``sweep.scheduler`` in a real Tune sweep on the session cluster.

Each sweep is ``streamtune.sweeps.runner.run_tune`` (the sweep job's own code) in a Ray task whose runtime_env
ships the test job package by URI (``tests/assets/testjobs``, ``testjobs.sweep_kinds:SweepKinds``), as the sweep
job does; the task asks for no CPU, like the job's driver. The nsga2 sweep runs as a whole sweep Ray Job instead
(``RayJobRunner``, the driver: refit, holdout, smoke test), so ``SweepResult.pareto`` is checked as the controller
reads it. All start together when the module's first test asks for them and each test waits for its own, so the
module costs about as long as the slowest one.

Pairs (sampler + scheduler): tpe + asha, random + hyperband, cmaes + median, grid + none, nsga2 + none (the
Pareto front), and a conditional space (tpe + fifo, the alias of none). PBT needs a job that checkpoints
(``Job.checkpoints``; this test job does not, and submit refuses it: tests/unit/test_sweep_search_space.py): it
runs with the torch MLP template in tests/integration/test_sweep_pbt.py.

The job reports ``rmse`` with a penalty per trial started before it (its ``rank``), so with ``penalty`` set every
later trial is worse than every earlier one whatever was sampled, and what each scheduler prunes is fixed.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures_ray import stored_code
from streamtune.config import JobSpec
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.runner import pareto_front, pick_winner, run_tune
from streamtune.sweeps.schema import TrialSummary

pytestmark = pytest.mark.integration
TESTJOBS = Path(__file__).resolve().parents[1] / "assets" / "testjobs" / "testjobs"
TABLE = pa.table({"x": [0.0, 1.0], "target": [0.0, 1.0]})
STEPS = 3
X = {"type": "uniform", "low": 0.0, "high": 1.0}

SWEEPS: dict[str, dict[str, Any]] = {
    # sequential (one trial at a time): each later trial is worse at ASHA's first rung, so it is pruned there
    "tpe_asha": {"sweep": {"search": "tpe", "scheduler": "asha", "max_concurrent": 1, "space": {"x": X}},
                 "params": {"penalty": 10.0}},
    # four at once: two fill HyperBand's no-halving bracket, two its bracket halving at step 1 (eta 3 keeps one)
    "random_hyperband": {"sweep": {"search": "random", "scheduler": "hyperband", "max_concurrent": 4,
                                   "space": {"x": X}},
                         "params": {"penalty": 10.0, "sleep_s": 0.3}},
    # sequential: the fourth trial is the first with 3 others to take a median over, and it is worse
    "cmaes_median": {"sweep": {"search": "cmaes", "scheduler": "median", "max_concurrent": 1,
                               "space": {"x": X, "y": {"type": "uniform", "low": -0.5, "high": 0.5}}},
                     "params": {"penalty": 10.0}},
    # 2 x 2 points: num_samples 8 is capped to the grid's 4
    "grid_none": {"sweep": {"search": "grid", "scheduler": "none", "num_samples": 8,
                            "space": {"x": {**X, "values": [0.2, 0.6]}, "depth": {"type": "int", "low": 1, "high": 2}}},
                  "params": {}},
    "nsga2_front": {"sweep": {"search": "nsga2", "scheduler": "none", "space": {"x": X},
                              "objectives": [{"metric": "rmse", "mode": "min"}, {"metric": "size", "mode": "min"}]},
                    "params": {}},
    "conditional": {"sweep": {"search": "tpe", "scheduler": "fifo", "space": {
                        "kind": {"type": "choice", "values": ["linear", "tree", "forest"]},
                        "depth": {"type": "int", "low": 1, "high": 4, "when": {"kind": ["tree", "forest"]}},
                        "x": X}},
                    "params": {}},
}


def _spec(name: str, sweep: dict[str, Any], params: dict[str, Any], rank_dir: Path) -> JobSpec:
    return JobSpec.parse({
        "name": name.replace("_", "-"), "dataset": {"name": "toy", "label": "target", "features": ["x"]},
        "job": {"entrypoint": "testjobs.sweep_kinds:SweepKinds", "code": str(TESTJOBS),
                "params": {"steps": STEPS, "rank_dir": str(rank_dir), **params}},
        "sweep": {"metric": "rmse", "mode": "min", "num_samples": 4, "max_concurrent": 2, "max_t": STEPS,
                  "grace_period": 1, "resources": {"cpu": 0.25}, "time_budget": 150, "seed": 11, **sweep},
        "serve": {"app": "toy"},
    })


AS_JOB = "nsga2_front"
"""The sweep run as a whole sweep Ray Job (the driver), not as run_tune in a task."""


@pytest.fixture(scope="module")
def sweeps(ray_services: Any) -> dict[str, tuple[JobSpec, Path, Any]]:
    """Start every sweep of :data:`SWEEPS` at once; name -> (spec, out folder, the task's ObjectRef, or for
    :data:`AS_JOB` the job runner)."""
    import ray

    from streamtune.artifacts.store import ray_uri

    root = Path(tempfile.mkdtemp(prefix="sweep-kinds-"))
    code_uri = stored_code(TESTJOBS, root / "store")
    task = ray.remote(num_cpus=0, max_retries=0, runtime_env={"py_modules": [ray_uri(code_uri)]})(run_tune)
    started: dict[str, tuple[JobSpec, Path, Any]] = {}
    for name, case in SWEEPS.items():
        (root / name / "ranks").mkdir(parents=True)
        spec = _spec(name, case["sweep"], case["params"], root / name / "ranks")
        out = root / name / "out"
        if name == AS_JOB:
            started[name] = (spec, out, _submit_job(ray_services, root, spec, out, code_uri))
        else:
            started[name] = (spec, out, task.remote(spec, TABLE, TABLE, ["x"], str(out), seed=7))  # type: ignore[call-arg]
    return started


def _submit_job(ray_services: Any, root: Path, spec: JobSpec, out: Path, code_uri: str) -> RayJobRunner:
    """The sweep as the controller submits it: a request over a Parquet window, the driver as a Ray Job."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, 200)
    pq.write_table(pa.table({"x": x, "target": 2 * x + rng.normal(0, 0.1, 200)}), root / "window.parquet")
    out.mkdir(parents=True)
    req = SweepRequest(run_id="r-sweepkinds-nsga2", spec=spec.model_dump(mode="json"),
                       uris=[str(root / "window.parquet")], out_uri=str(out), trusted_roots=[str(root)])
    (out / "request.json").write_text(req.model_dump_json())
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    assert runner.submit(req.run_id, str(out / "request.json"), code_uri) is True
    return runner


def _job_result(sweeps: dict[str, tuple[JobSpec, Path, Any]], name: str, timeout: float = 240) -> SweepResult:
    _, out, runner = sweeps[name]
    deadline, status = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = runner.status("r-sweepkinds-nsga2")
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.5)
    assert status == "SUCCEEDED", runner.logs_tail("r-sweepkinds-nsga2")
    return SweepResult.model_validate_json((out / "result.json").read_text())


def _trials(sweeps: dict[str, tuple[JobSpec, Path, Any]], name: str) -> tuple[JobSpec, list[TrialSummary]]:
    import ray

    spec, _, ref = sweeps[name]
    trials = ray.get(ref, timeout=240)
    assert all(t.error is None for t in trials), [t.error for t in trials]
    return spec, trials


def _saved(trials: list[TrialSummary]) -> list[TrialSummary]:
    return [t for t in trials if t.artifact_uri]


def _config(trial: TrialSummary) -> dict[str, Any]:
    """The config the job was given, as it saved it."""
    return json.loads((Path(str(trial.artifact_uri)) / "model.json").read_text())["config"]


def test_tpe_with_asha_prunes_every_later_worse_trial_at_its_first_rung(sweeps):
    spec, trials = _trials(sweeps, "tpe_asha")
    assert len(trials) == 4
    by_rank = sorted(trials, key=lambda t: t.metrics["rank"])
    assert [t.metrics["rank"] for t in by_rank] == [0.0, 1.0, 2.0, 3.0]
    first, later = by_rank[0], by_rank[1:]
    assert first.iterations == STEPS and first.artifact_uri
    assert [(t.iterations, t.artifact_uri) for t in later] == [(1, None)] * 3  # pruned at rung 1: no model
    best, front = pick_winner(trials, spec.sweep)
    assert best.trial_id == first.trial_id and front == []
    assert all(0.0 <= t.params["x"] <= 1.0 and set(t.params) == {"x"} for t in trials)


def test_random_with_hyperband_halves_its_second_bracket_and_every_survivor_saves(sweeps):
    spec, trials = _trials(sweeps, "random_hyperband")
    assert len(trials) == 4
    pruned = [t for t in trials if not t.artifact_uri]
    assert [t.iterations for t in pruned] == [1], [(t.iterations, t.metrics) for t in trials]
    # stop_last_trials=False: a trial that reached max_t is never cut off before its save
    assert all(t.iterations == STEPS for t in _saved(trials)) and len(_saved(trials)) == 3
    best, _ = pick_winner(trials, spec.sweep)
    assert best.metrics["rmse"] == min(t.metrics["rmse"] for t in _saved(trials))


def test_cmaes_with_the_median_rule_stops_the_fourth_trial_worse_than_the_median(sweeps):
    spec, trials = _trials(sweeps, "cmaes_median")
    assert len(trials) == 4
    by_rank = sorted(trials, key=lambda t: t.metrics["rank"])
    assert [t.iterations for t in by_rank] == [STEPS, STEPS, STEPS, 1]  # the first with 3 others to compare
    assert by_rank[3].artifact_uri is None and all(t.artifact_uri for t in by_rank[:3])
    for t in trials:
        assert set(t.params) == {"x", "y"} and 0 <= t.params["x"] <= 1 and -0.5 <= t.params["y"] <= 0.5
    assert len({(t.params["x"], t.params["y"]) for t in trials}) == 4  # CMA-ES proposed distinct points
    assert pick_winner(trials, spec.sweep)[0].trial_id == by_rank[0].trial_id


def test_grid_runs_every_point_once_capped_to_the_grid_and_none_prunes_nothing(sweeps):
    spec, trials = _trials(sweeps, "grid_none")
    assert spec.sweep.num_samples == 8 and spec.sweep.planned_trials == 4
    assert sorted((t.params["x"], t.params["depth"]) for t in trials) == [(0.2, 1), (0.2, 2), (0.6, 1), (0.6, 2)]
    assert all(t.iterations == STEPS and t.artifact_uri for t in trials)
    assert {_config(t)["depth"] for t in trials} == {1, 2}


def test_nsga2_returns_a_pareto_front_of_non_dominated_trials_and_the_winner_is_in_it(sweeps):
    spec = sweeps[AS_JOB][0]
    result = _job_result(sweeps, AS_JOB)
    trials = result.trials
    assert len(trials) == 4 and len(_saved(trials)) == 4
    assert result.smoke is not None and result.smoke.passed and result.holdout.challenger is not None

    def dominates(a: TrialSummary, b: TrialSummary) -> bool:
        pa_, pb = (a.metrics["rmse"], a.metrics["size"]), (b.metrics["rmse"], b.metrics["size"])
        return all(u <= v for u, v in zip(pa_, pb, strict=True)) and pa_ != pb

    best, front = pick_winner(trials, spec.sweep)
    assert result.pareto == front == pareto_front(trials, spec.sweep.objectives) and front
    assert result.best.trial_id == best.trial_id  # the gate scored the best of the front (refit: same trial)
    on_front = [t for t in trials if t.trial_id in front]
    for t in on_front:
        assert not any(dominates(o, t) for o in trials), t.metrics
    for t in trials:
        if t.trial_id not in front:
            assert any(dominates(o, t) for o in on_front), t.metrics
    assert best.trial_id in front
    assert best.metrics["rmse"] == min(t.metrics["rmse"] for t in on_front)


def test_a_conditional_parameter_is_sampled_only_when_its_condition_holds(sweeps):
    spec, trials = _trials(sweeps, "conditional")
    assert len(trials) == 4 and all(t.artifact_uri for t in trials)
    kinds = {t.params["kind"] for t in trials}
    assert "linear" in kinds and kinds & {"tree", "forest"}, kinds  # both branches ran (seeded)
    for t in trials:
        assert ("depth" in t.params) == (t.params["kind"] in ("tree", "forest")), t.params
        assert ("depth" in _config(t)) == ("depth" in t.params)  # what the job was given, not only what Tune kept
        if "depth" in t.params:
            assert 1 <= t.params["depth"] <= 4
