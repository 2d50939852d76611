"""A sweep driver SIGKILLed mid-sweep: the retried attempt resumes the Tune experiment with its searcher state.

The real controller (``Client.local`` on the session's Kafka and Ray) runs a 4-trial sweep of
``testjobs.resume_job:ResumeJob``, which writes one marker file per execution of a trial, keyed by its Tune trial
id. ``STREAMTUNE_KILL_AT=sweep.after_trial@a1:2`` reaches the driver through the Ray Job's runtime_env and kills
attempt 1's driver (a real SIGKILL) once its second trial completed and Tune's stored experiment state records
that. The controller sees the job fail with the driver killed, retries it as ``<run_id>-a2`` with
``SweepRequest.resume``, and attempt 2 restores the experiment: the two ended trials keep their results and are
not run again, the trial started after them (if it had started before the kill) is run again from scratch, the
searcher goes on from its saved state and proposes the last trial, the sweep has ``num_samples`` trials in all,
and only attempt 2's winner is registered and promoted. Trials run one at a time, so the kill comes before the
searcher has proposed every point (it fires a step or more after the trial's end, once the store has the state).
"""

from __future__ import annotations

import glob
import json
import pathlib
import pickle
import uuid
from typing import Any

import pytest

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.dev.synthetic import make_sales
from streamtune.faults import ENV
from streamtune.sweeps.schema import SweepResult

pytestmark = pytest.mark.integration
TESTJOBS = pathlib.Path(__file__).resolve().parents[1] / "assets" / "testjobs" / "testjobs"
SAMPLES = 4


def _spec(topic: str, markers: pathlib.Path) -> JobSpec:
    return JobSpec.parse({
        "name": "resume-sweep",
        "dataset": {"name": "sales", "label": "sales", "features": ["price", "promo", "temp", "weekday", "region"]},
        "trigger": {"topic": topic, "min_rows": 1200},
        "job": {"entrypoint": "testjobs.resume_job:ResumeJob", "code": str(TESTJOBS),
                "params": {"steps": 3, "sleep_s": 0.4, "marker_dir": str(markers)}},
        "sweep": {"search": "tpe", "scheduler": "fifo", "metric": "rmse", "mode": "min", "num_samples": SAMPLES,
                  "max_concurrent": 1, "max_t": 3, "grace_period": 1, "seed": 7, "retries": 1, "retry_backoff": "1s",
                  "resources": {"cpu": 0.5}, "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}},
        "validation": {"threshold": 1.0e6, "min_rows": 500},
        "serve": {"app": "resumeapp", "replicas": 1, "num_cpus": 0.25},
    })


def _events(seed: int) -> list[DataArrival]:
    rows = make_sales(1200, seed=seed).to_pylist()
    return [DataArrival(dataset="sales", rows=rows[i * 600:(i + 1) * 600], num_rows=600) for i in range(2)]


def _executions(markers: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(markers.glob("*.json")):
        marker = json.loads(path.read_text())
        out.setdefault(marker["trial_id"], []).append(marker)
    return out


def _searcher_study(out_uri: str) -> Any:
    """The Optuna study in the newest searcher state Tune saved (OptunaSearch pickles its attributes)."""
    newest = max(glob.glob(f"{out_uri}/tune/searcher-state-*.pkl"))
    with open(newest, "rb") as f:
        return pickle.load(f)["_ot_study"]


def test_a_killed_driver_is_resumed_with_its_searcher_state_and_no_trial_runs_twice(
        kafka_bootstrap, ray_services, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(ENV, "sweep.after_trial@a1:2")  # the controller passes it to each attempt's driver
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"resume-{uuid.uuid4().hex[:6]}")
    spec = _spec(f"resume-{uuid.uuid4().hex[:8]}", markers)
    with Client.local(settings) as client:
        client.submit(spec, reason="resume test")
        events = _events(seed=41)
        client.publish(events, spec.trigger.topic)
        run = client.wait(event_ids=[e.event_id for e in events], timeout_s=300)
        models = client.models(spec.name)
        champion = client.champion(spec.name)
    from ray import serve

    serve.delete("resumeapp")  # the session's CPUs are shared with later tests

    # attempt 1 was killed (a real SIGKILL, no error.json); attempt 2 resumed and succeeded
    assert run.status == RunStatus.PROMOTED, run.error
    assert run.attempt == 2 and [a.attempt for a in run.attempts] == [1]
    first = run.attempts[0]
    assert first.submission_id == run.run_id
    assert first.error == f"the sweep driver (Ray Job {run.run_id}) was killed by SIGKILL before it wrote error.json"
    result = SweepResult.model_validate(run.sweep)
    out_uri = str(result.reference_uri).rsplit("/", 1)[0]
    request = json.loads(pathlib.Path(out_uri, "request.json").read_text())
    assert (request["attempt"], request["resume"], request["submission_id"]) == (2, True, f"{run.run_id}-a2")

    # the sweep: num_samples trials in all; attempt 1's two completed trials kept with the metrics they reported
    trials = {t.trial_id: t for t in result.trials}
    assert len(trials) == SAMPLES
    runs = _executions(markers)
    assert set(runs) == set(trials)
    resume = result.resume
    print(f"\n[resume] {resume}; executions per trial: { {t: len(ms) for t, ms in runs.items()} }")
    assert resume is not None and resume.attempt == 2 and resume.from_attempts == [1]
    assert len(resume.kept_trials) == 2
    jobs = {m["ray_job"] for ms in runs.values() for m in ms}
    assert len(jobs) == 2  # two drivers: attempt 1's and attempt 2's Ray jobs
    for trial_id in resume.kept_trials:
        (marker,) = runs[trial_id]  # executed exactly once, by attempt 1, and ran to its end there
        assert marker["ended"] and trials[trial_id].attempt == 1 and trials[trial_id].reruns == 0
        assert trials[trial_id].metrics["rmse"] == marker["last"]["rmse"]
        assert trials[trial_id].params == marker["params"] and trials[trial_id].artifact_uri
    attempt1_job = runs[resume.kept_trials[0]][0]["ray_job"]
    for trial_id, trial in trials.items():
        ended = [m for m in runs[trial_id] if m["ended"]]
        assert len(ended) == 1, (trial_id, runs[trial_id])  # no trial ran to its end twice
        if trial_id in resume.kept_trials:
            continue
        assert trial.attempt == 2 and ended[0]["ray_job"] != attempt1_job
        assert trial.metrics["rmse"] == ended[0]["last"]["rmse"]
        if trial_id in resume.rerun_trials:  # it was running when attempt 1 died: started again, same params
            assert len(runs[trial_id]) == 2 and trial.reruns == 1
            assert {m["ray_job"] for m in runs[trial_id]} == jobs
            assert all(m["params"] == trial.params for m in runs[trial_id])
        else:
            assert len(runs[trial_id]) == 1 and trial.reruns == 0
    assert sum(len(ms) for ms in runs.values()) == SAMPLES + len(resume.rerun_trials)

    # the searcher's state was restored, not made anew: its study holds every trial with its result, and the
    # points it proposed in attempt 2 continue its sampler (a new searcher with the run's seed would propose
    # attempt 1's first points again)
    study = _searcher_study(out_uri)
    told = sorted(round(t.value, 9) for t in study.trials if t.value is not None)
    assert len(study.trials) == SAMPLES
    assert told == sorted(round(t.metrics["rmse"], 9) for t in trials.values())
    new = [t for t in trials.values() if t.attempt == 2 and t.trial_id not in resume.rerun_trials]
    assert new, "attempt 2 proposed no new point"
    first_points = {round(trials[t].params["x"], 12) for t in resume.kept_trials}
    assert all(round(t.params["x"], 12) not in first_points for t in new)

    # no partial model: attempt 1 wrote no result.json and registered nothing; the one version is attempt 2's
    assert [m.version for m in models] == [1] and champion is not None and champion.version == 1
    (model,) = models
    assert model.run_id == run.run_id and model.lineage["attempt"] == 2
    assert model.lineage["resume"]["kept_trials"] == resume.kept_trials
    assert model.manifest_sha256 == result.best.manifest_sha256 and model.artifact_uri == result.best.artifact_uri
    assert not pathlib.Path(out_uri, "error.json").exists()
