"""Warm start points come from the registry's lineage: the champion's params, then the best earlier trials."""

from __future__ import annotations

import pathlib

from streamtune.config import JobSpec, load_jobspec
from streamtune.controller.warm import warm_start_points
from streamtune.registry import RunRecord, open_registry
from streamtune.registry.records import RunStatus

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spec(**warm) -> JobSpec:
    data = load_jobspec(ROOT / "configs" / "demo.yaml").model_dump(mode="json", by_alias=True)
    data["sweep"]["warm_start"] = warm
    return JobSpec.parse(data)


def _trial(tid: str, rmse: float | None, **params) -> dict:
    base = {"learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20}
    return {"trial_id": tid, "params": {**base, **params}, "metrics": {} if rmse is None else {"rmse": rmse},
            "artifact_uri": None if rmse is None else f"/m/{tid}"}


def test_the_champion_first_then_the_best_earlier_trials_that_fit_the_space(tmp_path):
    reg = open_registry(f"sqlite:///{tmp_path}/r.db")
    spec = _spec()
    runs = [RunRecord(run_id=f"r{i}", spec_name=spec.name, dataset="sales", offsets={"t:0": [i, i]})
            for i in range(3)]
    reg.commit_window("g", {}, {}, runs)
    reg.update_run("r0", status=RunStatus.PROMOTED, sweep={"trials": [
        _trial("a", 3.0, num_leaves=40), _trial("b", 2.5, num_leaves=50), _trial("c", None)]})
    reg.update_run("r1", status=RunStatus.REJECTED, sweep={"trials": [
        _trial("d", 2.0, num_leaves=99),  # the best, but num_leaves 99 is outside the space now (7..63)
        _trial("e", 2.7, learning_rate=0.05)]})
    reg.update_run("r2", status=RunStatus.FAILED, sweep={"trials": [_trial("f", 1.0)]})  # a failed run: not used
    mv = reg.register_model(spec.name, "r0", "/m/b", {"learning_rate": 0.2, "num_leaves": 21, "min_data_in_leaf": 9,
                                                      "objective": "regression"}, {}, {})
    reg.set_alias(spec.name, "champion", mv.version)

    points = warm_start_points(reg, spec)
    assert points == [{"learning_rate": 0.2, "num_leaves": 21, "min_data_in_leaf": 9},   # the champion's
                      {"learning_rate": 0.1, "num_leaves": 50, "min_data_in_leaf": 20},  # trial b (2.5)
                      {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20}]  # trial e (2.7)
    assert warm_start_points(reg, _spec(champion=False, top_k=1)) == [points[1]]
    assert warm_start_points(reg, _spec(champion=False, top_k=0)) == []
    reg.close()


def test_no_champion_and_no_earlier_sweep_means_no_points(tmp_path):
    reg = open_registry(f"sqlite:///{tmp_path}/r.db")
    assert warm_start_points(reg, _spec()) == []
    reg.close()
