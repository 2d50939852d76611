"""What a run trains on, in a real Ray Job: earlier windows read with its own, a time-ordered holdout, a refit.

The controller's choice of windows (sliding and expanding, from a real SQLite registry) is checked in
``tests/unit/test_training_windows.py``; here the sweep job reads the windows it is handed as one dataset,
holds out exactly the latest rows by the time column, and refits the winner on train + validation rows.
"""

import pathlib
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fixtures_ray import stored_code
from streamtune.config import JobSpec, load_jobspec
from streamtune.dev.synthetic import make_sales
from streamtune.registry.manifest import verify_manifest
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult, TrainingWindow
from streamtune.sweeps.progress import read_progress
from streamtune.sweeps.scoring import read_scores

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
ROWS = 700


def _window(folder: pathlib.Path, i: int) -> str:
    """Window ``i``: ROWS rows whose ``day`` runs from i*ROWS on, in shuffled order within the file."""
    t = make_sales(ROWS, drift=0.3 * i, seed=10 + i)
    days = np.random.default_rng(i).permutation(np.arange(i * ROWS, (i + 1) * ROWS))
    t = t.append_column("day", pa.array(days, pa.int64()))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"w{i}.parquet"
    pq.write_table(t, path)
    return str(path)


def _spec(**validation) -> JobSpec:
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    data = spec.model_dump(mode="json", by_alias=True)
    data["dataset"].update(time_column="day", training={"policy": "expanding"})
    data["sweep"].update(num_samples=2, max_concurrent=2)
    data["validation"].update(split="time", min_rows=100, bootstrap=False, **validation)
    data["validation"]["slices"] = [{"name": "days", "column": "day", "range": [0, 10**9]}]  # keeps 'day' per row
    return JobSpec.parse(data)


def _run(ray_services, tmp, run_id: str, spec: JobSpec, uris: list[str], history: list[TrainingWindow],
         warm_start: list[dict] | None = None):
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    out = tmp / run_id
    out.mkdir(parents=True)
    req = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json", by_alias=True), uris=uris,
                       history=history, out_uri=str(out), trusted_roots=[str(tmp)], warm_start=warm_start or [])
    (out / "request.json").write_text(req.model_dump_json())
    runner.submit(run_id, str(out / "request.json"), stored_code(spec.code_dir(), tmp / "store"))
    deadline = time.monotonic() + 240
    while (status := runner.status(run_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, runner.logs_tail(run_id)
        time.sleep(0.5)
    assert status == "SUCCEEDED", runner.logs_tail(run_id, 60)
    return SweepResult.model_validate_json((out / "result.json").read_text())


def test_earlier_windows_are_read_the_latest_rows_held_out_and_the_winner_refit(ray_services, tmp_path):
    uris = [_window(tmp_path / "data", i) for i in range(3)]
    history = [TrainingWindow(run_id=f"r-w{i}", uris=[uris[i]], offsets={"t:0": [i, i]}, num_rows=ROWS,
                              created_at=100.0 + i) for i in range(2)]
    spec = _spec()
    result = _run(ray_services, tmp_path, "r-trainingdata0001", spec, [uris[2]], history)

    # the three windows were read as one dataset, and the lineage names each earlier one
    assert result.snapshot["num_rows"] == 3 * ROWS and sorted(result.snapshot["uris"]) == sorted(uris)
    assert [w["run_id"] for w in result.snapshot["windows"]] == ["r-w0", "r-w1"]
    assert "day" not in result.snapshot["features"]  # the time column orders rows, it is not a feature

    # the holdout is exactly the latest rows by day: the last holdout_fraction of 0..3*ROWS-1
    n_hold = round(3 * ROWS * spec.validation.holdout_fraction)
    assert result.holdout.rows == n_hold == result.snapshot["rows"]["holdout"]
    held_days = sorted(read_scores(result.holdout.scores_uri)["slice:day"].to_pylist())
    assert held_days == list(range(3 * ROWS - n_hold, 3 * ROWS))

    # the winner was refit on train + valid: the registered artifact is the refit, verified, and no worse
    refit = result.refit
    assert refit is not None and result.best.artifact_uri == refit.artifact_uri != refit.trial_artifact_uri
    assert refit.trial_id == result.best.trial_id and refit.rows == 3 * ROWS - n_hold
    verify_manifest(refit.artifact_uri)
    assert refit.trial_holdout is not None and result.holdout.challenger <= refit.trial_holdout, (
        f"refit rmse {result.holdout.challenger} > the trial's own {refit.trial_holdout}")


def test_without_refit_the_winning_trial_itself_is_gated(ray_services, tmp_path):
    uris = [_window(tmp_path / "data", i) for i in range(2)]
    champion = {"learning_rate": 0.1234, "num_leaves": 17, "min_data_in_leaf": 11}  # a warm-start point
    result = _run(ray_services, tmp_path, "r-trainingdata0002", _spec(refit=False), [uris[1]], [], [champion])
    # the warm-start point was evaluated as given (an exact 0.1234 cannot come from the sampler), once, and the
    # other trial is the sampler's own; which of two concurrent trials reports first is not fixed
    assert [t.params for t in result.trials].count(champion) == 1 and len(result.trials) == 2
    assert result.refit is None and "/trials/" in str(result.best.artifact_uri)
    assert result.snapshot["num_rows"] == ROWS and result.snapshot["windows"] == []
    days = pc.min_max(read_scores(result.holdout.scores_uri)["slice:day"])
    assert days["max"].as_py() == 2 * ROWS - 1  # only window 1 was read: its latest day is held out

    # the sweep left its progress beside the result: every trial ended, each with its curve, the best marked
    progress = read_progress(str(tmp_path / "r-trainingdata0002"))
    assert progress.finished and progress.planned == 2 and len(progress.trials) == 2
    assert progress.counts()["running"] == 0 and all(t.curve for t in progress.trials)
    assert progress.best_trial == min(progress.trials, key=lambda t: t.value).trial_id
