"""Issue 10, PBT for jobs that checkpoint: a real population-based sweep of ``jobs.torch_mlp:Job`` on CPU.

The whole sweep Ray Job (``RayJobRunner``: the driver, Tune with ``PopulationBasedTraining``, the holdout and the
smoke test) over a Parquet window, with 4 trials of ``EPOCHS`` epochs that all run at once; PBT perturbs every
``grace_period`` (1) steps over ``lr`` and ``weight_decay``, and each trial keeps a checkpoint at every step
before its last (``TuneContext.report_checkpoint``). Checked: some trial copied another trial's checkpoint (an
exploit: ``TrialSummary.copied_from``, and Tune's own ``pbt_policy_<trial>.txt`` log in the run's Tune folder
says the same), went on from the epoch after it with its mutated params (its epochs end at ``EPOCHS``, not at
``copied_at + EPOCHS``) and saved its model; the winner is returned as usual, and its model serves what Tune was
told. An exploit needs a trial that is the worst of the running ones at a perturbation step while the best
has a checkpoint: the first population is seeded (the run's seed), the learning rates span 1e-5..0.05 and every
trial reports at each step, with epochs long enough for the trials to overlap, so one always did in our runs
(asynchronous PBT: when depends on when the trials' actors started; Tune's synchronous mode stalled here, with
every trial paused and none resumed, so it is not offered).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from fixtures_ray import finished_sweep, stored_code
from needs_torch import require_torch
from streamtune.config import JobSpec
from streamtune.dev.synthetic import make_sales
from streamtune.job import load_for_serving
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult
from streamtune.sweeps.runner import pick_winner

pytestmark = pytest.mark.integration
require_torch()  # the torch extra: skipped without it, except under make test / CI, where a missing torch fails
JOBS = Path(__file__).resolve().parents[2] / "jobs"
FEATURES = ["price", "promo", "temp", "weekday", "region"]
EPOCHS = 6
ROWS = 24_000  # ~0.3 s an epoch: trials whose actors start seconds apart (torch's import) still overlap
RUN = "r-pbt-mlp"
SPEC = JobSpec.parse({
    "name": "mlp-pbt", "dataset": {"name": "sales", "label": "sales", "features": FEATURES},
    "job": {"entrypoint": "jobs.torch_mlp:Job", "code": str(JOBS),
            "params": {"epochs": EPOCHS, "hidden": 16, "batch_size": 64, "seed": 1}},
    "sweep": {"search": "random", "scheduler": "pbt", "metric": "rmse", "mode": "min", "num_samples": 4,
              "max_concurrent": 4, "max_t": EPOCHS, "grace_period": 1, "resources": {"cpu": 0.5},
              "time_budget": 240, "seed": 3,
              "space": {"lr": {"type": "loguniform", "low": 1e-5, "high": 0.05},
                        "weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1}}},
    "validation": {"min_rows": 100, "refit": False},  # the winner's own model: the last of its PBT lineage
    "serve": {"app": "mlp-pbt"},
})


@pytest.fixture(scope="module")
def swept(ray_services: Any) -> tuple[SweepResult, Path]:
    """Run the sweep as the controller submits it; its result and its run folder."""

    root = Path(tempfile.mkdtemp(prefix="pbt-"))
    code_uri = stored_code(JOBS, root / "store")
    pq.write_table(make_sales(ROWS, seed=5), root / "window.parquet")
    out = root / "run"
    out.mkdir()
    req = SweepRequest(run_id=RUN, spec=SPEC.model_dump(mode="json"), uris=[str(root / "window.parquet")],
                       out_uri=str(out), trusted_roots=[str(root)])
    (out / "request.json").write_text(req.model_dump_json())
    runner = RayJobRunner(f"http://127.0.0.1:{ray_services.dashboard_port}")
    assert runner.submit(RUN, str(out / "request.json"), code_uri) is True
    return finished_sweep(runner, RUN, out, timeout=240, log_lines=80), out


def _policy(out: Path, trial_id: str) -> list[list[Any]]:
    """Tune's PBT log of the exploits that shaped a trial: [its tag, the copied trial's tag, its step, the copied
    trial's step, the copied config, the new config] per exploit (found in the run's Tune folder)."""
    [path] = list(out.glob(f"tune/**/pbt_policy_{trial_id}.txt"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_pbt_trial_copies_a_better_trials_checkpoint_and_trains_on_from_its_epoch_with_mutated_params(swept):
    result, out = swept
    trials = {t.trial_id: t for t in result.trials}
    assert len(trials) == 4 and all(t.error is None for t in trials.values()), [t.error for t in trials.values()]
    copies = [t for t in trials.values() if t.copied_from is not None]
    assert copies, "PBT copied no checkpoint: " + str([(t.trial_id, t.params) for t in trials.values()])
    for trial in copies:
        assert trial.copied_from in trials and trial.copied_from != trial.trial_id
        assert trial.copied_at is not None and 1 <= trial.copied_at < EPOCHS  # a checkpoint before the last step
        # went on from the checkpoint's epoch: a trial that started again from epoch 1 would end at copied_at + 6
        assert trial.iterations == EPOCHS and trial.metrics["epoch"] == EPOCHS
        assert trial.artifact_uri is not None and trial.manifest_sha256 is not None
        last = _policy(out, trial.trial_id)[-1]  # Tune's record of the last exploit of this trial
        assert last[5]["lr"] == pytest.approx(trial.params["lr"])  # its params are the last mutated ones
        assert last[5]["weight_decay"] == pytest.approx(trial.params["weight_decay"])
        assert 1e-5 <= trial.params["lr"] <= 0.05 and 0.0 <= trial.params["weight_decay"] <= 0.1  # kept in space
    never = [t for t in trials.values() if t.copied_from is None]
    assert all(not list(out.glob(f"tune/**/pbt_policy_{t.trial_id}.txt")) for t in never)


def test_the_pbt_winner_is_returned_as_usual_and_its_own_model_serves(swept):
    result, _ = swept
    best, _ = pick_winner(result.trials, SPEC.sweep)
    assert result.best.trial_id == best.trial_id and result.best.artifact_uri == best.artifact_uri
    assert result.refit is None and result.smoke is not None and result.smoke.passed
    assert result.spent is not None and result.spent.trials_completed == 4
    predictor, _ = load_for_serving("jobs.torch_mlp:Job", str(best.artifact_uri),
                                    manifest_sha256=best.manifest_sha256)
    holdout = make_sales(300, seed=9)
    truth = np.asarray(holdout.column("sales").to_numpy(), dtype=float)
    rmse = float(np.sqrt(np.mean((np.asarray(predictor.predict(holdout.drop_columns(["sales"])), float) - truth) ** 2)))
    assert rmse < 0.6 * float(np.std(truth))  # it learned (the mean scores 1.0)
    assert result.holdout.challenger is not None and result.holdout.challenger < 0.6 * float(np.std(truth))
